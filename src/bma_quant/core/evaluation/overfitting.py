"""How much of a reported result is luck: the search's size against the reported Sharpe ratios.

Given every configuration's development-period daily returns (``core.evaluation.trial_accounting``) and each
evaluated model's test-period daily returns:

- the deflated Sharpe ratio of each model on the test period, with N = the number of
  configurations tried (pruned Optuna trials included: they were tried, their returns are not
  known) and V[SR] = the variance of their development-period Sharpe ratios among
  configurations measured on the same dates (pooled over the windows: Optuna trials on the
  tuning folds, out-of-fold models on later ones; a difference between two periods is not the
  luck of a search) (``core.evaluation.deflated_sharpe``; per-period units throughout, as in
  the paper);
- the probability of backtest overfitting by CSCV over the configurations that share a window of
  development dates (``core.evaluation.pbo``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bma_quant.core.evaluation.deflated_sharpe import (
    DeflatedSharpe,
    annualise,
    deflated_sharpe_ratio,
)
from bma_quant.core.evaluation.pbo import PBOResult, cscv_pbo
from bma_quant.core.evaluation.trial_accounting import common_window, longest_shared_window


def per_period_sharpes(returns: pd.DataFrame) -> pd.Series:
    """Per-period Sharpe of every column over its own finite values (NaN when undefined)."""
    mean, std = returns.mean(), returns.std(ddof=1)
    return (mean / std.where(std > 0)).rename("sharpe")


def pooled_sharpe_variance(returns: pd.DataFrame, sharpes: pd.Series) -> tuple[float, int]:
    """The variance of the configurations' Sharpe ratios (`sharpes`, by column of `returns`)
    within groups measured on the same dates, pooled over the groups by their degrees of
    freedom, and the number of groups it came from. 0 when no group has two members."""
    dates = returns.notna().to_numpy()
    keys = pd.Series([dates[:, j].tobytes() for j in range(dates.shape[1])],
                     index=returns.columns)
    squares, dof, groups = 0.0, 0, 0
    for _, members in keys.groupby(keys, sort=False):
        values = sharpes.reindex(members.index).dropna()
        if len(values) > 1:
            squares += float(values.var(ddof=1)) * (len(values) - 1)
            dof += len(values) - 1
            groups += 1
    return (squares / dof if dof else 0.0), groups


@dataclass
class OverfittingAssessment:
    """Configurations counted, their Sharpe dispersion, DSR per model and PBO."""

    n_configurations: int  # with returns: in V[SR] and PBO
    trial_sharpe_variance: float
    deflated: dict[str, DeflatedSharpe]
    pbo: PBOResult | None
    pbo_configurations: list[str] = field(default_factory=list)
    pbo_window: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)
    n_pruned_trials: int = 0  # tried without returns (pruned): counted in N only
    # windows of development dates V[SR] was pooled over (0: across windows, no two
    # configurations sharing their dates)
    sharpe_windows: int = 1
    # median pairwise correlation of the PBO window's configurations (near 1: copies of one)
    pbo_median_correlation: float = math.nan

    @property
    def n_trials(self) -> int:
        """N of the deflated Sharpe ratio: every configuration tried."""
        return self.n_configurations + self.n_pruned_trials

    def metrics(self, periods_per_year: int) -> dict[str, float]:
        """``n_configurations``, ``n_trials`` (N of the deflated Sharpe), ``pbo``,
        ``pbo_probability_of_loss``,
        ``trial_sharpe_std`` (annualised), and per model ``<model>.deflated_sharpe``,
        ``<model>.probabilistic_sharpe`` and ``<model>.expected_max_sharpe`` (annualised)."""
        out = {
            "n_configurations": float(self.n_configurations),
            "n_trials": float(self.n_trials),
            "trial_sharpe_std": annualise(math.sqrt(self.trial_sharpe_variance),
                                          periods_per_year),
            "pbo": self.pbo.pbo if self.pbo else math.nan,
            "pbo_probability_of_loss": self.pbo.probability_of_loss if self.pbo else math.nan,
        }
        for model, dsr in self.deflated.items():
            out[f"{model}.deflated_sharpe"] = dsr.deflated_sharpe
            out[f"{model}.probabilistic_sharpe"] = dsr.probabilistic_sharpe
            out[f"{model}.expected_max_sharpe"] = annualise(dsr.expected_max_sharpe,
                                                            periods_per_year)
        return out

    def report(self, periods_per_year: int) -> dict:
        """JSON-serialisable summary (Sharpe ratios per period unless named annualised)."""
        return {
            "n_configurations": self.n_configurations,
            "n_pruned_trials": self.n_pruned_trials,
            "n_trials": self.n_trials,
            "trial_sharpe_variance_per_period": self.trial_sharpe_variance,
            "trial_sharpe_windows": self.sharpe_windows,
            "deflated_sharpe": {m: _labelled_units(d.as_dict(), periods_per_year)
                                for m, d in self.deflated.items()},
            "pbo": None if self.pbo is None else {
                "pbo": self.pbo.pbo,
                "probability_of_loss": self.pbo.probability_of_loss,
                "n_blocks": self.pbo.n_blocks,
                "n_splits": len(self.pbo.splits),
                "n_configurations": self.pbo.n_configurations,
                "n_dates": self.pbo.n_obs,
                "window": list(self.pbo_window) if self.pbo_window else None,
                "configurations": self.pbo_configurations,
                "median_logit": float(np.median(self.pbo.logits)),
                "median_correlation": (None if math.isnan(self.pbo_median_correlation)
                                       else self.pbo_median_correlation),
            },
            "metrics": self.metrics(periods_per_year),
            "notes": list(self.notes),
        }


def _pbo(configuration_returns: pd.DataFrame, n_blocks: int, min_block_dates: int,
         notes: list[str]
         ) -> tuple[PBOResult | None, list[str], tuple[str, str] | None, float]:
    window = common_window(configuration_returns, n_blocks * min_block_dates)
    if configuration_returns.shape[1] < 2:
        notes.append(f"PBO not computed: {configuration_returns.shape[1]} configuration(s); PBO "
                     "compares several")
        return None, [], None, math.nan
    if window.shape[1] < 2:
        longest = longest_shared_window(configuration_returns)
        notes.append(f"PBO not computed: fewer than 2 configurations share a window of at least "
                     f"{n_blocks} x {min_block_dates} development dates "
                     "(evaluation.overfitting.n_blocks x min_block_dates; fewer blocks or shorter "
                     "ones fit a shorter development period, with a coarser estimate); the "
                     f"longest window this check can use (one configuration's dates, all covered "
                     f"by another) has {longest} dates")
        return None, [], None, math.nan
    if window.shape[1] < configuration_returns.shape[1]:
        notes.append(f"PBO over the {window.shape[1]} of {configuration_returns.shape[1]} "
                     "configurations that share the most common window of development dates")
    span = (str(window.index.min().date()), str(window.index.max().date()))
    result = cscv_pbo(window, n_blocks)
    alike = _median_correlation(window)
    if window.shape[1] < MIN_PBO_CONFIGURATIONS or alike > ALIKE_CORRELATION:
        notes.append(
            f"PBO {result.pbo:.2f} is over {window.shape[1]} configuration(s) whose daily returns "
            f"have a median correlation of {alike:.2f}: with so few, or so alike, which one wins "
            "in sample is close to a coin toss and costs little; read it with probability_of_"
            f"loss ({result.probability_of_loss:.2f}: the in-sample winner losing out of "
            "sample), not alone")
    return result, [str(c) for c in window.columns], span, alike


# PBO ranks the in-sample winner among the configurations out of sample: among a handful, or
# among near copies of one model, its rank is noise whatever the edge (a note says so)
MIN_PBO_CONFIGURATIONS = 5
ALIKE_CORRELATION = 0.95


def _median_correlation(returns: pd.DataFrame) -> float:
    """Median pairwise correlation of the configurations' daily returns (NaN under two)."""
    if returns.shape[1] < 2:
        return math.nan
    corr = np.corrcoef(returns.to_numpy(np.float64), rowvar=False)
    upper = corr[np.triu_indices_from(corr, k=1)]
    upper = upper[np.isfinite(upper)]
    return float(np.median(upper)) if upper.size else math.nan


def assess_overfitting(
    configuration_returns: pd.DataFrame,
    test_returns: dict[str, np.ndarray],
    *,
    n_blocks: int = 16,
    min_block_dates: int = 20,
    n_pruned_trials: int = 0,
) -> OverfittingAssessment:
    """DSR of every test-period return series in ``test_returns`` ({model: daily returns}) and
    PBO, from the configurations' development-period daily returns (dates x configurations).
    ``n_pruned_trials``: configurations tried whose returns are unknown (Optuna trials pruned
    before their last fold); they raise N, the number of trials the best was chosen from, and
    take no part in V[SR] or PBO.

    With no configuration at all the search is taken as a single trial (SR0 = 0, so DSR = PSR),
    and the notes say so."""
    notes: list[str] = []
    sharpes = per_period_sharpes(configuration_returns).dropna()
    n_configurations = int(configuration_returns.shape[1])
    n_pruned_trials = max(int(n_pruned_trials), 0)
    if n_configurations == 0:
        notes.append("no configuration's out-of-fold returns were available: the deflated "
                     "Sharpe ratio assumes a single trial (it equals the probabilistic one)")
    n_trials = max(n_configurations + n_pruned_trials, 1)  # V[SR] = 0 with < 2 makes SR0 = 0
    variance, groups = pooled_sharpe_variance(configuration_returns, sharpes)
    if groups == 0 and len(sharpes) > 1:
        # no two configurations share their dates: the spread across windows is all there is
        # (an upper bound: it also holds the windows' differences)
        variance = float(sharpes.var(ddof=1))
        notes.append("V[SR] across configurations measured on different dates: no two share "
                     "their development dates")
    deflated = {model: deflated_sharpe_ratio(values, n_trials, variance)
                for model, values in test_returns.items()}
    pbo, members, window, alike = _pbo(configuration_returns, n_blocks, min_block_dates, notes)
    return OverfittingAssessment(n_configurations, variance, deflated, pbo, members, window,
                                 notes, n_pruned_trials=n_pruned_trials,
                                 sharpe_windows=groups, pbo_median_correlation=alike)


# Fields of a deflated Sharpe that are Sharpe ratios (or their variance) per period: the report
# names their unit, beside the annualised value the MLflow metrics carry under the plain name.
_PER_PERIOD_SHARPES = ("sharpe", "expected_max_sharpe")


def _labelled_units(fields: dict, periods_per_year: int) -> dict:
    """A deflated Sharpe's fields with the unit of each Sharpe named: `<name>_per_period` and
    `<name>_annualised` (the MLflow metric `<model>.expected_max_sharpe` is annualised, the
    per-period value had the same name in the report)."""
    out = {}
    for key, value in fields.items():
        if key in _PER_PERIOD_SHARPES:
            out[f"{key}_per_period"] = value
            out[f"{key}_annualised"] = annualise(value, periods_per_year)
        elif key == "trial_sharpe_variance":
            out["trial_sharpe_variance_per_period"] = value
        else:
            out[key] = value
    return out
