import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# Test workers share the cores: OpenMP threads of a fit that wait for work sleep instead of
# spinning on a core another worker needs (benchmarks/results.md "thread contention": x4 for a
# LightGBM fit beside a busy neighbour; alone, spinning is faster). Results do not depend on it.
# Set in each worker before it, or a `kedro run` it starts, loads LightGBM or XGBoost.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No test may write into the project's own mlflow.db: default every MLflow call to a scratch store,
# one per pytest process. xdist workers inherit the controller's environment, so a store the
# controller made is replaced, not shared: two workers creating one SQLite store's tables at once
# fail ("table already exists"); a tracking URI the user set is kept.
_SCRATCH = tempfile.mkdtemp(prefix="bma_quant_mlflow_")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)  # not left in /tmp
_INHERITED_SCRATCH = os.environ.get("BMA_QUANT_TEST_SCRATCH_URI")
if os.environ.get("MLFLOW_TRACKING_URI") in (None, _INHERITED_SCRATCH):
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["BMA_QUANT_TEST_SCRATCH_URI"] = (
        f"sqlite:///{_SCRATCH}/mlflow.db")
SCRATCH_TRACKING_URI = os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture(autouse=True)
def _isolate_mlflow_state():
    """Each test starts and ends with no active MLflow run or experiment carried over."""
    yield
    import mlflow
    from mlflow.tracking import fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(SCRATCH_TRACKING_URI)
    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


# The smoke market is built once per session and copied into every e2e project that starts from
# it (a `kedro run` costs several seconds of start-up alone); the trained smoke project likewise
# serves every module that only reads it or reruns a layer in a copy of it.
@pytest.fixture(scope="session")
def smoke_market(tmp_path_factory):
    from tests.e2e.project_copy import copy_project
    from tests.e2e.smoke_chain import make_smoke_market

    return make_smoke_market(copy_project(tmp_path_factory.mktemp("smoke_market")))


@pytest.fixture(scope="session")
def smoke_project(smoke_market, tmp_path_factory):
    from tests.e2e.project_copy import copy_trained_project
    from tests.e2e.smoke_chain import train_smoke_chain

    return train_smoke_chain(copy_trained_project(smoke_market,
                                                  tmp_path_factory.mktemp("smoke_chain")))



# `make test` runs on two workers (pytest-xdist, `-n 2 --dist loadfile`). A module's tests stay on
# one worker, so its module-scoped fixtures (a project copy, a `kedro run`) are built once, and the
# modules that read the trained smoke project share one worker, which trains it once. The
# end-to-end and scale-out modules (a minute or more each) are handed out first so that no long
# one is left for the end. (xdist's own `xdist_group` marks are not read under pytest 9.2.)
SHARES_SMOKE_PROJECT = ("tests/e2e/test_full_chain_run.py", "tests/e2e/test_serving.py")
_LONG_FIRST = ("tests/scale_out/", "tests/e2e/")


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModuleScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return "smoke_project" if module in SHARES_SMOKE_PROJECT else module

    config.option.loadscopereorder = False  # keep the long-first order below
    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(items):
    strays = sorted({_module(item.nodeid) for item in items
                     if "smoke_project" in item.fixturenames
                     and _module(item.nodeid) not in SHARES_SMOKE_PROJECT})
    if strays:
        raise pytest.UsageError(f"{', '.join(strays)} read(s) smoke_project: add to "
                                "SHARES_SMOKE_PROJECT in tests/conftest.py (trained once per worker)")
    items.sort(key=lambda item: not item.nodeid.startswith(_LONG_FIRST))
