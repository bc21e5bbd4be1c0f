"""Causal market regime detection: bull / neutral / bear (DESIGN §3, §5.2; seed §2.3.2).

Two detectors share one interface: `fit(inputs)` on development (or fold-training) dates only, then
`detect(inputs)` on any span of dates. `inputs` is a frame indexed by date with `market_return`,
`market_level` and `fear_greed` (see `detector_inputs`).

- `RulesDetector`: trailing trend (log return over `trend_window` days), trailing volatility and the
  fear-greed index each vote +1 (bullish), -1 (bearish) or 0 against their development-period
  quantiles; a net vote of at least ceil(`net_vote_share` x the number of indicators) is bull,
  at most minus that is bear (with the default 0.5: 2 of 3 indicators, or 1 of 2 when the
  fear-greed index is not available).
  Its probabilities are one-hot on the raw (unsmoothed) state.
- `MarkovDetector`: a three-state Markov-switching model of daily market returns with switching
  mean and variance (statsmodels `MarkovRegression`), fitted on the fit dates; states are named by
  their mean return. The state at t comes from the *filtered* probabilities P(s_t | r_1..r_t),
  computed by re-filtering the whole series with the fitted parameters; smoothed probabilities use
  future returns and are never used. A fit that does not converge, or whose states are degenerate
  (a state holding less than `min_state_share` of the fit dates, e.g. a variance collapsed onto a
  few outliers), raises `DetectorFitError`; `fit_detector` then falls back to the rules.

- `HmmDetector`: a 3-state Gaussian HMM over several evidence columns (`core.regimes.regime_evidence`:
  market trend and volatility, dispersion, breadth, trailing factor-portfolio performance, and
  fear-greed), standardised with fit-date moments and fitted by EM on the fit dates
  (`core.regimes.gaussian_hmm`); the state at t is the forward-filtered P(s_t | x_1..x_t), never a
  smoothed or Viterbi path. States are named by their mean of `order_column` (highest = bull).

All then apply causal minimum-duration smoothing: the regime switches only once the raw state has
been the new one for `min_duration` consecutive days. Everything at t uses data <= t only, so
labels are prefix-invariant once the detector is fitted.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

REGIMES = ("bull", "neutral", "bear")
PROBABILITY_COLUMNS = tuple(f"p_{r}" for r in REGIMES)
_BULL, _NEUTRAL, _BEAR = 0, 1, 2


class DetectorFitError(RuntimeError):
    """A detector could not be fitted (e.g. the Markov likelihood did not converge)."""


def detector_inputs(
    market: pd.DataFrame, fear_greed: pd.Series | None, evidence: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Date-indexed `market_return`, `market_level`, `fear_greed` on the market's calendar, plus
    the columns of `evidence` (date-indexed, `core.regimes.regime_evidence`) when given.

    The first market return is undefined (NaN); it is set to 0, which carries no information."""
    frame = market.set_index("date")[["market_return", "market_level"]].sort_index().copy()
    frame["market_return"] = frame["market_return"].fillna(0.0).astype(np.float64)
    if fear_greed is None:
        frame["fear_greed"] = np.nan
    else:
        fear_greed = pd.Series(fear_greed)
        fear_greed.index = pd.DatetimeIndex(fear_greed.index)
        frame["fear_greed"] = fear_greed.reindex(frame.index).astype(np.float64)
    frame.index = pd.DatetimeIndex(frame.index, name="date")
    if evidence is not None:
        evidence = evidence.copy()
        evidence.index = pd.DatetimeIndex(evidence.index)
        for column in evidence.columns:
            frame[column] = evidence[column].reindex(frame.index).astype(np.float64)
    return frame


def smooth_min_duration(states: np.ndarray, min_duration: int) -> np.ndarray:
    """Causal minimum-duration filter of integer states.

    The output starts in the first raw state and switches to a new state on the day the raw
    state has been that state for `min_duration` consecutive days; otherwise it holds. So a longer
    minimum never adds switches, and one longer than every raw run leaves the first state all
    along (the detector then says nothing: `detect_regimes` warns). Only past and current values
    are read.
    """
    states = np.asarray(states)
    if min_duration <= 1 or states.size == 0:
        return states.copy()
    run_start = np.r_[True, states[1:] != states[:-1]]
    run_id = np.cumsum(run_start) - 1
    run_first = np.flatnonzero(run_start)
    run_length = np.arange(states.size) - run_first[run_id] + 1
    confirmed = np.where(run_length >= min_duration, states, np.nan)
    confirmed[0] = states[0]  # the starting state needs no confirmation
    return pd.Series(confirmed).ffill().to_numpy().astype(states.dtype)


@dataclass
class RegimeDetector:
    """Base class: subclasses implement `_fit` and `_raw_probabilities`."""

    min_duration: int = 1
    fitted: bool = field(default=False, init=False)
    fit_end: pd.Timestamp | None = field(default=None, init=False)

    name = "base"

    def fit(self, inputs: pd.DataFrame) -> RegimeDetector:
        """Fit on every row of `inputs` (pass development or fold-training dates only)."""
        if len(inputs) == 0:
            raise DetectorFitError("no dates to fit the regime detector on")
        self._fit(inputs.sort_index())
        self.fitted = True
        self.fit_end = pd.Timestamp(inputs.index.max())
        return self

    def detect(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """`date, regime, p_bull, p_neutral, p_bear` for every date of `inputs` (causal)."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} must be fitted before detect()")
        inputs = inputs.sort_index()
        probabilities = self._raw_probabilities(inputs)
        raw = probabilities.argmax(axis=1)
        states = smooth_min_duration(raw, self.min_duration)
        out = pd.DataFrame({"date": pd.DatetimeIndex(inputs.index)})
        out["regime"] = pd.Series(np.array(REGIMES, dtype=object)[states]).astype(str)
        for k, column in enumerate(PROBABILITY_COLUMNS):
            out[column] = probabilities[:, k].astype(np.float64)
        return out

    def _fit(self, inputs: pd.DataFrame) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _raw_probabilities(self, inputs: pd.DataFrame) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


@dataclass
class RulesDetector(RegimeDetector):
    """Trend, volatility and fear-greed votes against development-period quantiles."""

    trend_window: int = 63
    vol_window: int = 21
    trend_quantiles: tuple[float, float] = (0.33, 0.67)
    vol_quantiles: tuple[float, float] = (0.33, 0.67)
    fear_greed_quantiles: tuple[float, float] = (0.33, 0.67)
    use_fear_greed: bool = True
    net_vote_share: float = 0.5
    thresholds: dict[str, tuple[float, float]] = field(default_factory=dict, init=False)

    name = "rules"

    def _indicators(self, inputs: pd.DataFrame) -> dict[str, pd.Series]:
        log_return = np.log1p(inputs["market_return"])
        indicators = {
            "trend": log_return.rolling(self.trend_window, min_periods=self.trend_window).sum(),
            "vol": log_return.rolling(self.vol_window, min_periods=self.vol_window).std(),
        }
        if self.use_fear_greed and inputs["fear_greed"].notna().any():
            indicators["fear_greed"] = inputs["fear_greed"]
        return indicators

    def _fit(self, inputs: pd.DataFrame) -> None:
        quantiles = {
            "trend": self.trend_quantiles,
            "vol": self.vol_quantiles,
            "fear_greed": self.fear_greed_quantiles,
        }
        self.thresholds = {}
        for name, values in self._indicators(inputs).items():
            values = values.dropna()
            if values.empty:
                raise DetectorFitError(f"rules detector: no {name} values on the fit dates")
            low, high = (float(values.quantile(q)) for q in quantiles[name])
            self.thresholds[name] = (low, high)

    def votes(self, inputs: pd.DataFrame) -> pd.Series:
        """Net vote per date: + for strong trend / low vol / greed, - for the opposite."""
        total = pd.Series(0, index=inputs.index, dtype=np.int64)
        for name, values in self._indicators(inputs).items():
            if name not in self.thresholds:
                continue
            low, high = self.thresholds[name]
            vote = (values >= high).astype(np.int64) - (values <= low).astype(np.int64)
            vote[values.isna()] = 0
            total += -vote if name == "vol" else vote  # high volatility is bearish
        return total

    @property
    def vote_threshold(self) -> int:
        return max(1, math.ceil(self.net_vote_share * len(self.thresholds) - 1e-9))

    def _raw_probabilities(self, inputs: pd.DataFrame) -> np.ndarray:
        net = self.votes(inputs).to_numpy()
        state = np.full(net.size, _NEUTRAL)
        state[net >= self.vote_threshold] = _BULL
        state[net <= -self.vote_threshold] = _BEAR
        return np.eye(len(REGIMES))[state]


@dataclass
class MarkovDetector(RegimeDetector):
    """Three-state Markov-switching mean/variance model of daily market returns."""

    switching_variance: bool = True
    return_scale: float = 100.0  # returns in percent: better conditioned likelihood
    max_iter: int = 200
    em_iter: int = 5
    fear_greed_tvtp: bool = False  # transition probabilities driven by yesterday's fear-greed
    min_state_share: float = 0.01  # of the fit dates' filtered probability mass, per state
    state_order_by: str = "mean"  # name states by: mean return | volatility (low = bull)
    params: np.ndarray | None = field(default=None, init=False)
    state_order: np.ndarray | None = field(default=None, init=False)  # model state per REGIMES
    state_means: np.ndarray | None = field(default=None, init=False)  # daily mean per REGIMES
    state_vols: np.ndarray | None = field(default=None, init=False)  # daily vol per REGIMES
    state_shares: np.ndarray | None = field(default=None, init=False)  # fit-date share per REGIMES
    fear_greed_center: float = field(default=50.0, init=False)
    fear_greed_scale: float = field(default=1.0, init=False)
    converged: bool = field(default=False, init=False)
    log_likelihood: float = field(default=math.nan, init=False)

    name = "markov"

    def _model(self, inputs: pd.DataFrame):
        from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

        returns = inputs["market_return"].to_numpy(dtype=np.float64) * self.return_scale
        kwargs = {}
        if self.fear_greed_tvtp:
            # Yesterday's index (known at t) scaled with fit-period moments; missing -> centre.
            fg = inputs["fear_greed"].shift(1).to_numpy(dtype=np.float64)
            fg = np.nan_to_num((fg - self.fear_greed_center) / self.fear_greed_scale)
            kwargs["exog_tvtp"] = np.column_stack([np.ones(fg.size), fg])
        return MarkovRegression(
            returns, k_regimes=3, trend="c", switching_variance=self.switching_variance, **kwargs
        )

    def _fit(self, inputs: pd.DataFrame) -> None:
        if self.fear_greed_tvtp:
            fg = inputs["fear_greed"].dropna()
            if fg.empty:
                raise DetectorFitError("markov detector: fear_greed_tvtp needs fear-greed values")
            self.fear_greed_center = float(fg.mean())
            self.fear_greed_scale = float(fg.std()) or 1.0
        model = self._model(inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence is checked explicitly below
            try:
                result = model.fit(disp=False, maxiter=self.max_iter, em_iter=self.em_iter)
            except (np.linalg.LinAlgError, ValueError) as error:
                raise DetectorFitError(f"markov detector: fit failed: {error}") from error
        params = np.asarray(result.params, dtype=np.float64)
        self.converged = bool(result.mle_retvals.get("converged", False))
        self.log_likelihood = float(result.llf)
        if not self.converged or not np.all(np.isfinite(params)):
            raise DetectorFitError("markov detector: maximum likelihood did not converge")
        names = list(model.param_names)
        means = np.array([params[names.index(f"const[{k}]")] for k in range(3)])
        if self.switching_variance:
            variances = np.array([params[names.index(f"sigma2[{k}]")] for k in range(3)])
        else:
            variances = np.full(3, params[names.index("sigma2")])
        shares = np.asarray(result.filtered_marginal_probabilities).mean(axis=0)
        if shares.min() < self.min_state_share:
            raise DetectorFitError(
                f"markov detector: degenerate state (filtered shares {np.round(shares, 4)}, "
                f"min_state_share {self.min_state_share})")
        if self.state_order_by == "volatility":
            order = np.argsort(variances)  # calmest = bull, most volatile = bear
        elif self.state_order_by == "mean":
            if np.unique(np.round(means, 12)).size < 3:
                raise DetectorFitError("markov detector: states with identical mean return")
            order = np.argsort(-means)  # highest mean = bull, lowest = bear
        else:
            raise ValueError(f"state_order_by must be 'mean' or 'volatility', "
                             f"got {self.state_order_by!r}")
        self.params = params
        self.state_order = order
        self.state_means = means[order] / self.return_scale
        self.state_vols = np.sqrt(variances[order]) / self.return_scale
        self.state_shares = shares[order]

    def _raw_probabilities(self, inputs: pd.DataFrame) -> np.ndarray:
        filtered = self._model(inputs).filter(self.params).filtered_marginal_probabilities
        return np.asarray(filtered)[:, self.state_order]


@dataclass
class HmmDetector(RegimeDetector):
    """Three-state Gaussian HMM over several evidence columns, forward-filtered."""

    columns: tuple[str, ...] = ("trend", "volatility", "fear_greed")
    order_column: str = "trend"
    n_iter: int = 30
    tol: float = 1e-4  # EM stops when the log-likelihood gains less than this share
    covariance_floor: float = 0.05
    stay_prior: float = 0.95
    min_state_share: float = 0.02
    seed: int = 0
    kmeans_inits: int = 4  # k-means restarts of the initial states (the best is kept)
    center: np.ndarray | None = field(default=None, init=False)
    scale: np.ndarray | None = field(default=None, init=False)
    model: object | None = field(default=None, init=False)
    state_order: np.ndarray | None = field(default=None, init=False)
    state_shares: np.ndarray | None = field(default=None, init=False)

    name = "hmm"

    def _matrix(self, inputs: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.columns if c not in inputs.columns]
        if missing:
            raise DetectorFitError(f"hmm detector: evidence columns {missing} are not in the "
                                   f"detector inputs (have {list(inputs.columns)})")
        values = inputs[list(self.columns)].to_numpy(dtype=np.float64)
        return (values - self.center) / self.scale

    def _fit(self, inputs: pd.DataFrame) -> None:
        from bma_quant.core.regimes.gaussian_hmm import filter_probabilities, fit_gaussian_hmm

        if self.order_column not in (*self.columns, *inputs.columns):
            raise ValueError(f"hmm detector: order_column {self.order_column!r} is neither one of "
                             f"its columns {list(self.columns)} nor a detector input")
        self.center, self.scale = np.zeros(len(self.columns)), np.ones(len(self.columns))
        raw = self._matrix(inputs)
        # Fit-date moments; a column without values on the fit dates is left out (all NaN), said
        # below in the run's words, not numpy's "Degrees of freedom <= 0" per fold
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.center = np.nanmean(raw, axis=0) if np.isfinite(raw).any() else self.center
            self.scale = np.nanstd(raw, axis=0)
        unusable = ~np.isfinite(self.center) | ~(self.scale > 0)
        if unusable.all():
            raise DetectorFitError("hmm detector: no evidence values on the fit dates")
        if unusable.any():
            logger.warning("hmm detector: evidence %s has no spread on the fit dates; dropped",
                           [c for c, u in zip(self.columns, unusable, strict=True) if u])
            self.columns = tuple(c for c, u in zip(self.columns, unusable, strict=True) if not u)
            self.center, self.scale = self.center[~unusable], self.scale[~unusable]
        x = self._matrix(inputs)
        try:
            self.model = fit_gaussian_hmm(x, len(REGIMES), n_iter=self.n_iter, tol=self.tol,
                                          covariance_floor=self.covariance_floor,
                                          stay_prior=self.stay_prior, seed=self.seed,
                                          kmeans_inits=self.kmeans_inits)
        except (ValueError, np.linalg.LinAlgError) as error:
            raise DetectorFitError(f"hmm detector: fit failed: {error}") from error
        probabilities = filter_probabilities(self.model, x)
        shares = probabilities.mean(axis=0)
        if shares.min() < self.min_state_share:
            raise DetectorFitError(f"hmm detector: degenerate state (filtered shares "
                                   f"{np.round(shares, 4)}, min {self.min_state_share})")
        self.state_order = np.argsort(-self._order_means(inputs, probabilities))  # highest = bull
        self.state_shares = shares[self.state_order]

    def _order_means(self, inputs: pd.DataFrame, probabilities: np.ndarray) -> np.ndarray:
        """Each state's mean of `order_column`: the fitted mean when the HMM models the column,
        else its filtered-probability-weighted mean on the fit dates (states are then named by,
        e.g., the market trend while detected from other evidence)."""
        if self.order_column in self.columns:
            return self.model.means[:, self.columns.index(self.order_column)]
        values = inputs[self.order_column].to_numpy(dtype=np.float64)
        seen = np.isfinite(values)
        if not seen.any():
            raise DetectorFitError(f"hmm detector: order_column {self.order_column!r} has no "
                                   "values on the fit dates")
        weights = probabilities[seen]
        return (weights * values[seen, None]).sum(axis=0) / np.maximum(weights.sum(axis=0),
                                                                         1e-12)

    def _raw_probabilities(self, inputs: pd.DataFrame) -> np.ndarray:
        from bma_quant.core.regimes.gaussian_hmm import filter_probabilities

        return filter_probabilities(self.model, self._matrix(inputs))[:, self.state_order]


def make_detector(kind: str, params: dict, min_duration: int) -> RegimeDetector:
    """A detector from its parameter block (`rules`, `markov` or `hmm`)."""
    if kind == "rules":
        return RulesDetector(
            min_duration=min_duration,
            trend_window=int(params["trend_window"]),
            vol_window=int(params["vol_window"]),
            trend_quantiles=tuple(params["trend_quantiles"]),
            vol_quantiles=tuple(params["vol_quantiles"]),
            fear_greed_quantiles=tuple(params["fear_greed_quantiles"]),
            use_fear_greed=bool(params["use_fear_greed"]),
            net_vote_share=float(params["net_vote_share"]),
        )
    if kind == "markov":
        return MarkovDetector(
            min_duration=min_duration,
            switching_variance=bool(params["switching_variance"]),
            return_scale=float(params["return_scale"]),
            max_iter=int(params["max_iter"]),
            em_iter=int(params["em_iter"]),
            fear_greed_tvtp=bool(params["fear_greed_tvtp"]),
            min_state_share=float(params["min_state_share"]),
            state_order_by=str(params["state_order_by"]),
        )
    if kind == "hmm":
        return HmmDetector(
            min_duration=min_duration,
            columns=tuple(params["columns"]),
            order_column=str(params["order_column"]),
            n_iter=int(params["n_iter"]),
            tol=float(params.get("tol", HmmDetector.tol)),
            covariance_floor=float(params["covariance_floor"]),
            stay_prior=float(params["stay_prior"]),
            min_state_share=float(params["min_state_share"]),
            seed=int(params["seed"]),
            kmeans_inits=int(params.get("kmeans_inits", HmmDetector.kmeans_inits)),
        )
    raise ValueError(f"regime detector must be 'rules', 'markov' or 'hmm', got {kind!r}")


@dataclass(frozen=True)
class DetectorFit:
    detector: RegimeDetector
    requested: str
    fallback: bool  # the requested detector failed and the rules detector was used instead
    error: str | None


def fit_detector(
    kind: str, params: dict, inputs: pd.DataFrame, fit_end, min_duration: int
) -> DetectorFit:
    """Fit the `kind` detector on dates <= fit_end; a Markov or HMM failure falls back to the
    rules. `inputs` must be in date order (a label slice of unsorted rows is positional)."""
    if not inputs.index.is_monotonic_increasing:
        raise ValueError("fit_detector needs detector inputs in date order "
                         "(regimes.detector_inputs sorts them)")
    fit_rows = inputs.loc[: pd.Timestamp(fit_end)]
    detector = make_detector(kind, params[kind], min_duration)
    try:
        return DetectorFit(detector.fit(fit_rows), kind, False, None)
    except DetectorFitError as error:
        if kind == "rules":
            raise
        logger.warning("%s; falling back to the rules detector", error)
        rules = make_detector("rules", params["rules"], min_duration).fit(fit_rows)
        return DetectorFit(rules, kind, True, str(error))


def regime_table(detected: pd.DataFrame, inputs: pd.DataFrame) -> pd.DataFrame:
    """`detect()` output plus the detector inputs' market-wide columns other than the market
    series itself (fear_greed and any evidence columns), by date: the `regimes` dataset."""
    extra = [c for c in inputs.columns if c not in ("market_return", "market_level")]
    values = inputs[extra].reindex(pd.DatetimeIndex(detected["date"]))
    out = detected.copy()
    for column in extra:
        out[column] = values[column].to_numpy(dtype=np.float64)
    return out


def regime_stats(regimes: pd.DataFrame) -> dict[str, float]:
    """Shares of each regime, number of switches, number of spells and mean spell length (days)."""
    labels = regimes.sort_values("date")["regime"].to_numpy()
    n = labels.size
    stats: dict[str, float] = {
        f"share_{r}": float((labels == r).mean()) if n else math.nan for r in REGIMES
    }
    switches = int((labels[1:] != labels[:-1]).sum()) if n else 0
    stats["switches"] = switches
    stats["spells"] = switches + 1 if n else 0
    stats["mean_duration_days"] = n / (switches + 1) if n else math.nan
    return stats


def regime_market_returns(regimes: pd.DataFrame, inputs: pd.DataFrame) -> dict[str, dict]:
    """Per regime, the mean daily market return (the detector inputs' ``market_return``) on
    its dates in ``regimes``, its t-stat (daily returns taken as independent) and the number
    of dates (mean and t NaN without two): what its name promises."""
    returns = inputs["market_return"].reindex(pd.DatetimeIndex(regimes["date"])).to_numpy()
    labels = regimes["regime"].to_numpy()
    out = {}
    for regime in REGIMES:
        values = returns[(labels == regime) & np.isfinite(returns)]
        mean = float(values.mean()) if len(values) > 1 else math.nan
        spread = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        tstat = mean / (spread / math.sqrt(len(values))) if spread > 0 else math.nan
        out[regime] = {"mean": mean, "tstat": tstat, "n_dates": int(len(values))}
    return out


def misnamed_regimes(market_returns: dict[str, dict], min_tstat: float) -> list[str]:
    """Regimes whose market moved against their name beyond noise: `bear` dates on which the
    market rose on average (t-stat above `min_tstat`), `bull` dates on which it fell. The names
    are ranks (of a trend, a mean or a volatility), so in a market that only rose (or fell), or
    whose states differ in something else, they describe no direction."""
    def tstat(regime: str) -> float:
        value = (market_returns.get(regime) or {}).get("tstat", math.nan)
        return value if math.isfinite(value) else 0.0

    return [r for r, wrong in (("bull", -tstat("bull") > min_tstat),
                               ("bear", tstat("bear") > min_tstat)) if wrong]


def detection_accuracy(detected: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Share of dates whose detected regime equals the true one (synthetic markets)."""
    merged = detected[["date", "regime"]].merge(truth[["date", "regime"]], on="date")
    return float((merged["regime_x"] == merged["regime_y"]).mean())


def best_label_match(detected: pd.DataFrame, truth: pd.DataFrame) -> dict[str, str]:
    """detected name -> true name: the permutation of the regime names under which `detected`
    agrees with `truth` on the most of their shared dates (an unsupervised detector's names are
    a convention). Choose it on other dates than those it is scored on: the maximum over the six
    permutations of a detector that knows nothing is well above chance on the dates it was
    picked on (about 0.47 against 0.35 on 500 dates of a sticky 3-state chain)."""
    from itertools import permutations

    merged = detected[["date", "regime"]].merge(
        truth[["date", "regime"]].rename(columns={"regime": "truth"}), on="date")
    if merged.empty:
        raise ValueError("best_label_match: the detected and true regimes share no date")
    found, true = merged["regime"].to_numpy(str), merged["truth"].to_numpy(str)
    mappings = [dict(zip(REGIMES, p, strict=True)) for p in permutations(REGIMES)]
    scores = [float(np.mean(np.array([m[r] for r in found]) == true)) for m in mappings]
    return mappings[int(np.argmax(scores))]  # ties: the first, the identity


def detection_agreement(detected: pd.DataFrame, truth: pd.DataFrame,
                        matched_on: pd.DataFrame | None = None) -> dict[str, float]:
    """Agreement of detected with true regimes on the dates both have (synthetic markets):
    `accuracy` (same label), `best_match_accuracy` (detected labels renamed by the permutation
    `best_label_match` chose on `matched_on`: other detected dates, e.g. development dates, so
    that the figure is held out; None = chosen on the scored dates themselves, which is optimistic)
    and `probability` (mean probability the detector gives the true regime under its own
    names, when it has p_* columns), and `best_match_probability` (the same under the matched
    names: the mass of the detected states renamed to the true regime)."""
    merged = detected.merge(truth[["date", "regime"]].rename(columns={"regime": "truth"}),
                            on="date")
    if merged.empty:
        raise ValueError("detection_agreement: the detected and true regimes share no date")
    found, true = merged["regime"].to_numpy(str), merged["truth"].to_numpy(str)
    mapping = best_label_match(detected if matched_on is None else matched_on, truth)
    best = float(np.mean(np.array([mapping[r] for r in found]) == true))
    out = {"accuracy": float(np.mean(found == true)), "best_match_accuracy": best}
    if set(PROBABILITY_COLUMNS) <= set(merged.columns):
        column = {r: k for k, r in enumerate(REGIMES)}
        probabilities = merged[list(PROBABILITY_COLUMNS)].to_numpy(np.float64)
        out["probability"] = float(np.mean(
            probabilities[np.arange(len(true)), [column[r] for r in true]]))
        renamed = np.zeros_like(probabilities)  # p of each true regime: its detected states' sum
        for state, k in column.items():
            if mapping.get(state) in column:
                renamed[:, column[mapping[state]]] += np.nan_to_num(probabilities[:, k])
        out["best_match_probability"] = float(np.mean(
            renamed[np.arange(len(true)), [column[r] for r in true]]))
    return out
