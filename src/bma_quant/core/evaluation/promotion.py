"""When a newly registered model becomes the champion, and what its registry entry says.

A candidate becomes champion only when its gates pass AND its development out-of-fold RankIC
beats the current champion's on the same development period and folds. The comparison never reads
the test period: a champion picked as the best of several runs on test rows would make its test
figures a maximum over runs, no longer out-of-sample. Scores of other development periods or fold
layouts (other data, another split or CV) or of another gated model are not comparable: the
champion stays and the reason says so; so are scores on another version of the data file. A score
is trusted only when no choice upstream read the CV test windows it is measured on (feature
selection's default `pre_cv` scope): a run whose selection scored them (`fold_train`, `dev`) is
never champion. A champion registered before these rules (chosen on the test period, or without
the tags that record them) is replaced by the first version that passes its gates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# version tags that identify what a version was measured on (read back from the champion)
TEST_START, TEST_END = "test_start", "test_end"
DEV_START, DEV_END, FOLDS = "dev_start", "dev_end", "compare_folds"
COMPARE_METRIC, COMPARE_VALUE = "compare_metric", "compare_value"
DATA, OOF_HONEST = "data_fingerprint", "oof_scores_honest"
TARGET = "label_target"  # the label the score ranks: horizon and execution delay
GATES, GATE_SETTINGS = "gates", "gate_settings"  # "pass" / "fail"; what the gates ran under
SERVED = "served_predictions"  # fingerprint of the served model's test predictions
# characters MLflow model names keep readable in URIs (models:/<name>@champion)
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class Candidate:
    """What a new version was measured on and how well it did: ``metric`` names the gated
    model's development out-of-fold score (``development_score``), ``value`` is that score."""

    gates_passed: bool
    failed_gates: tuple[str, ...]
    test_start: str | None
    test_end: str | None
    metric: str
    value: float | None
    dev_start: str | None = None
    dev_end: str | None = None
    folds: str | None = None  # fingerprint of the CV fold layout the score was measured on
    data_fingerprint: str | None = None  # sha256 prefix of the data file the run trained on
    # no choice upstream read the CV test windows the score is measured on (feature selection's
    # scope): only then is the score out of fold
    oof_honest: bool = False
    target: str | None = None  # e.g. "10d return after 1d delay": scores of other labels differ
    # fingerprint of the evaluation settings the test metrics and gates ran under (backtest,
    # metrics, gate thresholds: `gate_settings_fingerprint`)
    gate_settings: str | None = None
    # fingerprint of the served model's test predictions (`predictions_fingerprint`): another
    # served model (another stacking method, say) with the same development score differs here
    served: str | None = None

    def tags(self) -> dict[str, str]:
        return {TEST_START: str(self.test_start), TEST_END: str(self.test_end),
                SERVED: str(self.served),
                GATE_SETTINGS: str(self.gate_settings),
                DEV_START: str(self.dev_start), DEV_END: str(self.dev_end),
                FOLDS: str(self.folds), DATA: str(self.data_fingerprint),
                TARGET: str(self.target),
                OOF_HONEST: "true" if self.oof_honest else "false",
                COMPARE_METRIC: self.metric,
                COMPARE_VALUE: "nan" if self.value is None else repr(float(self.value))}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def development_score(model: str, ensemble_selection: Mapping[str, Any] | None,
                      base_status: Mapping[str, Any] | None,
                      regime_cv: Mapping[str, Any] | None = None) -> tuple[str, float | None]:
    """(name, value) of ``model``'s honest development out-of-fold RankIC: scored on folds no
    choice was made on. ``final``: the ensemble method chosen walk-forward on earlier folds,
    scored on the next (``stacking.final.oos_rank_ic``); an ensemble method: its own score on
    the folds after it was fitted; a base learner: its mean RankIC on the folds after tuning
    (``base_models.<model>.oof_rank_ic_mean``); a regime model: its out-of-fold RankIC
    (``regime_models.<model>.oof_rank_ic_mean``, ``regime_cv`` = the regime report's `cv`).
    Value None when the model has none."""
    selection = ensemble_selection or {}
    if model == "final":
        return "stacking.final.oos_rank_ic", _finite(selection.get("final_nested_rank_ic"))
    if model in (selection.get("oos_rank_ic") or {}):
        return f"stacking.{model}.oos_rank_ic", _finite(selection["oos_rank_ic"][model])
    if model in (regime_cv or {}):
        return (f"regime_models.{model}.oof_rank_ic_mean",
                _finite((regime_cv[model] or {}).get("oof_rank_ic_mean")))
    metrics = ((base_status or {}).get(model) or {}).get("metrics") or {}
    return f"base_models.{model}.oof_rank_ic_mean", _finite(metrics.get("oof_rank_ic_mean"))


def gate_settings_fingerprint(settings: Mapping[str, Any] | None) -> str | None:
    """A short fingerprint of the evaluation settings (backtest, metrics, gates) that the test
    metrics and the gates depend on. None without settings."""
    if not settings:
        return None
    import hashlib
    import json

    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# the tags that say two versions hold the same model: same data, label, folds, development
# period and development score (to the last digit; the chain is deterministic)
_SAME_MODEL = (DATA, TARGET, FOLDS, DEV_START, DEV_END, COMPARE_METRIC, COMPARE_VALUE)


def same_model_failed_before(candidate: Candidate, versions: Mapping[str, Mapping[str, str]]
                             ) -> str | None:
    """The earliest registered version (``versions``: version -> tags) that holds the
    candidate's model and failed its gates, or None. Only the evaluation can have changed in
    between (its settings, or its code), and it was changed after the test figures were seen."""
    mine = candidate.tags()
    for version in sorted(versions, key=lambda v: (len(str(v)), str(v))):
        tags = versions[version] or {}
        # a version registered before the served predictions were tagged: the rest decides
        served = tags.get(SERVED) in (None, "None") or tags.get(SERVED) == mine[SERVED]
        if tags.get(GATES) == "fail" and served and all(tags.get(k) == mine[k]
                                                        for k in _SAME_MODEL):
            return str(version)
    return None


def predictions_fingerprint(predictions) -> str | None:
    """A short fingerprint of (date, ticker, prediction) rows, predictions to 6 decimals: two
    versions serve the same model only when their test predictions are the same. None without
    rows."""
    if predictions is None or not len(predictions):
        return None
    import hashlib

    rows = predictions[["date", "ticker", "prediction"]].assign(
        date=lambda f: f["date"].astype(str), ticker=lambda f: f["ticker"].astype(str),
        prediction=lambda f: f["prediction"].astype(float).round(6))
    table = rows.sort_values(["date", "ticker"]).to_csv(index=False)
    return hashlib.sha256(table.encode()).hexdigest()[:16]


def folds_fingerprint(cv_folds) -> str | None:
    """A short fingerprint of the fold layout (date, fold, role rows): two scores are measured on
    the same dates only when it is the same. None without folds."""
    if cv_folds is None or not len(cv_folds):
        return None
    import hashlib

    table = cv_folds.sort_values(list(cv_folds.columns)).to_csv(index=False)
    return hashlib.sha256(table.encode()).hexdigest()[:16]


def registered_model_name(prefix: str, data_stem: str | None, explicit: str | None = None) -> str:
    """``explicit`` when given, else ``<prefix>-<data file stem>``: one registered model (and one
    champion) per data set, so a run on another file never replaces this one's champion."""
    if explicit:
        return str(explicit)
    if not data_stem:
        return prefix
    return f"{prefix}-{_UNSAFE.sub('_', data_stem).strip('_') or 'data'}"


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def decide(candidate: Candidate, champion: Mapping[str, str] | None,
           champion_version: str | None = None,
           versions: Mapping[str, Mapping[str, str]] | None = None) -> Decision:
    """Promote ``candidate`` over the champion whose version tags are ``champion`` (None: there
    is no champion)? ``versions`` (version -> tags, every registered version): a model that
    failed its gates before and passes them now only because the evaluation changed is not
    promoted (`same_model_failed_before`)."""
    if not candidate.gates_passed:
        return Decision(False, "gates failed: " + (", ".join(candidate.failed_gates) or "?"))
    if not candidate.oof_honest:
        return Decision(False, f"gates passed but {candidate.metric} is not out of fold: feature "
                               "selection scored dates of the CV test windows "
                               "(feature_engineering.selection.ic_scope other than pre_cv), so "
                               "the score is optimistic and this version is never champion")
    if _finite(candidate.value) is None:
        # a champion without a score could never be compared with a later version
        return Decision(False, f"no development out-of-fold score ({candidate.metric}) to "
                               "compare versions with: a champion needs one")
    failed_before = same_model_failed_before(candidate, versions or {})
    if failed_before is not None:
        return Decision(False, _regated_reason(candidate, failed_before,
                                               (versions or {})[failed_before]))
    if champion is None:
        return Decision(True, "gates passed and there is no champion yet")
    label = f"champion version {champion_version}" if champion_version else "the champion"
    if any(champion.get(tag) is None for tag in (DEV_START, FOLDS, OOF_HONEST, TARGET)):
        return Decision(True, f"gates passed; {label} was registered by an earlier version of "
                              "the project (chosen on the test period, or without its fold "
                              "layout or the record of whether its score was out of fold), so "
                              "the first version that passes its gates replaces it")
    value = _finite(candidate.value)
    period = (str(candidate.dev_start), str(candidate.dev_end))
    theirs = (champion.get(DEV_START), champion.get(DEV_END))
    if period != theirs:
        return Decision(False, f"not comparable with {label}: development period "
                               f"{period[0]}..{period[1]} differs from its {theirs[0]}..{theirs[1]}")
    if champion.get(TARGET) != str(candidate.target):
        return Decision(False, f"not comparable with {label}: it ranks another label "
                               f"({champion.get(TARGET)}; this run: {candidate.target}, "
                               "temporal.*), so its RankIC measures something else")
    if champion.get(DATA) != str(candidate.data_fingerprint):
        return Decision(False, f"not comparable with {label}: its score was measured on another "
                               f"version of the data file (sha256 prefix {champion.get(DATA)}, "
                               f"this run's {candidate.data_fingerprint})")
    if champion.get(FOLDS) != str(candidate.folds):
        return Decision(False, f"not comparable with {label}: its score was measured on another "
                               "CV fold layout (cv.* parameters), so on other dates")
    if champion.get(COMPARE_METRIC) != candidate.metric:
        return Decision(False, f"not comparable with {label}: it was compared on "
                               f"{champion.get(COMPARE_METRIC)}, this one on {candidate.metric}")
    best = _finite(champion.get(COMPARE_VALUE))
    if best is not None and value <= best:
        return Decision(False, f"gates passed but {candidate.metric} {value:.4g} (development, "
                               f"out of fold) does not beat {label}'s {best:.4g}")
    shown = "n/a" if best is None else f"{best:.4g}"
    return Decision(True, f"gates passed and {candidate.metric} {value:.4g} (development, out "
                          f"of fold) beats {label}'s {shown} on the same development folds")


def _regated_reason(candidate: Candidate, version: str, tags: Mapping[str, str]) -> str:
    theirs = tags.get(GATE_SETTINGS)
    if theirs in (None, "None"):
        changed = "(before the evaluation settings were recorded)"
    elif theirs != str(candidate.gate_settings):
        changed = "under other evaluation settings (evaluation.backtest, .metrics or .gates)"
    else:
        changed = "under the same settings (the evaluation code changed)"
    return (f"gates passed, but version {version} holds the same model (same data, folds, "
            f"{candidate.metric} and test predictions) and failed its gates {changed}: a pass that comes from "
            "changing the evaluation after its test figures were seen is chosen on the test "
            "period, so this version is not champion (move the alias by hand in MLflow if the "
            "new settings are policy, not a retry)")


def _shown(value: Any) -> str:
    number = _finite(value)
    return "n/a" if number is None else f"{number:.4g}"


def settings_text(settings: Mapping[str, Any] | None) -> str:
    """The evaluation settings the gates ran under, in one line (e.g. "backtest cost_bps 10,
    n_quantiles 5, ...; metrics min_names 5")."""
    parts = []
    for section in ("backtest", "metrics"):
        values = (settings or {}).get(section) or {}
        if values:
            parts.append(section + " " + ", ".join(f"{k} {v}" for k, v in sorted(values.items())))
    return "; ".join(parts) or "not recorded"


def version_description(*, data_path: str | None, data_fingerprint: str | None,
                        candidate: Candidate, headline: Mapping[str, Any], model: str,
                        decision: Decision, settings: Mapping[str, Any] | None = None) -> str:
    """The registry entry's description (Markdown): data, test period, gates and the evaluation
    settings they ran under, headline metrics, and why it is or is not the champion."""
    metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, int | float) else f"{k} {v}"
                        for k, v in headline.items() if v is not None)
    gates = "pass" if candidate.gates_passed else (
        "fail (" + ", ".join(candidate.failed_gates) + ")")
    return "\n".join([
        f"- data: `{data_path}` (sha256 prefix {data_fingerprint or 'unknown'})",
        f"- development period: {candidate.dev_start} .. {candidate.dev_end} "
        f"({candidate.metric} {_shown(candidate.value)}, the champion comparison"
        + ("; a champion's score is the best of the versions compared on these folds, a "
           "maximum over runs" if decision.promote else "")
        + ("" if candidate.oof_honest else "; optimistic: selection read the CV test windows")
        + ")",
        f"- test period: {candidate.test_start} .. {candidate.test_end}",
        f"- gates on `{model}`: {gates}",
        f"- evaluation settings (evaluation.*): {settings_text(settings)}",
        f"- test metrics of `{model}`: {metrics or 'none'}",
        f"- champion: {'yes' if decision.promote else 'no'}, {decision.reason}",
    ])
