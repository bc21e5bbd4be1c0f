"""The whole raw-panel -> prediction chain as one picklable object (no MLflow here).

``PredictionChain.predict(raw_panel)`` repeats, on a raw long panel slice, exactly what the
training pipelines did to the test period:

1. data_processing's cleaning: restrict to the training tickers, the causal strict date filter,
   limited forward fill, split repair, stale-price masking, the point-in-time universe (eligible
   names per date, with each name's first close in training so history before the slice counts),
   cross-sectional median imputation, daily returns;
2. the market series: the index level when the slice carries a ``market_level`` column (every
   cleaned date within its levels' span, gaps inside checked as an index file's), else the
   index history stored at training time (when training used an index), else the equal-weighted
   average of the slice;
3. ``feature_spec.transform(panel, market)`` -> selected features;
4. every base model's ``predict`` and the regime layer (detector -> regimes -> per-regime models);
5. ``ensemble.combine(predictions_long, regimes)``.

Output: ``date, ticker, prediction`` for every date of the slice after the first
``warmup_days`` dates (core.features.warmup.chain_warmup_days: the longest feature, lookback or
eligibility window, plus ``registry.warmup_extra_days`` or ``relist_after_days``). Feed that many
trading days of history before the first date you want scored.
A slice with no date past the warm-up raises ``ChainInputError`` naming the missing history,
unless it starts where the training panel started (``data_start``): then it has every date of
history the pipeline's features had, and is scored from its start.

``training_data`` keeps the ``data`` parameters of the training run (raw_path, index_path,
layout, delimiter, decimal: ``panel.READ_KEYS``), so inference reads the same source the same
way without repeating them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from bma_quant.core.data import cleaning, listings, market
from bma_quant.core.data import panel as panel_lib
from bma_quant.core.data import universe as universe_lib
from bma_quant.core.data.schema import local_clock, validate_long_panel
from bma_quant.core.features.factors import PRICE_COLUMNS
from bma_quant.core.models import learners
from bma_quant.serving import unscored
from bma_quant.serving.errors import ChainInputError, StaleChainError
from bma_quant.serving.slice_checks import MARKET_LEVEL, SliceChecks

__all__ = ["MARKET_LEVEL", "ChainInputError", "PanelCleaner", "PredictionChain",
           "StaleChainError"]

logger = logging.getLogger(__name__)


@dataclass
class PanelCleaner:
    """data_processing's causal cleaning and point-in-time universe with the training settings."""

    universe: list[str]
    coverage_threshold: float = 0.7
    strict_mode: bool = True
    ffill_limit: int = 5
    split_detection: dict = field(default_factory=lambda: {"enabled": False})
    stale: dict = field(default_factory=lambda: {"min_streak": 5, "mask_after": None})
    impute: bool = True
    eligibility: dict = field(default_factory=lambda: {"window_days": 252, "min_history_days": 63})
    first_close: dict[str, str] = field(default_factory=dict)  # ticker -> first close in training
    strict_active_days: int | None = None  # None in chains pickled before it existed
    max_calendar_gap_days: int | None = None  # holes in the calendar (None: not checked)
    # user factor columns' fill limit, one or {column: limit} (None: ffill_limit)
    factor_ffill_limit: int | dict | None = None
    # forward-filled closes neither lengthen nor end a stale streak (False in older chains,
    # which were trained counting them)
    stale_ignores_fill: bool = False
    # rows with volume 0 and a copied close are out of the cross-section (False in older chains)
    untraded_zero_volume: bool = False
    # ... and so are volume-0 rows whose close moved (a quote), when training said so
    untraded_zero_volume_moves: bool = False
    first_volume: dict[str, str] = field(default_factory=dict)  # ticker -> first positive volume
    # a carried close carries volume 0 (False in older chains, which copied the last volume)
    zero_carried_volume: bool = False
    # volume-0 rows with an empty close are suspensions, not gaps (False in older chains)
    empty_close_suspensions: bool = False
    # ... up to the training file's first padded row of a name not yet listed (None: none)
    empty_close_padding_from: str | None = None
    # a one-day market-index move beyond this is warned about (processing.index_jump_warning;
    # None: off); chains pickled before it (index_jump_set False) use split_detection's bound
    index_jump_warning: float | None = None
    index_jump_set: bool = False

    def index_jump_bound(self) -> float | None:
        if getattr(self, "index_jump_set", False):
            return self.index_jump_warning
        return self.split_detection.get("max_abs_return")

    def index_jump_setting(self) -> str:
        """The parameter index_jump_bound reads, as a warning names it."""
        if getattr(self, "index_jump_set", False):
            return "processing.index_jump_warning"
        return "processing.split_detection.max_abs_return"

    @classmethod
    def from_params(
        cls, universe, processing: dict, first_close: dict | None = None,
        first_volume: dict | None = None, empty_close_suspensions: bool = False,
        empty_close_padding_from: str | None = None,
    ) -> PanelCleaner:
        return cls(
            universe=sorted(map(str, universe)),
            coverage_threshold=float(processing.get("coverage_threshold", 0.7)),
            strict_mode=bool(processing.get("strict_mode", True)),
            ffill_limit=int(processing.get("ffill_limit", 5)),
            split_detection=dict(processing.get("split_detection", {"enabled": False})),
            stale=dict(processing.get("stale", {"min_streak": 5, "mask_after": None})),
            impute=bool(processing.get("impute_medians", True)),
            eligibility=dict(processing["eligibility"]),
            first_close=dict(first_close or {}),
            strict_active_days=processing.get("strict_active_days"),
            max_calendar_gap_days=processing.get("max_calendar_gap_days"),
            factor_ffill_limit=processing.get("factor_ffill_limit"),
            stale_ignores_fill=True,
            untraded_zero_volume=bool(processing.get("untraded_zero_volume", True)),
            untraded_zero_volume_moves=bool(processing.get("untraded_zero_volume_moves")),
            first_volume=dict(first_volume or {}),
            zero_carried_volume=bool(processing.get("zero_carried_volume")),
            empty_close_suspensions=bool(empty_close_suspensions),
            empty_close_padding_from=empty_close_padding_from,
            index_jump_warning=processing.get("index_jump_warning"),
            index_jump_set=True,
        )

    def _rule(self) -> universe_lib.EligibilityRule:
        return universe_lib.EligibilityRule.from_params(
            {"coverage_threshold": self.coverage_threshold, "eligibility": self.eligibility,
             "strict_active_days": getattr(self, "strict_active_days", None)})

    def _filled(self, matrices: panel_lib.PanelMatrices) -> panel_lib.PanelMatrices:
        filled, _ = cleaning.forward_fill_limited(
            matrices, self.ffill_limit, cleaning.factor_fill_limits(
                matrices.extra_columns, getattr(self, "factor_ffill_limit", None)),
            zero_carried_volume=getattr(self, "zero_carried_volume", False))
        return filled

    def _split_repair(self, matrices: panel_lib.PanelMatrices,
                      observed: pd.DataFrame | None = None) -> cleaning.SplitRepair:
        splits = self.split_detection
        if not (splits.get("enabled", True) and "max_abs_return" in splits):
            return cleaning.SplitRepair(matrices, [], 0)
        return cleaning.split_repair(
            matrices, float(splits["max_abs_return"]), list(splits["ratios"]),
            float(splits["tolerance"]),
            # chains pickled before confirm_days existed repair on the one-day move alone
            int(splits.get("confirm_days", 0)), splits.get("unit_tolerance"),
            splits.get("max_gap_days"),  # None in chains pickled before it existed
            observed=observed,
            # chains pickled before it existed repaired on the closes alone
            open_evidence=bool(splits.get("open_evidence", False)),
            # chains pickled before it existed took a market-wide move near a ratio for a split
            market_min_names=splits.get("market_min_names"),
            market_min_share=float(splits.get("market_min_share", 0.5)),
        )

    def split_findings(self, raw: pd.DataFrame
                       ) -> tuple[list[cleaning.SplitEvent], list[dict], list[dict]]:
        """What `clean` finds on `raw` about splits, for the scoring run to say as training does:
        the suspected splits (repaired, or pending at the slice's end: those names get no
        score yet), the held near-ratio moves left as they are (split or crash?) and the held
        large moves near no configured ratio (a 7:1 split?)."""
        frame = raw.loc[raw["ticker"].astype(str).isin(self.universe)]
        if frame.empty:
            return [], [], []
        matrices = _reindex_matrix(panel_lib.to_matrices(frame), pd.Index(self.universe))
        if self.strict_mode:
            observed = matrices.close.notna()
            matrices = matrices.select(
                dates=matrices.dates[universe_lib.strict_date_mask(observed, self._rule())])
        filled = self._filled(matrices)
        events = self._split_repair(filled, matrices.close).events
        splits = self.split_detection
        near, unexplained = [], []
        if (splits.get("enabled", True) and "max_abs_return" in splits
                and splits.get("report_tolerance") is not None):
            args = (filled, float(splits["max_abs_return"]), list(splits["ratios"]),
                    float(splits["report_tolerance"]), int(splits.get("confirm_days", 0)),
                    events, splits.get("max_gap_days"))
            near = cleaning.split_like_moves(*args, observed=matrices.close)
            unexplained = cleaning.unexplained_large_moves(*args, observed=matrices.close)
        return events, near, unexplained

    def kept_dates(self, raw: pd.DataFrame) -> pd.DatetimeIndex:
        """The dates `clean` keeps on `raw` (the strict filter's; every date without it): the
        calendar a warm-up is counted on."""
        frame = raw.loc[raw["ticker"].astype(str).isin(self.universe), ["date", "ticker", "close"]]
        observed = frame.pivot(index="date", columns="ticker", values="close").notna()
        if not self.strict_mode:
            return pd.DatetimeIndex(observed.index)
        return pd.DatetimeIndex(observed.index[universe_lib.strict_date_mask(observed,
                                                                             self._rule())])

    def clean(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Raw long slice -> long panel (as primary_panel, with ``ret_1d`` and ``eligible``) on the
        training tickers."""
        frame = raw.loc[raw["ticker"].astype(str).isin(self.universe)]
        if frame.empty:
            raise ChainInputError(
                "the panel slice has no ticker of the training universe (training: "
                f"{', '.join(self.universe[:5])}...; slice: "
                f"{', '.join(map(str, raw['ticker'].drop_duplicates().head(5)))}...)")
        matrices = panel_lib.to_matrices(frame)
        matrices = _reindex_matrix(matrices, pd.Index(self.universe))  # full training grid
        observed = matrices.close.notna()
        rule = self._rule()
        first_seen = pd.Series(self.first_close, dtype=object) if self.first_close else None
        rows = universe_lib.file_rows(  # relistings: stated suspensions are rows
            matrices, getattr(self, "empty_close_suspensions", False), first_seen,
            _day(getattr(self, "empty_close_padding_from", None)))
        if self.strict_mode:  # a date's count depends on that date and its trailing window
            matrices = matrices.select(
                dates=matrices.dates[universe_lib.strict_date_mask(observed, rule)]
            )
        untraded = (cleaning.untraded_cells(
                        matrices, getattr(self, "first_volume", None),
                        moves=getattr(self, "untraded_zero_volume_moves", False))
                    if getattr(self, "untraded_zero_volume", False) else None)
        unfilled = matrices.close
        unfilled_volume = matrices.values.get("volume")
        matrices = self._filled(matrices)
        repair = self._split_repair(matrices, unfilled)
        matrices = repair.panel
        unmasked = matrices.close
        matrices, _ = cleaning.handle_stale_prices(
            matrices, int(self.stale.get("min_streak", 5)), self.stale.get("mask_after"),
            carried=(unfilled.isna() & matrices.close.notna()
                     if getattr(self, "stale_ignores_fill", False) else None),
            # chains trained before it have no such key: streaks as they were trained
            volume_trades=bool(self.stale.get("volume_trades", False)),
        )
        trailing = universe_lib.trailing_eligibility(
            universe_lib.traded_cells(observed, unmasked, matrices.close, untraded), rule,
            first_seen, rows=rows)
        # the pipeline's rules (chains pickled before require_own_close: none, as then)
        rules = universe_lib.exclusion_cells(unfilled, unfilled_volume, matrices.close,
                                             self.eligibility)
        listed_from = universe_lib.listed_from_dates(rows, rule.relist_after_days,
                                                     first_seen)
        matrices = replace(matrices, eligible=universe_lib.eligible_cells(
            trailing, matrices.close, untraded, rules["below_price"], rules["carried"],
            rules["illiquid"]),
            listed_from=None if listed_from is None else listed_from.reindex(
                index=matrices.dates, columns=matrices.tickers))
        impute_cols = [c for c in matrices.values
                       if c != "close" and c not in cleaning.PRICE_FIELDS]
        if self.impute and impute_cols:
            matrices, _ = cleaning.impute_cross_sectional_median(matrices, impute_cols)
        returns = cleaning.daily_returns(matrices.close, repair.withheld, matrices.listed_from)
        return panel_lib.to_long(matrices, extra={"ret_1d": returns})


def _warn_dropped_last_day(raw: pd.DataFrame, clean: pd.DataFrame) -> None:
    """Say when the panel's last date is not among the cleaned dates (a partial day the strict
    date filter drops): the latest scores are then the previous date's."""
    if clean.empty:
        return
    file_last, kept_last = raw["date"].max(), clean["date"].max()
    if file_last <= kept_last:
        return

    def names_on(day) -> int:
        return raw.loc[(raw["date"] == day) & raw["close"].notna(), "ticker"].nunique()

    logger.warning(
        "the panel's last date %s is not scored: only %d names have a close on it, against %d "
        "on %s, which is scored instead (a partial day: the strict date filter drops it, "
        "processing.coverage_threshold). Send the full day, or wait for it",
        file_last.date(), names_on(file_last), names_on(kept_last), kept_last.date())


def _reindex_matrix(matrices: panel_lib.PanelMatrices, tickers) -> panel_lib.PanelMatrices:
    return panel_lib.PanelMatrices(
        {k: v.reindex(columns=tickers) for k, v in matrices.values.items()},
        None if matrices.sector is None else matrices.sector.reindex(columns=tickers),
        list(matrices.extra_columns),
    )


# regime-table columns computed from prices over short trailing windows: a slice of other prices
# shows in them (fear-greed's year-long windows need more history than a slice has)
EVIDENCE_COMPARED = ("trend", "volatility", "dispersion", "breadth", "perf_momentum",
                     "perf_reversal", "perf_low_volatility")
# Evidence columns are returns, their spreads and shares: closes rounded to float32 (a float32
# store, a REAL column) move them by ~1e-7, a corrected price by far more (1 % on one of 40 names
# moves a 20-day trend by ~1e-5). Below this they are the same prices.
EVIDENCE_ATOL = 1e-6


def evidence_settle_rows(evidence_params: dict | None) -> int:
    """Rows of a slice before its trailing evidence windows equal a full history's: the longest
    window, plus the factor portfolios' lag and performance window."""
    params = dict(evidence_params or {})
    windows = [int(v) for k, v in params.items() if k.endswith("_window") and v is not None]
    return (max(windows, default=0) + int(params.get("factor_lag_days") or 0)
            + int(params.get("performance_window") or 0))


def regime_evidence_difference(stored: pd.DataFrame, detected: pd.DataFrame, settle: int
                               ) -> tuple[pd.Timestamp, str, float, float] | None:
    """The first (date, column, training value, slice value) where the slice's detector evidence
    differs from the training run's, on dates both have after each one's first `settle` rows
    (their trailing windows' warm-ups: training's table starts at its development start) and
    where both have a value; None when they agree (or nothing can be compared)."""
    columns = [c for c in EVIDENCE_COMPARED if c in stored and c in detected]
    later = detected.sort_values("date").iloc[settle:]
    both = later.merge(stored.sort_values("date").iloc[settle:], on="date",
                       suffixes=("_given", "_trained"))
    for column in columns:
        given = both[f"{column}_given"].to_numpy(np.float64)
        trained = both[f"{column}_trained"].to_numpy(np.float64)
        same = (~np.isfinite(given) | ~np.isfinite(trained)
                | np.isclose(given, trained, rtol=1e-6, atol=EVIDENCE_ATOL))
        if not same.all():
            at = int(np.flatnonzero(~same)[0])
            return pd.Timestamp(both["date"].iloc[at]), column, float(trained[at]), float(given[at])
    return None


@dataclass
class PredictionChain(SliceChecks):
    """Cleaning, features, base models, regime layer and ensemble: raw panel -> predictions."""

    cleaner: PanelCleaner
    feature_spec: Any
    base_models: dict[str, Any]
    regime_model: Any | None
    ensemble: Any
    market_index: pd.DataFrame | None = None  # (date, level) the training run used, if any
    warmup_days: int = 252  # set by build_prediction_chain (chain_warmup_days); 252 = max_lookback_days
    model_name: str = "final"
    known_regimes: pd.DataFrame | None = None  # the training run's causal regimes (all dates)
    training_data: dict | None = None  # the training run's params:data (raw_path, index_path,
    # layout); None in chains pickled before it existed
    data_start: str | None = None  # first date of the training panel when the raw file starts
    # there too (None otherwise, and in chains pickled before it existed): a slice starting on it
    # has all the history training had
    training_sectors: list[str] | None = None  # sector labels the features were demeaned within;
    # [] when sector neutralisation was on but the training panel had no sectors (a panel with
    # them now must not be demeaned); None: neutralisation off, or a chain pickled before it
    data_end: str | None = None  # last date of the training panel (None: chains pickled before)
    unsectored_names: list[str] | None = None  # names without a sector in training (warned
    # about there, not again at every inference; None: chains pickled before it existed)
    typical_names: int | None = None  # names in the training panel's cross-section (median
    # over its last dates): scores are ranks within a date, so a much thinner one is warned about
    # a scored date with fewer names than this share of typical_names is warned about
    # (registry.thin_cross_section_share; chains pickled before it: the rule they were built with)
    thin_cross_section_share: float = 0.5
    label_target: str | None = None  # what the scores rank ("10d return after 1d delay")
    training_run_id: str | None = None  # the MLflow run that built it (None: no active run,
    # or chains pickled before these existed)
    models_run_id: str | None = None  # the run that fitted its base learners (the same one in
    # a whole-chain run; an earlier one when layers ran alone; None: unknown)
    base_features: list[str] | None = None  # base_models.features: the base learners' inputs
    # when set (a subset of the selected features); None: every selected feature
    last_names: list[str] | None = None  # names in the training panel's cross-section on its
    # last date (None: chains pickled before it existed)
    backtest_quantiles: int | None = None  # evaluation.backtest.n_quantiles its test period was
    # scored with: inference's default book (None: chains pickled before it existed)
    development_end: str | None = None  # last development date: scores up to it are in-sample
    # (None: chains pickled before it existed)

    # ------------------------------------------------------------------ steps
    def prepare(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Raw slice -> (clean long panel with ret_1d, market frame)."""
        return self._prepared(raw)[1:]

    def _prepared(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Raw slice -> (the slice as given, validated: its dates local days; the clean long
        panel with ret_1d; the market frame). The first says what the file holds on a date,
        before the carry-forward fills it from the day before."""
        # validated first: dates become the local calendar days training used, for the
        # optional market_level column as well as the prices
        if raw.empty:  # said before the column checks, which would name a column it has
            raise ChainInputError("the panel has no rows: send at least the warm-up's dates of "
                                  f"every name ({self.warmup_days + 1} trading dates)")
        raw = validate_long_panel(raw.copy(), source="model input")
        self._warn_names_outside_training(raw)
        if getattr(self, "training_sectors", None) == [] and "sector" in raw \
                and raw["sector"].notna().any():
            logger.warning("the panel's 'sector' column is ignored: the chain was trained on a "
                           "panel without sectors, so its features were not demeaned within them")
            raw = raw.drop(columns="sector")
        self._check_sectors(raw)
        index = self._index_from_slice(raw, check=self.market_index is not None)
        # a column sent without a single level is no index: the stored one is used, as without it
        levels_sent_empty = MARKET_LEVEL in raw and index is None
        if index is not None and self.market_index is None:
            # training built its market from the panel's own names: an index level now would
            # feed the market features a series the models never saw
            logger.warning(
                "the panel's '%s' column is ignored: the chain was trained without a market "
                "index (its market is the equal-weighted average of the panel's names)",
                MARKET_LEVEL)
            index = None
        raw = raw.drop(columns=[MARKET_LEVEL], errors="ignore")
        raw["ticker"] = raw["ticker"].astype(str)
        clean = self.cleaner.clean(raw.sort_values(["date", "ticker"], kind="stable"))
        _warn_dropped_last_day(raw, clean)
        returns = clean.pivot(index="date", columns="ticker", values="ret_1d").sort_index()
        if index is not None:
            index = self._levels_filled_from_stored(index, returns.index)
            self._check_slice_levels(raw, index, returns.index)
            self._warn_levels_against_stored(index)
            panel_lib.warn_index_jumps(index, "the slice's market index",
                                       self.cleaner.index_jump_bound(),
                                       self.cleaner.index_jump_setting())
        elif self.market_index is not None and len(self.market_index):
            # chains pickled before index dates were days may hold timestamps
            index = self.market_index.assign(
                date=local_clock(pd.to_datetime(self.market_index["date"])).dt.normalize())
            self._check_stored_index_covers(index, returns.index, levels_sent_empty)
            if index["date"].max() < returns.index.max():
                logger.warning(
                    "the stored market index ends on %s, before the slice's last date %s: its "
                    "last level is carried forward, as training did (a '%s' column overrides it)",
                    index["date"].max().date(), returns.index.max().date(), MARKET_LEVEL,
                )
        return raw, clean, market.market_series(returns, index)

    def unused_columns(self, columns) -> list[str]:
        """Input columns the chain can do without: user columns no selected feature reads, and
        ``sector`` when training demeaned nothing within sectors (for the signature)."""
        selected = set(getattr(self.feature_spec, "selected", None) or [])
        needed = {"date", "ticker", *PRICE_COLUMNS, *selected}
        if getattr(self, "training_sectors", None):
            needed.add("sector")
        return [c for c in columns if c not in needed]

    @staticmethod
    def _index_from_slice(raw: pd.DataFrame, check: bool = True) -> pd.DataFrame | None:
        """The slice's (date, level) from its market_level column; ``check``: refuse different
        levels on one date (a chain trained without an index ignores the column)."""
        if MARKET_LEVEL not in raw or raw[MARKET_LEVEL].notna().sum() == 0:
            return None
        levels_sent = raw.dropna(subset=[MARKET_LEVEL])
        bad = levels_sent.loc[levels_sent[MARKET_LEVEL] <= 0]
        if check and len(bad):  # an index file's level 0 or below is refused the same way
            dates = sorted(pd.DatetimeIndex(bad["date"].unique()))
            first = bad.loc[pd.DatetimeIndex(bad["date"]) == dates[0], MARKET_LEVEL].iloc[0]
            raise ChainInputError(
                f"the panel's '{MARKET_LEVEL}' column must hold positive index levels: "
                f"{len(bad)} row(s) on {len(dates)} date(s) hold 0 or less (e.g. "
                f"{dates[0].date()}: {float(first):g}); every market return and "
                "score would move: send the index level of each date")
        given = levels_sent.groupby("date")[MARKET_LEVEL]
        conflicting = given.nunique()
        conflicting = conflicting[conflicting > 1]
        if check and len(conflicting):  # the first row's level would win: row order would decide
            raise ChainInputError(
                f"the panel's '{MARKET_LEVEL}' column holds different levels on one date "
                f"({len(conflicting)} date(s), e.g. {conflicting.index[0].date()}): it is the "
                "index level of the date, the same on every name's row")
        levels = given.first()
        return pd.DataFrame({"date": levels.index, "level": levels.to_numpy(dtype=np.float64)})

    def features(self, clean: pd.DataFrame, market_frame: pd.DataFrame) -> pd.DataFrame:
        try:
            return self.feature_spec.transform(clean, market_frame)
        except KeyError as error:  # a feature's input column is absent from this panel
            raise ChainInputError(
                f"{error.args[0] if error.args else error}. The request lacks a column the chain "
                "was trained on, or the input rules now leave it out (columns without numbers, "
                "a file's column without a value on any row, back-adjusted fields such as "
                "'Adj Close'): send it with its values, or retrain the chain"
            ) from None

    def feature_names(self, features: pd.DataFrame) -> list[str]:
        names = getattr(self.feature_spec, "selected", None)
        if names:
            return list(names)
        return [c for c in features.columns if c not in ("date", "ticker", "label")]

    def base_predictions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Long (date, ticker, model, prediction) of every base model."""
        selected = self.feature_names(features)
        names = list(getattr(self, "base_features", None) or selected)
        X = features[names]
        frames = []
        for name, estimator in self.base_models.items():
            fitted_on = getattr(estimator, "feature_names_in_", None)
            if fitted_on is not None and list(fitted_on) != names:
                chosen = (f"base_models.features gives {names}" if names != selected
                          else f"the feature spec selects {names}")
                raise StaleChainError(
                    f"base model {name!r} was fitted on features {list(fitted_on)} but "
                    f"{chosen}: the upstream artifacts come from different runs "
                    "(feature_engineering rerun after base_models?). Rerun the pipelines "
                    "from feature_engineering on."
                )
            frames.append(
                pd.DataFrame(
                    {
                        "date": features["date"].to_numpy(),
                        "ticker": features["ticker"].to_numpy(),
                        "model": name,
                        "prediction": learners.predict_float32(estimator, X),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def regime_models(self) -> dict[str, Any]:
        """{model name: regime-aware model}; ``regime_model`` may be one model or a dict."""
        if self.regime_model is None:
            return {}
        if isinstance(self.regime_model, dict):
            return dict(self.regime_model)
        return {getattr(self.regime_model, "name", "regime_model"): self.regime_model}

    def regimes(self, clean: pd.DataFrame, market_frame: pd.DataFrame) -> pd.DataFrame | None:
        """Regimes for the slice's dates: the stored training regimes where they exist (causal
        labels, identical to re-detecting on the full history), the fitted detector on the slice
        for later dates (give it >= 2 years of history: fear-greed and filter burn-in). When the
        slice's own detector evidence differs from training's on dates both have (other or
        corrected prices, another set of names), every date is detected from the slice: the
        stored table described another market (its regimes were served unchanged)."""
        dates = pd.DatetimeIndex(np.sort(clean["date"].unique()), name="date")
        stored = self.known_regimes
        detector_model = next(
            (m for m in self.regime_models().values() if getattr(m, "detector", None)), None
        )
        if detector_model is None:
            if stored is not None and len(stored) and dates.isin(stored["date"]).all():
                return stored.loc[stored["date"].isin(dates)].reset_index(drop=True)
            return stored
        close = listings.close_by_listing(clean)  # a reused code: two companies, as in training
        detected = detector_model.regimes_for(close, market_frame)
        if stored is None or not len(stored):
            return detected
        differs = regime_evidence_difference(stored, detected,
                                             evidence_settle_rows(detector_model.evidence_params))
        if differs is not None:
            day, column, trained, given = differs
            logger.warning(
                "the slice's regime evidence differs from the training run's on a date both have "
                "(%s: %s %.6g in training, %.6g here): other or corrected prices, or another set "
                "of names. Its regimes are detected from the slice on every date, not taken from "
                "training (which described another market)", day.date(), column, trained, given)
            return detected.loc[detected["date"].isin(dates)].reset_index(drop=True)
        new = detected.loc[~detected["date"].isin(stored["date"])]
        old = stored.loc[stored["date"].isin(dates)]
        return pd.concat([old, new], ignore_index=True).sort_values("date").reset_index(drop=True)

    def regime_predictions(self, features: pd.DataFrame, regimes) -> pd.DataFrame | None:
        """Long predictions of every regime-aware model (None without a regime layer)."""
        models = self.regime_models()
        if not models or regimes is None:
            return None
        frames = []
        for name, model in models.items():
            cols = ["date", *getattr(model, "feature_names", self.feature_names(features))]
            values = np.asarray(model.predict(features[cols], regimes), dtype=np.float32)
            frames.append(pd.DataFrame({"date": features["date"].to_numpy(),
                                        "ticker": features["ticker"].to_numpy(),
                                        "model": name, "prediction": values}))
        return pd.concat(frames, ignore_index=True)

    def scored_dates(self, dates: pd.DatetimeIndex,
                     first_date: pd.Timestamp | None = None) -> pd.DatetimeIndex:
        """The slice's dates to score: those after the warm-up (and from ``first_date`` on).

        A slice that starts on the training panel's first date (``data_start``, set only when
        that was also the raw file's first close) has all the history the pipeline had: no
        warm-up is needed to reproduce it, so a panel shorter than the warm-up (or a test period
        that begins inside it) is scored from its start; a longer such slice is scored after the
        warm-up as usual (or from ``first_date``)."""
        complete = self.data_start is not None and dates[0] == pd.Timestamp(self.data_start)
        if complete and (first_date is not None or len(dates) <= self.warmup_days):
            scored = dates
        else:
            self.check_history(len(dates))
            scored = dates[self.warmup_days:] if self.warmup_days else dates
        return scored if first_date is None else scored[scored >= pd.Timestamp(first_date)]

    # ------------------------------------------------------------------ public
    def predict_all(self, raw: pd.DataFrame, first_date: pd.Timestamp | None = None,
                    last_date_only: bool = False) -> pd.DataFrame:
        """Every layer's predictions, long (date, ticker, model, prediction), incl. ``final``;
        ``first_date``: score only from that date on (the warm-up still counts before it);
        ``last_date_only``: score only the last date (what inference and serving return)."""
        given, clean, market_frame = self._prepared(raw)
        dates = pd.DatetimeIndex(np.sort(clean["date"].unique()))
        scored = self.scored_dates(dates, first_date)
        if last_date_only:
            scored = scored[-1:]
        self._check_calendar_holes(dates, scored)
        self._warn_calendar_against_training(given, dates, scored)
        self._warn_scored_in_sample(scored)
        self._check_user_factors(clean, scored, refuse=last_date_only)
        self._warn_missing_bar_columns(given, scored)
        self._warn_carried_user_factors(given, scored, clean)
        features = self.features(clean, market_frame)
        # The warm-up only feeds the rolling features (and the regime filter, from `clean`):
        # every later step is per row or per date, so the warm-up rows are not predicted.
        features = features.loc[features["date"].isin(scored)].reset_index(drop=True)
        self._check_names_to_score(features, scored)
        self._warn_thin_cross_section(clean, scored)
        self._warn_names_without_sector(clean, scored)
        self._warn_large_moves_on_scored_dates(clean, scored)
        base = self.base_predictions(features)
        regimes = self.regimes(clean, market_frame)
        layers = [base]
        regime_preds = self.regime_predictions(features, regimes)
        if regime_preds is not None:
            layers.append(regime_preds[["date", "ticker", "model", "prediction"]])
        components = pd.concat(layers, ignore_index=True)
        combined = self.ensemble.combine(components, regimes)
        final = combined[["date", "ticker", "prediction"]].assign(model=self.model_name)
        if last_date_only:  # what inference and a served request answer: say who is left out
            cleaner = self.cleaner
            unscored.warn_unscored(given, final, getattr(cleaner, "universe", None),
                                   getattr(cleaner, "first_volume", None),
                                   getattr(cleaner, "untraded_zero_volume_moves", False))
        out = pd.concat([components, final], ignore_index=True)
        return out.sort_values(["model", "date", "ticker"], kind="stable").reset_index(drop=True)

    def predict(self, raw: pd.DataFrame, first_date: pd.Timestamp | None = None,
                last_date_only: bool = False) -> pd.DataFrame:
        """(date, ticker, prediction) of the final ensemble for the slice's dates after warm-up
        (only its last one with ``last_date_only``)."""
        out = self.predict_all(raw, first_date, last_date_only)
        final = out.loc[out["model"] == self.model_name, ["date", "ticker", "prediction"]]
        return final.sort_values(["date", "ticker"], kind="stable").reset_index(drop=True)


def _day(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text)
