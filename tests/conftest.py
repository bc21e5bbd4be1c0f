import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# No test may write into the project's own mlflow.db: default every MLflow call to a scratch store.
_SCRATCH = tempfile.mkdtemp(prefix="bma_quant_mlflow_")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)  # one per pytest process, not left in /tmp
SCRATCH_TRACKING_URI = os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{_SCRATCH}/mlflow.db")


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
