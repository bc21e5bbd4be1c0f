"""Run every benchmarks/bench_*.py script in turn (each rewrites its own section of results.md).

BENCH_SIZE=small: only the scripts with a small mode (they honour `_common.SMALL`, or print
through `_common.publish`: small panels, nothing written), a quick check that they work; the multi-seed studies (regime quality, detector
evidence, ensemble selection, ...) have none and are skipped, named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    failed, small = [], os.environ.get("BENCH_SIZE", "full") == "small"
    for script in sorted(HERE.glob("bench_*.py")):
        text = script.read_text(encoding="utf-8")
        if small and "SMALL" not in text and "publish" not in text:
            print(f"== {script.name}: skipped (no BENCH_SIZE=small mode)", flush=True)
            continue
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent, env=env).returncode:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
