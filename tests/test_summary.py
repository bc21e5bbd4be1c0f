"""`python -m bma_quant.summary`: what the last run did, and whose results follow."""

import json

from bma_quant.summary import summary_lines


def _write(root, name, payload):
    path = root / "data/08_reporting" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_after_an_inference_run_the_training_results_are_named_as_an_earlier_runs(tmp_path):
    _write(tmp_path, "model_registration.json",
           {"registered": True, "model_name": "m", "version": "3", "alias": "champion",
            "alias_uri": "models:/m@champion", "run_id": "train123"})
    _write(tmp_path, "gate_report.json", {"passed": True, "model": "final", "checks": []})
    _write(tmp_path, "run_summary.json", {"status": "success", "wall_seconds": 2.0,
                                          "pipelines": "inference", "mlflow_run_id": "inf456"})
    text = "\n".join(summary_lines(tmp_path))
    assert "pipelines inference, MLflow run inf456" in text
    assert "the results below are the last evaluation run's, not this run's (MLflow run " \
           "train123)" in text
    _write(tmp_path, "run_summary.json", {"status": "success", "wall_seconds": 40.0,
                                          "pipelines": "__default__", "mlflow_run_id": "train123"})
    assert "not this run's" not in "\n".join(summary_lines(tmp_path))
