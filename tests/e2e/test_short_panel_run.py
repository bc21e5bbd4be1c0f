"""Issue 15 part 1: a one-year panel runs the whole chain with the CV layout scaled down.

300 synthetic dates in the smoke environment (requested layout: 4 folds, 200 training dates, one
tuning fold): 300 dates x (1 - 0.25 test) - 11 gap = 214 development dates do not hold it, so
make_cv_folds trains the first fold on (214 - 11) // 2 = 101 dates; 4 folds of
(214 - 101 - 11) // 4 = 25 test dates would leave the tuning window 25 - 11 = 14 once purged, so it
keeps 3 (1 tuning + 2 out-of-fold) of 34, the tuning one scoring 23 (floor: 21)."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.e2e.project_copy import copy_project, kedro_run, mlflow_runs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("short"))
    for args in (("--env", "smoke", "--pipelines", "synthetic_data", "--params",
                  "synthetic.n_days=300"), ("--env", "smoke")):
        result = kedro_run(project, *args)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        project.joinpath("last_run.log").write_text(result.stdout + result.stderr)
    return project


def test_short_panel_runs_the_chain_with_the_scaled_layout_logged(project):
    layout = json.loads((project / "data/08_reporting/cv_layout.json").read_text())
    assert layout == {"n_splits": 3, "min_train_days": 101, "n_tuning_folds": 1, "adapted": 1,
                      "tuning_purge_days": 11}
    assert "short panel: 214 development dates" in (project / "last_run.log").read_text()
    runs = mlflow_runs(project)
    run = runs[runs["tags.pipelines"] == "__default__"].iloc[0]  # not a nested trial run
    assert run["status"] == "FINISHED"
    assert run["metrics.data_processing.cv_layout_adapted"] == 1
    assert run["params.cv_layout.min_train_days"] == "101"
    assert run["params.cv_layout.n_splits"] == "3"
    # 38 development dates with labels cannot estimate an IC: feature selection runs in its
    # degraded mode (the fallback count of per-name factors, then the market context), and
    # evaluation still scores the held-out dates. (Which factors the fallback keeps is no test
    # of skill: the planted signal need not be among them, so no RankIC bound is claimed here;
    # the full smoke chain's test checks that.)
    selection = json.loads(
        (project / "data/08_reporting/feature_selection_report.json").read_text())
    assert selection["degraded_reason"].startswith("IC cannot be estimated: 38 development")
    per_name = [n for n in selection["selected"] if selection["families"][n] != "market"]
    assert len(per_name) == 12  # feature_engineering.selection.fallback_features
    table = pd.read_csv(project / "data/08_reporting/evaluation_table.csv")
    final = table[(table["model"] == "final") & (table["scope"] == "all")].iloc[0]
    assert final["n_dates"] > 50 and np.isfinite(final["rank_ic"])
    assert run["metrics.evaluation.final.test_rank_ic"] == pytest.approx(final["rank_ic"])


def test_a_panel_shorter_than_the_serving_warmup_is_reproduced_and_registered(project):
    """300 dates are fewer than the chain's warm-up, but the registry's slice starts where the
    training panel started: the chain has every date of history the pipeline had and must
    reproduce the test predictions exactly, so the model is registered."""
    registration = json.loads((project / "data/08_reporting/model_registration.json").read_text())
    reproduction = registration["reproduction"]
    assert reproduction["rows_matched"] == reproduction["rows_pipeline"] > 0
    assert reproduction["max_abs_diff"] <= 1e-6
    assert registration["registered"] is True
    assert "the prediction chain failed" not in (project / "last_run.log").read_text()


def test_a_layout_that_can_never_give_a_champion_is_said_before_training(project):
    """Two out-of-fold folds: the walk-forward ensemble choice is never scored, so the version
    has no development score and can never be champion; the pre-flight said so up front."""
    log = (project / "last_run.log").read_text()
    warning = log.index("the CV layout on these dates has 2 out-of-fold fold(s)")
    assert warning < log.index("feature_engineering.build_features")
    assert "give a longer panel" in log
    registration = json.loads((project / "data/08_reporting/model_registration.json").read_text())
    assert registration["compare_value"] is None and registration["promoted"] is False
