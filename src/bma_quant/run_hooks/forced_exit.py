"""The last resort after SIGINT / SIGTERM: a run that has not ended `run.interrupt_grace_seconds`
after the signal is ended by force, with the clean-up a killed run gets.

An exception raised from a signal handler lands at an arbitrary bytecode. In library code that holds
a lock at that moment (logging's, a `threading.Condition`'s, a connection pool's) the lock is never
released, and the clean-up after the error, or a thread it joins, can then wait on it forever: a
SIGTERM left a run hanging with its staging folder in place. The signal is raised at once only in a
node's own code (run_hooks/interrupts.py), which makes that rare, not impossible; and a scheduler
sends SIGKILL a grace period after SIGTERM anyway (Kubernetes and Slurm: 30 s by default).

So a thread started with the run watches a deadline set by the first signal (a second signal moves
it to now). Past it, the thread takes no lock of this process and:
1. prints every thread's stack to stderr (faulthandler), for a bug report;
2. gives up the run's staging folder and runs, in a fresh Python process that shares no lock with
   this one, the clean-up a next run does for a killed run (staging.remove_orphans: registrations
   taken back, MLflow run KILLED, folder deleted);
3. writes run_summary.failed.json and ends the process with exit status 128 + the signal number.
The error hooks disarm it once they have cleaned up normally.
"""

from __future__ import annotations

import faulthandler
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bma_quant.run_hooks.summary import FAILED_SUMMARY_PATH

POLL_SECONDS = 0.2  # how often the thread looks at the deadline (no lock is shared with the run)
# the clean-up process's limit: importing MLflow and one short try per request (a tracking server
# that is down is not waited for: staging._impatient_mlflow); past it the next run cleans up
CLEANUP_TIMEOUT_SECONDS = 60
_STDERR = 2


def _say(text: str) -> None:
    """Write to stderr's file descriptor: sys.stderr and logging have locks the run may hold."""
    try:
        os.write(_STDERR, text.encode("utf-8", "replace"))
    except OSError:
        pass


def reclaim_in_fresh_process(staging_root: Path, project_path: Path, timeout: float) -> bool:
    """Run staging.remove_orphans on `staging_root` in a new interpreter (this one may hold
    orphaned locks); True when it ended in time with status 0."""
    import bma_quant

    source = str(Path(bma_quant.__file__).resolve().parents[1])  # the project's src folder
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH", "")) if p))
    try:
        done = subprocess.run([sys.executable, "-m", "bma_quant.run_hooks.staging", str(staging_root)],
                              cwd=project_path, env=env, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, start_new_session=True)  # no Ctrl-C
    except (OSError, subprocess.SubprocessError) as error:
        _say(f"the clean-up process failed: {error}\n")
        return False
    return done.returncode == 0


def write_forced_summary(project_path: Path, status: str, mlflow_run_id: str | None) -> None:
    """run_summary.failed.json for a run ended by force, unless the error hooks wrote this run's
    (with its per-node figures) already."""
    path = project_path / FAILED_SUMMARY_PATH
    try:
        earlier = json.loads(path.read_text())
        if mlflow_run_id and earlier.get("mlflow_run_id") == mlflow_run_id:
            return
    except (OSError, ValueError, AttributeError):
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": status, "mlflow_run_id": mlflow_run_id,
                                    "ended_by_force": True}, indent=2))
    except OSError as error:
        _say(f"could not write {path}: {error}\n")


class ForcedExit:
    """Ends the process once the deadline a signal set has passed.

    `hand_over` gives up the run's staging folder and returns it (None when the run has none);
    `mlflow_run_id` names the run's MLflow run for the summary."""

    def __init__(self, grace_seconds: float | None, project_path: Path,
                 hand_over: Callable[[], Path | None],
                 mlflow_run_id: Callable[[], str | None]) -> None:
        # None: one signal waits for the run however long it takes; a second still ends it
        self.grace_seconds = None if grace_seconds is None else float(grace_seconds)
        self._project_path = project_path
        self._hand_over = hand_over
        self._mlflow_run_id = mlflow_run_id
        # plain attributes, read by the thread: assigning one is atomic, and takes no lock
        self._deadline: float | None = None
        self._signum = 0
        self._stopped = False
        # held by the forced end from its start to the process's end: `disarm` waits on it, so
        # a main thread that was not stuck after all never promotes, discards or undoes beside it
        self._ending = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopped = False
        self._deadline = None
        self._thread = threading.Thread(target=self._watch, name="ForcedExit", daemon=True)
        self._thread.start()

    def arm(self, signum: int, at_once: bool = False) -> None:
        """Called from the signal handler: the first signal starts the grace period, a later
        one ends it."""
        self._signum = signum
        now = time.monotonic()
        if at_once:
            self._deadline = now
        elif self._deadline is None and self.grace_seconds is not None:
            self._deadline = now + self.grace_seconds

    def disarm(self) -> None:
        """The run ended (or cleaned up after its error) by itself: the thread stops. Once the
        forced end has started, this waits for the process to end."""
        with self._ending:
            self._deadline = None
            self._stopped = True

    def _watch(self) -> None:
        while not self._stopped:
            deadline = self._deadline
            if deadline is not None and time.monotonic() >= deadline:
                if self._ending.acquire(blocking=False):  # kept to the end of the process
                    if self._stopped:  # disarmed since the deadline was read: nothing to end
                        self._ending.release()
                        return
                    self.end_run()
                return
            time.sleep(POLL_SECONDS)

    def end_run(self) -> None:
        """Stacks, the staging folder's clean-up in a fresh process, the summary, the exit; each
        step guarded, so that no error stops the exit."""
        import signal

        name = signal.Signals(self._signum).name if self._signum else "a signal"
        grace = ("" if self.grace_seconds is None
                 else f"did not end within {self.grace_seconds:g} s (run.interrupt_grace_seconds) or ")
        try:
            _say(f"\nThe run interrupted by {name} {grace}was interrupted again: ending it by "
                 "force. Every thread's stack follows, for a bug report.\n")
            faulthandler.dump_traceback(file=_STDERR, all_threads=True)
            folder = self._hand_over()
            if folder is not None:
                _say(f"cleaning up {folder} in a new process\n")
                if not reclaim_in_fresh_process(folder.parent, self._project_path,
                                                CLEANUP_TIMEOUT_SECONDS):
                    _say("the clean-up did not finish: the next run cleans up the staging folder\n")
            write_forced_summary(
                self._project_path,
                f"failed: RunInterrupted: run interrupted by {name} (ended by force: "
                + ("interrupted again)" if self.grace_seconds is None else
                   f"it did not end within run.interrupt_grace_seconds = {self.grace_seconds:g} s "
                   "or was interrupted again)"),
                self._mlflow_run_id())
        except BaseException as error:  # noqa: BLE001 - the exit below must happen
            _say(f"the forced end failed part-way ({type(error).__name__}: {error})\n")
        finally:
            os._exit(128 + (self._signum or 1))
