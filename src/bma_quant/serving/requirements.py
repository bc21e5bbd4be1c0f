"""pip requirements of the logged pyfunc chain: every distribution the pickled chain and the
shipped ``bma_quant`` code import at load and predict time, pinned to the installed versions.

MLflow's own inference of requirements misses the learners (xgboost, lightgbm) and statsmodels
(the Markov-switching regime detector) and adds the project itself (an editable install pip
cannot fetch; its code ships with the model), so the list is given whole: mlflow and cloudpickle
(the pyfunc wrapper) plus the chain's imports. The end-to-end serving test checks it against a
fresh process's imports.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

CHAIN_DISTRIBUTIONS = (
    "mlflow", "cloudpickle", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "statsmodels", "lightgbm", "xgboost",
    "pandera",
)


# What a logged base learner needs to load and predict, per MLflow flavour (the pickled
# estimators import these; alpha_composite's class also needs bma_quant's code, as the chain does).
LEARNER_DISTRIBUTIONS = {
    "mlflow.sklearn": ("mlflow", "cloudpickle", "numpy", "pandas", "scipy", "scikit-learn"),
    "mlflow.xgboost": ("mlflow", "numpy", "scipy", "scikit-learn", "xgboost"),
    "mlflow.lightgbm": ("mlflow", "cloudpickle", "numpy", "pandas", "scipy", "scikit-learn",
                        "lightgbm"),
}


def learner_pip_requirements(flavor: str) -> list[str]:
    """Pinned requirements of one logged base learner. Given explicitly because MLflow's
    inference loads the model in a subprocess per log_model call (3-4 s each, measured)."""
    return chain_pip_requirements(LEARNER_DISTRIBUTIONS.get(flavor, CHAIN_DISTRIBUTIONS))


def chain_pip_requirements(distributions=CHAIN_DISTRIBUTIONS) -> list[str]:
    """``name==installed version`` for each distribution; one clear error if one is missing."""
    pins = []
    for name in distributions:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            raise RuntimeError(f"{name} is imported by the prediction chain but not installed; "
                               "install the project (`make setup`)") from None
    return pins
