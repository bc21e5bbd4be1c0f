"""The smoke market and one trained smoke project, shared by the e2e modules (training is the cost)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.project_copy import kedro_run

# console output of each project's `kedro run --env smoke` (the console test reads it)
CONSOLE: dict[Path, str] = {}


def _run(project: Path, *args: str, env: dict | None = None) -> str:
    result = kedro_run(project, *args, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def make_smoke_market(project: Path) -> Path:
    """The synthetic market of the smoke environment (`--pipelines synthetic_data`)."""
    _run(project, "--env", "smoke", "--pipelines", "synthetic_data")
    return project


def train_smoke_chain(project: Path, env: dict | None = None) -> Path:
    """The whole `__default__` chain in the smoke environment, on a project holding the market."""
    CONSOLE[project] = _run(project, "--env", "smoke", env=env)
    return project
