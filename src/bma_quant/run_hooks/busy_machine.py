"""A hint at the start of a training run on a busy machine (`run.busy_machine`).

The learners' OpenMP threads (`base_models.n_jobs`, `regime_models.n_jobs`) spin while they wait
for each other: the fastest setting alone, but beside another busy process each spinning thread
loses its core at every synchronisation (README "Speed"; the shipped run spent 141 s in `kedro
run` beside another worker, 54 s there with `n_jobs` 1, with the same metrics). Nothing in the run
said so. Before the first node, the machine's CPU use is sampled for a moment; when other
processes leave fewer idle cores than the threads need (by more than `busy_cores`), the run says
so once, with the setting to change. Only a hint: thread counts change no result (the fits give identical predictions with 1
and 2 threads), so the run goes on as configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psutil
from kedro.framework.hooks import hook_impl

# the console's progress stream (conf/logging.yml shows it at INFO): a hint is not a warning (it
# changes no result), but a line in info.log alone would not be read
progress = logging.getLogger("bma_quant.progress")

# layers whose nodes fit the threaded learners, and the setting each reads its thread count from
# (evaluation's CPCV refits the base learners with theirs)
THREADED_LAYERS = {"base_models": "base_models.n_jobs", "regime_models": "regime_models.n_jobs",
                   "evaluation": "base_models.n_jobs"}


def _threads(value, n_cpus: int) -> int:
    """A learner's thread count as training reads it (int(); -1 or 0: every core)."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        return 1
    return n_cpus if n <= 0 else n


def threaded_settings(params: Mapping[str, Any], node_names: Iterable[str],
                      n_cpus: int = 1) -> dict[str, int]:
    """The thread settings above 1 of the layers the run's nodes belong to."""
    layers = {name.split(".", 1)[0] for name in node_names}
    out = {}
    for layer, setting in THREADED_LAYERS.items():
        section, key = setting.split(".")
        section_params = params.get(section)
        value = section_params.get(key) if isinstance(section_params, Mapping) else None
        n_jobs = _threads(value, n_cpus) if value is not None else 1
        if layer in layers and n_jobs > 1:
            out[setting] = n_jobs
    return out


def busy_machine_hint(busy_share: float, n_cpus: int, busy_cores: float,
                      threads: Mapping[str, int]) -> str | None:
    """The hint when other processes leave fewer idle cores than the learners' threads need,
    by more than `busy_cores` (`busy_share`: the machine's CPU use, 0..1, while this run
    waited; on 2 cores with 2 threads, more than half a core busy); None otherwise, or when no
    layer runs learners on more than one thread."""
    if not threads:
        return None
    used = busy_share * n_cpus
    # more threads than cores (n_jobs 2 on one core) is no sign of a busy machine
    need = min(max(threads.values()), n_cpus)
    if used <= busy_cores or n_cpus - used >= need - busy_cores:
        return None
    settings = ", ".join(f"{k} {v}" for k, v in threads.items())
    overrides = ",".join(f"{k}=1" for k in threads)
    return (f"the machine is busy before this run starts: other processes keep {used:.1f} of "
            f"its {n_cpus} cores busy. The learners' threads ({settings}) spin-wait and lose "
            "their core to them at every step, which can make training several times slower; "
            f"beside another job, `--params \"{overrides}\"` (or OMP_WAIT_POLICY=PASSIVE) is "
            "faster and gives the same results (README, \"Speed\")")


class BusyMachineHooks:
    def __init__(self, cpu_share: Callable[[float], float] | None = None,
                 cpu_count: Callable[[], int | None] | None = None) -> None:
        # psutil's system-wide CPU use over a blocking sample, as a share of all cores
        self._cpu_share = cpu_share or (lambda seconds: psutil.cpu_percent(seconds) / 100.0)
        self._cpu_count = cpu_count or psutil.cpu_count
        self._settings: dict = {}
        self._params: dict = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = dict(context.params)
        run = self._params.get("run")
        # a value of the wrong kind (run.busy_machine=true) is the pre-flight's to refuse
        setting = run.get("busy_machine") if isinstance(run, Mapping) else None
        self._settings = dict(setting) if isinstance(setting, Mapping) else {}

    @hook_impl
    def before_pipeline_run(self, pipeline) -> None:
        seconds, busy_cores = self._settings.get("sample_seconds"), self._settings.get(
            "busy_cores")
        if seconds is None or busy_cores is None:  # off
            return
        n_cpus = int(self._cpu_count() or 1)
        threads = threaded_settings(self._params, (node.name for node in pipeline.nodes), n_cpus)
        if not threads:  # no learner runs threads here: nothing to sample for
            return
        try:
            seconds, busy_cores = float(seconds), float(busy_cores)
        except (TypeError, ValueError):  # the pre-flight names it
            return
        hint = busy_machine_hint(self._cpu_share(seconds), n_cpus, busy_cores, threads)
        if hint:
            progress.info(hint)
