"""`python -m bma_quant.summary`: after `make run`, say what happened and where to look."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

REPORTING = Path("data") / "08_reporting"
# the training chain's layers in data-flow order (pipeline_registry.TRAINING_CHAIN, not imported:
# the summary runs without loading the project's pipelines)
TRAINING_CHAIN = ("data_processing", "feature_engineering", "base_models", "regime_models",
                  "stacking", "evaluation")


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _number(value) -> str:
    """A whole number without decimals (a count: 1399, 250), else four decimals."""
    if isinstance(value, float) and value.is_integer():
        return f"{value:.0f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_lines(root: Path) -> list[str]:
    reporting = root / REPORTING
    lines = ["", "BMA Quant run finished."]
    run = _load_json(reporting / "run_summary.json")
    if run:
        lines.append(f"  status: {run.get('status')}, {run.get('wall_seconds', 0):.0f} s wall time, "
                     f"pipelines {run.get('pipelines') or '__default__'}, "
                     f"MLflow run {run.get('mlflow_run_id')}")
        layers = run.get("layers") or {}
        # data-flow order (a sequential run interleaves layers' nodes, so completion order varies)
        order = {name: i for i, name in enumerate(TRAINING_CHAIN)}
        for layer, stats in sorted(layers.items(), key=lambda kv: order.get(kv[0], len(order))):
            lines.append(f"    {layer:<20} {stats['seconds']:7.1f} s  peak RSS "
                         f"{stats['peak_rss_mb']:6.0f} MB")
        for layer, models in (run.get("models") or {}).items():
            if "failed" in models and models["failed"]:
                lines.append(f"    {layer}: failed learners {', '.join(models['failed'])}")
    pipelines = str((run or {}).get("pipelines") or "__default__").split(",")
    if run and not {"__default__", "evaluation"} & set(pipelines):
        # e.g. after `--pipelines inference`: the files below are an earlier run's
        trained = (_load_json(reporting / "model_registration.json") or {}).get("run_id")
        lines.append("  the results below are the last evaluation run's, not this run's"
                     + (f" (MLflow run {trained})" if trained else ""))
    gates = _load_json(reporting / "gate_report.json")
    if gates:
        verdict = "PASS" if gates.get("passed") else "FAIL"
        lines.append(f"  production gates on '{gates.get('model', 'final')}' (test period): "
                     f"{verdict} -> {reporting / 'gate_report.json'}")
        for check in gates.get("checks", []):
            lines.append(
                f"    {check.get('name', '?'):<16} {_number(check.get('value')):>10}  needs "
                f"{check.get('op', '')} {_number(check.get('threshold'))}  "
                f"{'ok' if check.get('passed') else 'FAIL'}"
            )
    registration = _load_json(reporting / "model_registration.json")
    if registration and registration.get("registered"):
        lines.append(f"  registered model: {registration.get('model_name')} version "
                     f"{registration.get('version')} as '{registration.get('alias')}' "
                     f"({registration.get('alias_uri')})")
        if registration.get("promotion_reason"):
            lines.append(f"    {registration['promotion_reason']}")
    elif registration:
        lines.append(f"  model not registered: {registration.get('reason', 'see model_registration.json')}")
    table = reporting / "evaluation_table.csv"
    if table.is_file():
        with table.open() as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("scope", "all") == "all"]
        lines.append(f"  test-period comparison ({len(rows)} models) -> {table}")
        for r in rows:
            lines.append(f"    {r.get('model', '?'):<18} rank_ic {float(r.get('rank_ic') or 'nan'):+.4f}"
                         f"  sharpe {float(r.get('sharpe') or 'nan'):+.2f}")
    lines += [
        "  MLflow UI:   make ui   (http://127.0.0.1:5000, experiment 'bma_quant')",
        "  Pipeline DAG: make viz (kedro-viz)",
        "",
    ]
    return lines


def main() -> int:
    print("\n".join(summary_lines(Path.cwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
