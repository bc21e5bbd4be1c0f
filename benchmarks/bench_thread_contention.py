"""Learner threads on a shared machine: LightGBM and XGBoost fit times alone and beside a busy
neighbour, by thread count and OpenMP wait policy.

The learners run `base_models.n_jobs` OpenMP threads. When another job keeps the cores busy (a
second `kedro run`, a test suite), threads that spin while waiting for each other can lose their
core for a whole scheduler slice at every synchronisation, and a fit slows several-fold. This
script measures it: each case runs in a fresh process (OMP_WAIT_POLICY is read when the OpenMP
runtime loads), fits each learner `--repeats` times on the same random 100,000 x 20 panel with the
project's default learner parameters, and reports the median wall seconds. The neighbour is one
busy-looping process per core, started before the case and stopped after it.

    .venv/bin/python benchmarks/bench_thread_contention.py [--rows 100000] [--repeats 3] [--write]

`--write` rewrites the `thread_contention` section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import machine_line, usable_cpus, write_section

# One case: fit each learner `repeats` times in this fresh process, print median seconds as JSON.
CASE = r"""
import json, statistics, sys, time
import numpy as np
rows, repeats, n_jobs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
from tests.support import project_params
defaults = project_params()["base_models"]["defaults"]
rng = np.random.default_rng(0)
X = rng.standard_normal((rows, 20)).astype(np.float32)
y = X[:, :3].sum(axis=1) * 0.1 + rng.standard_normal(rows)
import lightgbm, xgboost
makers = {
    "lightgbm": lambda: lightgbm.LGBMRegressor(**{**defaults["lightgbm"], "n_jobs": n_jobs,
                                                  "random_state": 0, "verbose": -1}),
    "xgboost": lambda: xgboost.XGBRegressor(**{**defaults["xgboost"], "n_jobs": n_jobs,
                                               "random_state": 0}),
}
out = {}
for name, make in makers.items():
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        make().fit(X, y)
        seconds.append(time.perf_counter() - start)
    out[name] = statistics.median(seconds)
print(json.dumps(out))
"""

SPIN = "while True: pass"


def run_case(rows: int, repeats: int, n_jobs: int, policy: str | None, busy: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.path.join(root, "src"),
                                                      env.get("PYTHONPATH")]))
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in
                range(usable_cpus())] if busy else []
    try:
        time.sleep(0.5 if busy else 0.0)
        done = subprocess.run([sys.executable, "-c", CASE, str(rows), str(repeats), str(n_jobs)],
                              env=env, cwd=root, capture_output=True, text=True, check=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="rewrite results.md's section")
    args = parser.parse_args()
    header = machine_line("at start")
    cases = [(n_jobs, policy, busy) for busy in (False, True) for n_jobs in (2, 1)
             for policy in (None, "PASSIVE")]
    rows = []
    for n_jobs, policy, busy in cases:
        seconds = run_case(args.rows, args.repeats, n_jobs, policy, busy)
        rows.append((n_jobs, policy, busy, seconds))
        print(n_jobs, policy, busy, seconds, flush=True)
    alone = {(n, p): s for n, p, b, s in rows if not b}
    lines = [
        "## thread contention: learner fits alone and beside a busy neighbour",
        "",
        f"{header}. `benchmarks/bench_thread_contention.py --rows {args.rows} --repeats "
        f"{args.repeats}`: median wall seconds of one fit (the project's default learner "
        f"parameters, {args.rows:,} x 20 random rows), each case in a fresh process; the "
        "neighbour is one busy-looping process per core.",
        "",
        "| n_jobs | OMP_WAIT_POLICY | neighbour | lightgbm s | xgboost s | lightgbm / alone | "
        "xgboost / alone |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for n_jobs, policy, busy, s in rows:
        base = alone[(n_jobs, policy)]
        lines.append(f"| {n_jobs} | {policy or 'default'} | {'busy' if busy else 'none'} | "
                     f"{s['lightgbm']:.2f} | {s['xgboost']:.2f} | "
                     f"{s['lightgbm'] / base['lightgbm']:.1f} | "
                     f"{s['xgboost'] / base['xgboost']:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("thread_contention", text)


if __name__ == "__main__":
    main()
