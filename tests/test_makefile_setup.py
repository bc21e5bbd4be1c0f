"""`make setup` (every target's first step) with a Python that is not 3.11: one clear line, and
nothing created; a `.venv` of another Python is not reused."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# stands in for a python3.12: answers --version, fails the 3.11 check, makes a "venv" if asked
_FAKE_PYTHON = """#!/bin/sh
case "$1" in
  --version) echo "Python 3.12.0" ;;
  -c) exit 1 ;;
  -m) mkdir -p "$3/bin" && touch "$3/made-by-fake" ;;
esac
"""


@pytest.fixture
def folder(tmp_path):
    # make is what runs this suite (`make test`), and the README's only entry point
    assert shutil.which("make") is not None, "make is not installed"
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    fake = tmp_path / "python3.12"
    fake.write_text(_FAKE_PYTHON)
    fake.chmod(0o755)
    return tmp_path


def _make(folder, *args):
    return subprocess.run(["make", "setup", *args], cwd=folder, capture_output=True, text=True,
                          timeout=60)


def test_another_python_is_refused_with_one_line_and_no_venv(folder):
    done = _make(folder, f"PYTHON={folder / 'python3.12'}")
    assert done.returncode != 0
    assert "BMA Quant needs Python 3.11 and" in done.stdout
    assert "is Python 3.12.0: run 'make setup PYTHON=/path/to/python3.11'" in done.stdout
    assert not (folder / ".venv").exists()
    missing = _make(folder, "PYTHON=/no/such/python")
    assert missing.returncode != 0 and "'/no/such/python' is not found" in missing.stdout


def test_a_venv_of_another_python_is_rebuilt(folder):
    assert sys.version_info[:2] == (3, 11)  # pyproject's requires-python: the suite's own venv
    base = Path(getattr(sys, "_base_executable", sys.executable))  # a venv cannot nest in ours
    (folder / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(folder / "python3.12", folder / ".venv" / "bin" / "python")  # a 3.12 venv
    (folder / ".venv" / "old-file").touch()
    # no package index: the install after the rebuild fails fast, which this test does not judge
    done = subprocess.run(["make", "setup", f"PYTHON={base}"], cwd=folder, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PIP_NO_INDEX": "1"})
    assert not (folder / ".venv" / "old-file").exists(), done.stdout + done.stderr
    version = subprocess.run([str(folder / ".venv" / "bin" / "python"), "--version"],
                             capture_output=True, text=True)
    assert version.stdout.startswith("Python 3.11"), done.stdout + done.stderr
