"""Execute a notebook's code cells, in order, in an IPython shell in a fresh interpreter.

The venv has IPython (Kedro's Jupyter extension needs it) but no Jupyter kernel, so the cells run
in `IPython.core.interactiveshell.InteractiveShell` (magics such as `%load_ext kedro.ipython`
included), as a kernel would run them, offline and without a kernel process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_RUNNER = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell

cells = [c for c in json.load(open(sys.argv[1]))["cells"] if c["cell_type"] == "code"]
shell = InteractiveShell.instance()
for number, cell in enumerate(cells, 1):
    result = shell.run_cell("".join(cell["source"]))
    if not result.success:
        print(f"NOTEBOOK CELL {number} FAILED", file=sys.stderr)
        sys.exit(1)
print(f"NOTEBOOK OK: {len(cells)} code cells")
"""


def execute_notebook(path: Path, cwd: Path, env: dict[str, str], timeout: int = 300
                     ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _RUNNER, str(path)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
