"""Extra Optuna tuning workers for base_models (scale-out, issue 15 part 4).

    python -m bma_quant.tune_worker --workers 4 [--learners lightgbm,xgboost] [--env ENV]
                                    [--params "base_models.tuning.study_name=nightly,..."]

(`make tune-workers N=4`). Each worker is a process that loads the project's parameters and the
inputs of `base_models` from the catalog (model_input, sample_weights, date_split, cv_folds: run
`kedro run --pipelines data_processing,feature_engineering` first), builds the same tuning folds
as the training run (nested selection: trials score the tuning folds only) and runs trials in the
study `<base_models.tuning.study_name>-<learner>` of `base_models.tuning.storage` (PostgreSQL for
workers on several machines) until the study holds `base_models.tuning.n_trials` trials, counted
across every worker. The next `kedro run` with the same study_name and storage joins the study,
runs what is left of the budget (often nothing), and trains with the best trial; its MLflow run
is tagged `reproducible: false` (the trial order depends on timing).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger("bma_quant.tune_worker")


def parse_params(text: str | None) -> dict[str, Any]:
    """`a.b=1,c=x` (kedro run's --params syntax) -> {"a": {"b": 1}, "c": "x"}."""
    params: dict[str, Any] = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--params item {item!r} is not key=value")
        node = params
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as error:  # `op=>=`: a YAML block scalar's start
            raise ValueError(
                f"--params value {value!r} of {key.strip()} could not be read as YAML: quote a "
                f"value that starts with a YAML sign ({key.strip()}='{value}'); YAML said: "
                f"{' '.join(str(error).split())}") from error
    return params


def _session(project_path: Path, env: str | None, runtime_params: dict):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_path)
    return KedroSession.create(project_path, env=env, runtime_params=runtime_params)


def load_params(project_path: Path, env: str | None, runtime_params: dict) -> dict:
    """The base_models parameters as a `kedro run` with the same env and --params sees them."""
    with _session(project_path, env, runtime_params) as session:
        return session.load_context().params["base_models"]


# what prepare_training_inputs reads from disk: the workers tune on these
WORKER_INPUTS = ("model_input", "sample_weights", "date_split", "cv_folds")


def check_data_build(project_path: Path, env: str | None, runtime_params: dict) -> None:
    """Refuse, as `kedro run --pipelines base_models` would, stored inputs built from another
    data file or data_processing parameters than these (the workers would feed trials scored on
    other folds into the shared study)."""
    from kedro.pipeline import Node, Pipeline

    from bma_quant.run_hooks.data_builds import DataBuildHooks

    with _session(project_path, env, runtime_params) as session:
        context = session.load_context()
        reads = Pipeline([Node(lambda *inputs: None, list(WORKER_INPUTS), None,
                               name="tune_worker", namespace="base_models")])
        DataBuildHooks(params=dict(context.params), project_path=project_path).check(
            reads, context.catalog)


def load_inputs(project_path: Path, env: str | None, runtime_params: dict):
    """(training inputs, base_models parameters) from the project's catalog and config."""
    from bma_quant.pipelines.base_models import nodes

    with _session(project_path, env, runtime_params) as session:
        context = session.load_context()
        params = context.params["base_models"]
        catalog = context.catalog
        inputs = nodes.prepare_training_inputs(
            catalog.load("model_input"), catalog.load("sample_weights"),
            catalog.load("date_split"), catalog.load("cv_folds"), params)
    return inputs, params


def work(project_path: str, env: str | None, runtime_params: dict, learners: list[str],
         index: int) -> None:
    """One worker: every learner's shared study, trials up to the common budget."""
    from bma_quant.pipelines.base_models import nodes

    logging.basicConfig(level=logging.INFO, format=f"worker {index}: %(message)s")
    inputs, params = load_inputs(Path(project_path), env, runtime_params)
    tuning_cfg = params["tuning"]
    if not tuning_cfg.get("study_name") or not tuning_cfg.get("storage"):
        raise SystemExit("tune workers need base_models.tuning.study_name and "
                         "base_models.tuning.storage (e.g. postgresql://user@host/optuna)")
    for name in learners:
        defaults = dict((params.get("defaults") or {}).get(name) or {})
        space = (tuning_cfg.get("search_space") or {}).get(name) or {}
        result = nodes.tune(name, inputs, params, defaults, space, seed_offset=index + 1,
                            callbacks=[], worker=True)
        logger.info("%s: study %s holds %d trials, best %.4f", name,
                    nodes.shared_study_name(name, tuning_cfg), result.n_trials, result.best_value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes to start")
    parser.add_argument("--learners", default=None,
                        help="comma-separated; default base_models.tuning.learners")
    parser.add_argument("--env", default=None, help="Kedro configuration environment")
    parser.add_argument("--params", default=None, help="overrides, as kedro run --params")
    parser.add_argument("--project", default=".", help="project folder")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    try:
        runtime_params = parse_params(args.params)
    except ValueError as error:
        parser.error(str(error))  # one line and the usage, exit status 2
    project = str(Path(args.project).resolve())
    from bma_quant.core.models import tuning
    from bma_quant.pipelines.base_models import nodes

    params = load_params(Path(project), args.env, runtime_params)
    from bma_quant.core.data.preflight import PreflightError

    try:
        check_data_build(Path(project), args.env, runtime_params)
    except PreflightError as error:
        print(f"tune workers not started: {error}", file=sys.stderr)
        return 1
    learners = args.learners.split(",") if args.learners else nodes._tuned_learners(params)
    storage = (params.get("tuning") or {}).get("storage")
    if storage:
        # Optuna's tables are created here, once: workers starting together raced to create
        # them (PostgreSQL: duplicate key on the enum types) and one of them failed.
        tuning.prepare_storage(storage)
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no shared sessions
    processes = [context.Process(target=work, args=(project, args.env, runtime_params, learners, i))
                 for i in range(args.workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [i for i, p in enumerate(processes) if p.exitcode != 0]
    if failed:
        print(f"tune workers {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
