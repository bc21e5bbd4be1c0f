"""Which configured learner arguments the library behind a learner reads (framework-free).

A misspelt argument is not refused by the libraries at a learner's construction: ElasticNet
fails inside its node and the learner is dropped, XGBoost warns "not used" on every fit, and
LightGBM says nothing at the verbosity the project trains with. The pre-flight asks each library
before a run: the wrapper's own arguments (`get_params`) are read; any other name is passed to a
one-tree fit on a few rows, and the library's own "unknown" / "not used" message names it (native
names and aliases such as LightGBM's `min_data_in_leaf` or XGBoost's `eta` pass). The same
kind of fit, with every argument, tells a value the library refuses (`max_depth: -5`,
`num_leaves: 1`, `l1_ratio: 7`), which failed the learner inside its node, and the run went on
without it.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

_PROBE_ROWS = 40  # rows of the one-tree fit that makes a library name what it does not read


def unknown_arguments(kind: str, arguments: Mapping[str, Any]) -> list[str]:
    """Names in `arguments` (name -> a value it may take) that the estimator behind learner
    `kind` does not read; [] for a kind this module does not know (its name is checked
    elsewhere)."""
    check = _CHECKS.get(kind)
    return sorted(check(dict(arguments))) if check and arguments else []


def refused_values(kind: str, arguments: Mapping[str, Any], stacking: bool = False
                   ) -> str | None:
    """The library's own message when it refuses one of these argument values in a probe fit
    of the learner as the project builds it (its fixed arguments and seed included: a
    `random_state` or `force_col_wise` of the user's clashes with them), one tree on a few rows;
    None when every value is taken, for a kind this module does not probe, or a name it does not
    read (`unknown_arguments` says that). A list-like value (`monotone_constraints`, one per
    feature) cannot be judged on the probe's three features: when the fit fails only with
    such values, nothing is said. `stacking`: the meta-learner of `stacking.<kind>`, as
    core.ensemble.combiners builds it."""
    if not _probed(kind, stacking) or not arguments or unknown_arguments(kind, arguments):
        return None
    probe = dict(arguments)
    rounds = probe.get("n_estimators")
    if isinstance(rounds, int) and not isinstance(rounds, bool) and rounds > 1:
        probe["n_estimators"] = 1  # a valid count: one tree tells the rest
    failure = _probe_failure(kind, probe, stacking)
    if failure is None:
        return None
    scalars = {k: v for k, v in probe.items() if not _list_like(v)}
    if len(scalars) < len(probe):
        failure = _probe_failure(kind, scalars, stacking)
    # a learner that cannot fit the probe's few rows at all (it needs more features, named
    # columns ...) says nothing of the values
    if failure is not None and _probe_failure(kind, {}, stacking) is not None:
        return None
    return failure


def _probed(kind: str, stacking: bool) -> bool:
    """Stacking's two meta-learners; every learner of the registry, a researcher's own
    (`register_learner`) included: a misspelt argument of theirs fails their constructor."""
    from bma_quant.core.models.learners import LEARNERS

    return kind in (("elastic_net", "lightgbm") if stacking else LEARNERS)


def _list_like(value: Any) -> bool:
    return isinstance(value, list | tuple | dict | np.ndarray) or (
        isinstance(value, str) and value.strip()[:1] in ("(", "[", "{"))


def _probe_failure(kind: str, arguments: dict, stacking: bool = False) -> str | None:
    """The message of a probe fit that fails: the learner as the project builds and fits it
    (its own `fit`, with weights and dates), or stacking's meta-learner."""
    from bma_quant.core.ensemble.combiners import meta_elastic_net, meta_lightgbm
    from bma_quant.core.models.learners import build_estimator, get_learner

    X, y = _probe_data()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), _native_output_silenced(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if stacking:
                {"elastic_net": meta_elastic_net, "lightgbm": meta_lightgbm}[kind](
                    arguments).fit(X, y)
            else:
                dates = np.repeat(np.datetime64("2020-01-01") + np.arange(len(y) // 5), 5)
                get_learner(kind).fit(build_estimator(kind, arguments), X, y, np.ones(len(y)),
                                      dates)
        except Exception as error:  # noqa: BLE001 - the library's message is the answer
            return _first_sentence(str(error)) or type(error).__name__
    return None


@contextlib.contextmanager
def _native_output_silenced():
    """LightGBM writes a refused value's "[Fatal]" line to the process's own output, beside
    the exception that carries the same message."""
    import os
    import sys
    import tempfile

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                _flush_c_streams()  # what the library's C stdio still buffers goes to the sink
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def _flush_c_streams() -> None:
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def _first_sentence(message: str) -> str:
    """The first line, without XGBoost's time and source or LightGBM's source location."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    line = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", line)
    return re.sub(r"\s+at \S+, line \d+\s*\.?$", "", line).strip()


def known_arguments(kind: str) -> list[str]:
    """The wrapper's own argument names for learner `kind` (close matches for a message)."""
    build = _WRAPPERS.get(kind)
    return sorted(_wrapper_arguments(build())) if build else []


def _wrapper_arguments(estimator) -> set[str]:
    return set(estimator.get_params(deep=False))


def _probe_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(_PROBE_ROWS, 3)), rng.normal(size=_PROBE_ROWS)


def _elastic_net(arguments: dict) -> set[str]:
    return set(arguments) - _wrapper_arguments(_elastic_net_wrapper())


def _alpha_composite(arguments: dict) -> set[str]:
    return set(arguments) - _wrapper_arguments(_alpha_composite_wrapper())


def _xgboost(arguments: dict) -> set[str]:
    import xgboost as xgb

    others = {k: v for k, v in arguments.items() if k not in _wrapper_arguments(_xgboost_wrapper())}
    if not others:
        return set()
    # with the wrapper's own arguments too: `quantile_alpha` is read under
    # `objective: reg:quantileerror`, `rate_drop` under `booster: dart`
    with warnings.catch_warnings(record=True) as caught, _native_output_silenced():
        warnings.simplefilter("always")
        try:
            xgb.XGBRegressor(**{**arguments, "n_estimators": 1, "n_jobs": 1}).fit(
                *_probe_data())
        except Exception:  # noqa: BLE001 - a value the library refuses: the run says so itself
            return set()
    named = set()
    for warning in caught:
        found = re.search(r"Parameters: \{(.*?)\} are not used", str(warning.message), re.S)
        if found:
            named |= set(re.findall(r'"([^"]+)"', found.group(1)))
    return named & set(others)


def _lightgbm(arguments: dict) -> set[str]:
    import lightgbm as lgb

    others = {k: v for k, v in arguments.items()
              if k not in _wrapper_arguments(_lightgbm_wrapper())}
    if not others:
        return set()
    printed = io.StringIO()
    # LightGBM's own log goes to print(); a refused value's [Fatal] line to the process output
    with contextlib.redirect_stdout(printed), _native_output_silenced():
        try:
            lgb.LGBMRegressor(**{"min_child_samples": 1, **arguments, "n_estimators": 1,
                                 "n_jobs": 1, "verbose": 1}).fit(*_probe_data())
        except Exception:  # noqa: BLE001 - a value the library refuses: the run says so itself
            return set()
    return set(re.findall(r"Unknown parameter: (\S+)", printed.getvalue())) & set(others)


def _elastic_net_wrapper():
    from sklearn.linear_model import ElasticNet

    return ElasticNet()


def _xgboost_wrapper():
    import xgboost as xgb

    return xgb.XGBRegressor()


def _lightgbm_wrapper():
    import lightgbm as lgb

    return lgb.LGBMRegressor()


def _alpha_composite_wrapper():
    from bma_quant.core.models.learners import AlphaComposite

    return AlphaComposite()


_WRAPPERS = {"elastic_net": _elastic_net_wrapper, "xgboost": _xgboost_wrapper,
             "lightgbm": _lightgbm_wrapper, "alpha_composite": _alpha_composite_wrapper}
_CHECKS = {"elastic_net": _elastic_net, "xgboost": _xgboost, "lightgbm": _lightgbm,
           "alpha_composite": _alpha_composite}
