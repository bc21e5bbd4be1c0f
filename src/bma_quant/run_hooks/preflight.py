"""Pre-flight checks (core.data.preflight) wired into a run: refuse a bad run before it writes anything.

Parameters and learner names are checked before the first node, ahead of every other
before_pipeline_run hook (so no MLflow run is started either); the universe size and the dates for
the CV layout as soon as the raw panel is in memory (`load_raw_data` writes nothing to disk) and
again after the coverage filter. A refused run writes only `run_summary.failed.json`.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from kedro.framework.hooks import hook_impl

from bma_quant.core.data import preflight
from bma_quant.core.models.learners import LEARNERS
from bma_quant.pipeline_registry import TRAINING_CHAIN
from bma_quant.run_hooks.summary import FAILED_SUMMARY_PATH, write_summary

# learner names in parameters, by dotted path
LEARNER_PARAMS = ("base_models.learners", "base_models.tuning.learners", "regime_models.learner")
# in-memory outputs of data_processing whose tickers and dates are checked
RAW_PANEL, CLEAN_PANEL = "raw_panel", "clean_panel"
# the cleaned panel later layers read from disk: its names are checked once per run, so a layer
# run alone (`--pipelines evaluation` with a larger n_quantiles) is held to the same rule
PRIMARY_PANEL = "primary_panel"
QUALITY_REPORT = "data_quality_report"  # records the files and parameters of the stored panel

logger = logging.getLogger(__name__)

BASE_CONF = "conf/base"
SYNTHETIC_NODES = "synthetic_data."  # the generator's node names  # the parameter files that define every key a layer reads


def panel_shape(name: str, data) -> tuple[int, Any]:
    """(number of tickers, dates) of the long raw panel or of the cleaned PanelMatrices."""
    if name == RAW_PANEL:
        return int(data["ticker"].nunique()), data["date"]
    return int(data.close.shape[1]), data.close.index


def catalog_owners(project_path: Path) -> dict[str, str]:
    """Dataset name -> the pipeline whose catalog file declares it (catalog_<pipeline>.yml: each
    layer declares what it writes)."""
    owners: dict[str, str] = {}
    for path in sorted((project_path / BASE_CONF).glob("catalog_*.yml")):
        for name in yaml.safe_load(path.read_text()) or {}:
            owners.setdefault(str(name), path.stem[len("catalog_"):])
    return owners


def write_refusal(project_path: Path, error: Exception, pipelines: str | None) -> None:
    """A run refused before its first node leaves only run_summary.failed.json saying why."""
    write_summary(project_path / FAILED_SUMMARY_PATH, {
        "status": f"refused before running: {error}",
        "pipelines": pipelines,
        "refused_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }, None)


def base_parameters(project_path: Path) -> dict[str, Any]:
    """The parameters conf/base defines (every key a layer reads; {} without the folder)."""
    known: dict[str, Any] = {}
    for path in sorted((Path(project_path) / BASE_CONF).glob("parameters*.yml")):
        known.update(yaml.safe_load(path.read_text()) or {})
    return known


_RUNTIME_PARAM = re.compile(r"\$\{\s*runtime_params\s*:\s*([^,}\s]+)")


def runtime_params_in_conf(project_path: Path) -> set[str]:
    """Keys the project's conf files read with Kedro's ``${runtime_params:key}`` resolver: typed
    with ``--params`` for them, not for a layer (so not refused as unknown)."""
    found: set[str] = set()
    conf = Path(project_path) / "conf"
    for path in (f for pattern in ("*.yml", "*.yaml", "*.json") for f in conf.rglob(pattern)):
        try:
            found.update(_RUNTIME_PARAM.findall(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return found


def check_runner(runner: str, catalog) -> None:
    """Refuse ParallelRunner in one sentence (Kedro's own refusal is a traceback listing every
    dataset): kedro-mlflow's datasets cannot be pickled into its worker processes, and it runs
    no node hooks there (MLflow parameters, health, data builds)."""
    if "ParallelRunner" not in runner:
        return
    unpicklable = ""
    try:
        catalog.validate_catalog()
    except AttributeError as error:
        listed = str(error).partition("cannot be used with multiprocessing:")[2]
        names = re.findall(r"'([^']+)'", listed)
        unpicklable = (f" its MLflow artifact and metric datasets ({', '.join(names[:3])}, "
                       f"...) cannot be pickled into its worker processes, and") if names else ""
    except Exception:  # a catalog without the check: the reason below stands
        pass
    raise preflight.PreflightError(
        f"--runner ParallelRunner cannot run this project:{unpicklable} Kedro runs no node "
        f"hooks in its workers (MLflow parameters, run health, data builds). Use the default "
        f"runner, or --runner ThreadRunner; tuning scales out across processes through tuning "
        f"workers (README, Scale-out)")


def unused_catalog_entries(conf_catalog: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Catalog entries (not dataset factories, not `_` anchors) that no pipeline of the project
    reads or writes, each with the closest dataset name or None: a misspelt entry in
    conf/local/catalog.yml (`primary_panl`) was ignored without a word, and the dataset it
    meant kept its base settings."""
    import difflib
    import importlib

    from bma_quant.pipeline_registry import known_pipelines

    used: set[str] = set()
    for name in known_pipelines():
        module = importlib.import_module(f"bma_quant.pipelines.{name}.pipeline")
        used |= set(module.create_pipeline().datasets())
    out = []
    for entry in conf_catalog or {}:
        if "{" in entry or entry.startswith("_") or entry in used:
            continue
        close = difflib.get_close_matches(entry, sorted(used), 1)
        out.append((entry, close[0] if close else None))
    return out


class PreflightHooks:
    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._project_path = Path.cwd()
        self._warned: set[str] = set()  # each warning once per run (raw, then cleaned panel)
        self._typed: dict[str, Any] = {}
        self._primary_checked = False
        self._raw_dates: int | None = None  # the file's dates, before cleaning drops any

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = dict(context.params)
        self._project_path = Path(context.project_path)
        self._typed = dict(getattr(context, "_runtime_params", None) or {})  # --params

    @hook_impl
    def after_catalog_created(self, conf_catalog: dict[str, Any]) -> None:
        for name, close in unused_catalog_entries(conf_catalog):
            logger.warning(
                "the catalog defines %r, which no pipeline reads or writes: its settings are "
                "ignored%s", name, f" (did you mean {close!r}?)" if close else
                " (a misspelt dataset name? docs/architecture.md lists them)")

    def _refuse(self, error: preflight.PreflightError, pipelines: str | None) -> None:
        write_refusal(self._project_path, error, pipelines)

    def _check_against_base_conf(self) -> None:
        """Refuse a section set to a single value where conf/base has a mapping; name
        parameters conf/base does not define (a misspelt key is otherwise ignored without a
        word: the layers read the default instead)."""
        known = base_parameters(self._project_path)
        if not known:
            return
        kinds = preflight.value_kind_problems(self._params, known)
        self._wrong_kind = {problem.split(" ", 1)[0] for problem in kinds}
        problems = preflight.mapping_problems(self._params, known) + kinds
        refused = self._unknown_refused(known)
        if problems or refused:  # every problem of the settings in one message, not in turns
            raise preflight.PreflightError("\n".join(
                (["Invalid parameter(s): " + "; ".join(problems)] if problems else [])
                + ([refused] if refused else [])))

    def _unknown_refused(self, known: dict) -> str | None:
        """Parameters conf/base does not define, wherever they are set (--params or a conf
        file such as conf/local: a misspelt key is read by no layer, which would go on with
        the default and overwrite the outputs); the message refusing them, or None."""
        from bma_quant.core.data.panel import READ_KEYS  # pandera: loaded when a run starts

        unknown = {**preflight.unknown_parameters(self._params, known),
                   **preflight.unknown_read_keys(self._params, READ_KEYS)}
        typed = (set(preflight.unknown_parameters(self._typed, known))
                 | set(preflight.unknown_read_keys(self._typed, READ_KEYS)))
        read_by_conf = runtime_params_in_conf(self._project_path)  # not for a layer

        def read(leaf: str) -> bool:  # the key itself, or a mapping above it, is read
            return any(leaf == key or leaf.startswith(f"{key}.") for key in read_by_conf)

        leaves = list(preflight.find_leaves(self._typed))
        for_conf = {path for path in typed if all(
            read(leaf) for leaf in leaves if leaf == path or leaf.startswith(f"{path}."))}
        refused = preflight.refused_unknown(unknown, for_conf)
        if not refused:
            return None
        return ("Unknown parameter(s), not defined in "
                f"{BASE_CONF}/parameters_*.yml: "
                + "; ".join(preflight.describe_unknown(p, c) for p, c in refused.items())
                + ". No layer reads a misspelt key: the run would go on with the default (for a "
                "data.* or inference.data.* key, on another file). Correct the name (a helper "
                "key for interpolation in a conf file goes under a name starting with `_`).")

    def _check_settings(self) -> None:
        """Names, kinds, ranges and choices of the parameters, every problem in one error: a
        range check after a kind error may not apply (a word where a number goes), so it is
        reported only when it can run."""
        messages: list[str] = []
        self._wrong_kind: set[str] = set()  # paths of the wrong kind: their range is not checked
        for check in (self._check_against_base_conf,
                      lambda: preflight.check_parameters(self._params, self._wrong_kind),
                      lambda: preflight.check_learners(
                          {path: preflight.lookup(self._params, path) for path in LEARNER_PARAMS},
                          LEARNERS)):
            try:
                check()
            except preflight.PreflightError as error:
                messages.append(str(error))
            except (TypeError, ValueError):
                if not messages:
                    raise
        if messages:
            raise preflight.PreflightError("\n".join(messages))

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline=None,
                            catalog=None) -> None:
        names = run_params.get("pipeline_names") or ["__default__"]
        self._warned.clear()
        self._primary_checked = False
        self._raw_dates = None
        try:
            self._check_settings()
            check_runner(str(run_params.get("runner") or ""), catalog)
            for message in preflight.contradictory_settings(self._params):
                logger.warning("pre-flight: %s", message)
            if pipeline is not None:
                check_data_files(pipeline, self._params)
                for message in synthetic_timing_messages(pipeline, self._params):
                    logger.warning("pre-flight: %s", message)
                for message in companion_file_messages(pipeline, self._params):
                    logger.warning("pre-flight: %s", message)
            if pipeline is not None and catalog is not None:
                check_inputs_exist(pipeline, catalog, catalog_owners(self._project_path))
        except preflight.PreflightError as error:
            self._refuse(error, ",".join(names))
            raise

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        if dataset_name != PRIMARY_PANEL or self._primary_checked or "ticker" not in data:
            return
        self._primary_checked = True
        preflight.check_universe(int(data["ticker"].nunique()), self._params)
        preflight.check_spread_cost_columns(data.columns, self._params)

    @hook_impl
    def before_node_run(self, node, inputs: dict[str, Any]) -> None:
        """Before inference reads its panel: a file named in `--params data.*` that is not the
        one it would score is refused (check_inference_data_params)."""
        if node.name.rsplit(".", 1)[-1] != "load_latest_panel" or not self._typed.get("data"):
            return
        model, inference = inputs.get("inference_model"), inputs.get("params:inference") or {}
        trained = getattr(getattr(model, "chain", None), "training_data", None) or {}
        check_inference_data_params(self._typed, trained, inference.get("data") or {})

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        if not all(key in self._params for key in ("temporal", "periods", "cv")):
            return
        if RAW_PANEL in outputs:
            preflight.check_spread_cost_columns(outputs[RAW_PANEL].columns, self._params)
        for name in (RAW_PANEL, CLEAN_PANEL):
            if name in outputs:
                n_tickers, dates = panel_shape(name, outputs[name])
                preflight.check_universe(n_tickers, self._params)
                try:
                    preflight.check_cv_layout(dates, self._params)
                except preflight.PreflightError as error:
                    raise self._with_cleaning_cause(error, name, dates) from None
                if name == RAW_PANEL:
                    self._raw_dates = len(pd.unique(pd.DatetimeIndex(dates)))
                cut = preflight.cut_history_warnings(dates, self._params) \
                    if name == RAW_PANEL else []  # the cleaned panel starts at dev_start
                for message in (preflight.unreachable_test_date_gates(dates, self._params) + cut
                                + preflight.few_rebalance_warnings(dates, self._params)
                                + preflight.stale_fold_warnings(dates, self._params)
                                + preflight.few_oof_fold_warnings(dates, self._params)):
                    if message not in self._warned:
                        self._warned.add(message)
                        logger.warning("pre-flight: %s", message)


    def _with_cleaning_cause(self, error: preflight.PreflightError, name: str,
                             dates) -> preflight.PreflightError:
        """The file's dates passed; the cleaned ones do not: the strict date filter is the cause
        (a file whose names trade on disjoint dates keeps almost none), not the periods."""
        kept = len(pd.unique(pd.DatetimeIndex(dates)))
        if name != CLEAN_PANEL or self._raw_dates is None or kept >= self._raw_dates:
            return error
        return preflight.PreflightError(
            f"{error} (The file has {self._raw_dates} dates; data_processing kept {kept}: "
            "processing.strict_mode drops a date on which fewer than "
            "processing.coverage_threshold of the names trading lately have a close, so a file "
            "whose names trade on different dates loses most of them. Set "
            "processing.strict_mode: false or lower processing.coverage_threshold.)")


def _never_written(catalog, name: str) -> bool:
    """True when `name` can be told to hold no data: a dataset that cannot tell (its class does
    not implement `_exists`, e.g. a registry model) counts as present; the load will say."""
    from kedro.io.core import AbstractDataset

    try:
        dataset = catalog.get(name)
        if dataset is None:  # not in the catalog: handed between nodes in memory, never saved
            return True
        if type(dataset)._exists is AbstractDataset._exists:
            return False
        return not catalog.exists(name)
    except Exception:
        return False


# node (without namespace) -> the parameters naming the files it reads
DATA_FILE_READERS = {
    "load_raw_data": ("data.raw_path", "data.index_path"),
    "load_true_regimes": ("data.true_regimes_path",),
    "register_model": ("data.raw_path",),
    "load_latest_panel": ("inference.data.raw_path", "inference.data.index_path"),
}


def check_data_files(pipeline, params: dict[str, Any]) -> None:
    """Refuse a run whose nodes read a file a `*_path` parameter names that is not there,
    naming the parameter, before an MLflow run starts (relative paths are read from the folder
    the run starts in, the project's)."""
    if any(node.name.startswith(SYNTHETIC_NODES) for node in pipeline.nodes):
        return  # the run writes the synthetic files it may then read
    keys = list(dict.fromkeys(key for node in pipeline.nodes
                              for key in DATA_FILE_READERS.get(node.name.rsplit(".", 1)[-1], ())))
    problems = []
    for key in keys:
        value = preflight.lookup(params, key)
        if not value or Path(value).is_file():
            continue
        what = ("is a folder: give one CSV or Parquet file (combine a partitioned export into "
                "one)" if Path(value).is_dir() else f"is not there (relative paths start at "
                f"{Path.cwd()})")
        problems.append((key, f"{key} = {value} {what}"))
    if problems:
        raise preflight.PreflightError(
            "; ".join(text for _, text in problems) + " (set it in conf/local/parameters.yml or "
            f"with --params \"{problems[0][0]}=...\")")


def _same_setting(key: str, given: Any, used: Any) -> bool:
    if key in ("raw_path", "index_path") and given and used:
        return Path(str(given)).resolve() == Path(str(used)).resolve()
    return given == used


def check_inference_data_params(typed: dict[str, Any], trained: dict[str, Any],
                                overridden: dict[str, Any] | None = None) -> None:
    """Refuse `--params data.raw_path=...` (or another read key of `data`) naming another file
    or reading than the chain's own (`trained`: the `data` settings of its training run):
    inference reads those, or `inference.data.*`, never `data.*`, so the file given would be
    ignored without a word and the old panel scored. The chain's own (the same `--params` given
    to every layer of a run) passes, and so does a key `inference.data` sets (`overridden`):
    the user said what inference reads. A chain that records no data is not checked."""
    from bma_quant.core.data.panel import READ_KEYS  # pandera: loaded when a run starts

    given = typed.get("data") if isinstance(typed.get("data"), dict) else {}
    chosen = {k for k, v in (overridden or {}).items() if v not in (None, "")}
    if not trained.get("raw_path"):
        return
    ignored = [key for key in READ_KEYS if key in given and given[key] not in (None, "")
               and key not in chosen and not _same_setting(key, given[key], trained.get(key))]
    if not ignored:
        return
    settings = ",".join(f"inference.data.{key}={given[key]}" for key in ignored)
    raise preflight.PreflightError(
        f"--params {', '.join(f'data.{key}' for key in ignored)}: inference does not read "
        f"data.* (it names the training panel); it scores the file its chain was trained on "
        f"({trained.get('raw_path')}) unless inference.data.* says otherwise. To score "
        f"{given.get('raw_path') or 'that file'}: --params \"{settings}\"")


def parquet_attrs(path: str | Path) -> dict[str, Any]:
    """The DataFrame.attrs a Parquet file keeps in its metadata ({} for another file or none);
    reads the footer only."""
    import json

    try:
        import pyarrow.parquet as pq

        metadata = pq.read_schema(str(path)).metadata or {}
        return dict(json.loads(metadata.get(b"PANDAS_ATTRS", b"{}")))
    except Exception:  # not Parquet, unreadable: the loader says what is wrong
        return {}


def synthetic_timing_messages(pipeline, params: dict[str, Any]) -> list[str]:
    """A run that generates a synthetic market compares `synthetic.*` with `temporal.*`; a run
    that reads a generated file compares what the file records."""
    from bma_quant.core.data.synthetic import TIMING_ATTR

    names = {node.name.rsplit(".", 1)[-1] for node in pipeline.nodes}
    if any(node.name.startswith(SYNTHETIC_NODES) for node in pipeline.nodes):
        return preflight.synthetic_timing_warnings(params)
    raw_path = preflight.lookup(params, "data.raw_path")
    if "load_raw_data" not in names or not raw_path or not str(raw_path).endswith(".parquet") \
            or not Path(raw_path).is_file():
        return []
    timing = parquet_attrs(raw_path).get(TIMING_ATTR)
    return preflight.synthetic_timing_warnings(params, timing) if timing else []


# The files read beside data.raw_path, and what reading another market's would do
COMPANION_FILES = {
    "data.index_path": "the market-context features and the market return would follow another "
                       "market's index",
    "data.true_regimes_path": "the detector would be scored against another market's regimes",
}


def companion_file_messages(pipeline, params: dict[str, Any]) -> list[str]:
    """A generated market's index or regimes file beside a prices file of another market (a
    user's own file given with `--env smoke`, whose index and regimes are the synthetic
    market's): refused when the prices file records another generated market, warned about
    when one of the two records none (a file of your own, a generated one saved as CSV, or
    generated prices given alone, beside the default S&P 500 index)."""
    from bma_quant.core.data.synthetic import MARKET_ATTR

    names = {node.name.rsplit(".", 1)[-1] for node in pipeline.nodes}
    if any(node.name.startswith(SYNTHETIC_NODES) for node in pipeline.nodes) \
            or not names & {"load_raw_data", "load_true_regimes"}:
        return []  # the run writes the market it reads, or reads no file
    raw_path = preflight.lookup(params, "data.raw_path")
    raw_market = parquet_attrs(raw_path).get(MARKET_ATTR) if raw_path else None
    messages, refused = [], []
    for key, harm in COMPANION_FILES.items():
        path = preflight.lookup(params, key)
        market = parquet_attrs(path).get(MARKET_ATTR) if path else None
        if not path or market == raw_market:
            continue
        if market is not None and raw_market is not None:
            refused.append(f"{key} ({path}) is generated market {market}'s, but data.raw_path "
                           f"({raw_path}) is generated market {raw_market}'s: {harm}. Set {key} "
                           "to this market's file, or null")
        elif market is not None:
            messages.append(f"{key} ({path}) is generated market {market}'s, but data.raw_path "
                            f"({raw_path}) records no generated market (a file of your own, or a "
                            f"generated one reshaped or saved as CSV?): if it is another market, "
                            f"{harm.replace('would', 'will')}. Set {key} to its own file, or null")
        else:
            messages.append(f"data.raw_path ({raw_path}) is generated market {raw_market}'s, but "
                            f"{key} ({path}) records no generated market: if it is another "
                            f"market's, {harm.replace('would', 'will')}. Set {key} to the file "
                            "generated with these prices, or null")
    if refused:
        raise preflight.PreflightError("; ".join(refused))
    return messages


def check_inputs_exist(pipeline, catalog, owners: dict[str, str]) -> None:
    """Refuse a run whose pipeline reads datasets no earlier run wrote (`--pipelines stacking`
    in a fresh checkout), naming them and the layers that write them (`owners`: dataset ->
    pipeline), instead of failing at the first load with a dataset error."""
    from kedro.io import MemoryDataset

    missing = [name for name in sorted(pipeline.inputs())
               if not (name.startswith("params:") or name == "parameters")
               and _never_written(catalog, name)]
    if not missing:
        return
    in_memory = [m for m in missing if catalog.get(m) is None
                 or isinstance(catalog.get(m), MemoryDataset)]
    if in_memory:  # handed between nodes inside a run, never saved (--nodes / --from-nodes)
        makers = _producing_nodes(in_memory)
        raise preflight.PreflightError(
            f"this run starts after node(s) whose in-memory output(s) it needs: "
            f"{', '.join(in_memory[:8])}{' ...' if len(in_memory) > 8 else ''} (never saved): "
            "start the run at the node that produces them"
            + (f" (--from-nodes {','.join(makers)})" if makers else " (--from-nodes)"))
    order = [name for name in TRAINING_CHAIN if name in {owners.get(m) for m in missing}]
    # every layer between the first and the last owner too: each reads the one before it
    # (stacking in a fresh checkout needs feature_engineering, which it does not read itself)
    needed = (list(TRAINING_CHAIN[TRAINING_CHAIN.index(order[0]):TRAINING_CHAIN.index(order[-1]) + 1])
              if order else [])
    shown = ", ".join(f"{m} ({owners[m]})" if m in owners else m for m in missing[:8])
    raise preflight.PreflightError(
        f"this run reads {len(missing)} dataset(s) no earlier run wrote: {shown}"
        f"{' ...' if len(missing) > 8 else ''}"
        + (f" (written by {', '.join(order)})" if order else "")
        + (f". Run {', '.join(needed)} first (`kedro run --pipelines {','.join(needed)}`)"
           if needed else ". Run the layers that write them first")
        + " or the whole chain once (`kedro run`); after that any layer can be rerun alone")


def _producing_nodes(datasets: list[str]) -> list[str]:
    """The nodes of the registered pipelines that write `datasets` (empty when unknown)."""
    try:
        from kedro.framework.project import pipelines

        nodes = {n for p in pipelines.values() for n in p.nodes}
    except Exception:  # outside a configured project
        return []
    return sorted({n.name for n in nodes if set(n.outputs) & set(datasets)})
