"""Shared by the benchmarks/bench_*.py scripts: size, node timing, peak RSS, machine line, upstream.

Importing this module puts the project root on sys.path (so `tests.*` helpers import) and disables
Kedro telemetry, so the scripts import it before any `bma_quant` or `tests` module.

BENCH_SIZE=full (default) runs on 500 tickers x 2520 days and rewrites the script's section of
benchmarks/results.md; BENCH_SIZE=small runs on 60 x 600 days (a quick check that the script works)
and only prints the section, so results.md keeps the full-size numbers.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

from bma_quant.core.data.synthetic import generate_synthetic_market  # noqa: E402
from tests.support import run_pipeline  # noqa: E402

SIZES = {"full": (500, 2520), "small": (60, 600)}  # (tickers, days)
SIZE = os.environ.get("BENCH_SIZE", "full")
if SIZE not in SIZES:
    raise SystemExit(f"BENCH_SIZE must be one of {sorted(SIZES)}, got {SIZE!r}")
SMALL = SIZE == "small"
N_TICKERS, N_DAYS = SIZES[SIZE]
# 600 days cannot hold the default 756-day first training window: the tests' 200 days instead.
MIN_TRAIN_DAYS = 200 if SMALL else None


class PeakRss:
    """Samples this process's resident memory in a thread while a block runs."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak = interval, 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self):
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@dataclass(frozen=True)
class NodeTiming:
    name: str
    wall_seconds: float
    cpu_seconds: float  # this process's CPU time
    peak_mib: float  # whole-process peak RSS while the node ran


class NodeTimer:
    """Calls nodes in order, recording wall and CPU seconds and peak RSS of each."""

    def __init__(self, echo: bool = False):
        self.rows: list[NodeTiming] = []
        self.echo = echo

    def __call__(self, name: str, fn, *args):
        with PeakRss() as rss:
            start, cpu_start = time.perf_counter(), time.process_time()
            out = fn(*args)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        self.rows.append(NodeTiming(name, wall, cpu, rss.peak / 2**20))
        if self.echo:
            print(f"{name}: {wall:.1f}s, peak {rss.peak / 2**20:.0f} MiB", flush=True)
        return out

    def table(self, *, cpu: bool = False, total_label: str = "**total**",
              left_out_of_total: str | None = None) -> list[str]:
        """Markdown table lines, one row per node plus a total row (wall summed, peak the max).

        left_out_of_total: nodes whose name contains it are not summed into the total seconds.
        """
        counted = [r for r in self.rows
                   if left_out_of_total is None or left_out_of_total not in r.name]
        peak = max(r.peak_mib for r in self.rows)
        wall = sum(r.wall_seconds for r in counted)
        if cpu:
            cpu_total = sum(r.cpu_seconds for r in counted)
            return [
                "| node | wall s | CPU s | peak RSS MiB |",
                "|---|---:|---:|---:|",
                *(f"| {r.name} | {r.wall_seconds:.2f} | {r.cpu_seconds:.2f} | {r.peak_mib:.0f} |"
                  for r in self.rows),
                f"| {total_label} | {wall:.2f} | {cpu_total:.2f} | {peak:.0f} |",
            ]
        return [
            "| node | wall s | peak RSS MiB |",
            "|---|---:|---:|",
            *(f"| {r.name} | {r.wall_seconds:.2f} | {r.peak_mib:.0f} |" for r in self.rows),
            f"| {total_label} | {wall:.2f} | {peak:.0f} |",
        ]


def usable_cpus() -> int:
    """The cores this process may use, as `nproc` counts them: its CPU affinity (a container's
    cpuset), capped by a cgroup CPU quota (Docker's --cpus, a pod's limit); os.cpu_count() is the
    host's. macOS has neither: all cores."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                                     "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            fields = Path(quota_file).read_text().split()
            quota, period = fields[0], (fields[1] if period_file is None
                                        else Path(period_file).read_text().strip())
        except (OSError, IndexError):
            continue
        if quota not in ("max", "-1"):
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    return cpus


def machine_line(when: str) -> str:
    """'Date: ...; machine: N cores (nproc), M GiB; 1-minute load average <when> L', measured now."""
    return (f"Date: {dt.date.today().isoformat()}; machine: {usable_cpus()} cores (nproc), "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB; 1-minute load average {when} "
            f"{os.getloadavg()[0]:.1f}")


def write_section(name: str, text: str, path: Path = RESULTS) -> None:
    """Replace the `<!-- name -->...<!-- /name -->` block of `path` (append it if missing)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    current = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if start in current and end in current:
        head, rest = current.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        current = head + block + ("\n" + tail if tail else "")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    path.write_text(current)


def publish(name: str, text: str) -> None:
    """Print the section; at full size also write it into results.md."""
    if SMALL:
        print(f"(BENCH_SIZE=small: {RESULTS.name} not written)")
    else:
        write_section(name, text)
    print(text)


def synthetic_upstream(n_tickers: int, n_days: int, seed: int, **market_options):
    """(SyntheticMarket, data_processing outputs): the generator's panel run through the real
    data_processing pipeline in memory (no index file, all dates usable for development).

    market_options go to generate_synthetic_market (e.g. reversal_strength, n_noise_factors).
    """
    market = generate_synthetic_market(n_tickers=n_tickers, n_days=n_days, seed=seed,
                                       **market_options)
    overrides = {"periods": {"dev_start": None}}
    if MIN_TRAIN_DAYS is not None:
        overrides["cv"] = {"min_train_days": MIN_TRAIN_DAYS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.parquet"
        market.panel.to_parquet(path)
        upstream = run_pipeline("data_processing", {}, {
            "data": {"raw_path": str(path), "index_path": None}, **overrides})
    return market, upstream


def processed_panel(panel, folder: Path):
    """`primary_panel` of the real data_processing pipeline (in memory, default parameters, no
    index file) on a long OHLCV `panel`, written to a parquet file in `folder` first."""
    path = folder / f"prices_{len(panel)}.parquet"
    panel.to_parquet(path, index=False)
    overrides = {"data": {"raw_path": str(path), "index_path": None, "true_regimes_path": None},
                 "periods": {"dev_start": None}}
    return run_pipeline("data_processing", {}, overrides)["primary_panel"]


OHLCV_COLUMNS = ["date", "ticker", "open", "high", "low", "close", "volume", "sector"]


def ohlcv_market(n_tickers: int, n_days: int, seed: int, signal_strength: float):
    """(SyntheticMarket, its panel's OHLCV columns as a user's file has them, a fresh folder)."""
    market = generate_synthetic_market(n_tickers, n_days, seed=seed, ohlcv=True,
                                       signal_strength=signal_strength)
    return market, market.panel[OHLCV_COLUMNS], Path(tempfile.mkdtemp(prefix="bench_"))
