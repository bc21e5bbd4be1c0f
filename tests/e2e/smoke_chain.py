"""One trained smoke project shared by the e2e modules that only read it (training is the cost)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.project_copy import kedro_run

# console output of each project's `kedro run --env smoke` (the console test reads it)
CONSOLE: dict[Path, str] = {}


def train_smoke_chain(project: Path, env: dict | None = None) -> Path:
    """Synthetic market, then the whole `__default__` chain, in the smoke environment."""
    for args in (("--env", "smoke", "--pipelines", "synthetic_data"), ("--env", "smoke")):
        result = kedro_run(project, *args, env=env)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    CONSOLE[project] = result.stdout + result.stderr
    return project
