"""A run completes or changes nothing: every file a run writes is staged, then promoted on success.

Before the pipeline runs, every file-backed dataset the run will write is rebuilt from its catalog
config with its `filepath` moved under `data/.staging/<run id>/` (same relative path); datasets the
run only reads keep their real paths, and a later node of the same run that loads a staged dataset
reads the staged file. MLflow artifact wrappers (kedro-mlflow's `Mlflow*Dataset`) keep working:
their inner dataset is redirected and they log the staged file. On success the staged files are
moved over the real ones (one `os.replace` per file, after every node succeeded; a file whose
output folder is on another file system is copied next to its target first); on failure or
interruption the staging folder is deleted and no real output has been touched. A run killed with
SIGKILL (no hook runs) leaves its folder; the next run finds its process gone and takes back what
it registered, marks its MLflow run KILLED and deletes the folder (`remove_orphans`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset

from bma_quant.run_hooks import registrations as pending

logger = logging.getLogger(__name__)

STAGING_DIR = Path("data") / ".staging"
EXTERNAL_DIR = "_external"  # staged copies of outputs that live outside the project folder
_OWNER_FILE = ".pid"  # "<pid> <host>" of the process that owns a staging folder
_MLFLOW_RUN_FILE = ".mlflow_run.json"  # the owner's MLflow run, marked KILLED if it was killed
# written by a run that hands its folder over after a signal: its MLflow run is marked KILLED even
# if kedro-mlflow had ended it FAILED already (run_hooks/forced_exit.py)
_INTERRUPTED_FILE = ".interrupted"
# written just before a successful run moves its files into place: a run killed during the
# moves is finished by the next one (every node had succeeded), not left half promoted
_PROMOTING_FILE = ".promoting"
# under STAGING_DIR, locked by the `kedro run` in progress in the project folder
RUN_LOCK_FILE = ".run.lock"


def _is_local(filepath: str) -> bool:
    return "://" not in filepath or filepath.startswith("file://")


def staged_path(real: Path, project_path: Path, staging_dir: Path) -> Path:
    """Where the staged copy of `real` lives: the same path relative to the project folder."""
    real = real if real.is_absolute() else project_path / real
    try:
        return staging_dir / real.resolve().relative_to(project_path.resolve())
    except ValueError:  # outside the project: keep the whole path under a separate folder
        return staging_dir / EXTERNAL_DIR / real.resolve().relative_to(real.anchor)


def redirect_config(
    config: dict[str, Any], project_path: Path, staging_dir: Path
) -> tuple[dict[str, Any], list[tuple[Path, Path]]] | None:
    """A copy of a dataset config with every local `filepath` (also of a wrapped `dataset:`)
    moved under the staging folder, and the (staged, real) pairs; None when nothing is file-backed."""
    config = copy.deepcopy(config)
    moved: list[tuple[Path, Path]] = []

    def visit(node: dict[str, Any]) -> None:
        filepath = node.get("filepath")
        if isinstance(filepath, str) and _is_local(filepath):
            real_text = filepath.removeprefix("file://")
            real = Path(real_text) if Path(real_text).is_absolute() else project_path / real_text
            staged = staged_path(real, project_path, staging_dir)
            node["filepath"] = str(staged)
            moved.append((staged, real))
        inner = node.get("dataset")
        if isinstance(inner, dict):
            visit(inner)

    visit(config)
    return (config, moved) if moved else None


def promote_files(pairs: list[tuple[Path, Path]]) -> list[Path]:
    """Move every staged file that exists over its real path; a staged folder (versioned or
    partitioned data) is promoted file by file. Returns the real paths written.

    A target on another file system than the staging folder (an output folder that is a mount or
    a symlink to one) cannot take an `os.replace` (EXDEV): such files are first copied next to
    their targets, all of them before any real file is replaced, so that a copy that fails (a
    full disk) leaves every real file as it was; the replacements are then renames."""
    moves: list[tuple[Path, Path]] = []
    copies: list[Path] = []
    try:
        for source, target in _staged_files(pairs):
            target.parent.mkdir(parents=True, exist_ok=True)
            if _device(source) != _device(target.parent):
                copy = target.parent / f".{target.name}.promoting-{os.getpid()}"
                copies.append(copy)
                shutil.copy2(source, copy)
                source = copy
            moves.append((source, target))
    except BaseException:
        for copy in copies:
            copy.unlink(missing_ok=True)
        raise
    try:
        for source, target in moves:
            os.replace(source, target)
    finally:  # a replacement that failed leaves no copy behind in a real output folder
        for copy in copies:
            copy.unlink(missing_ok=True)
    return [target for _, target in moves]


def _device(path: Path) -> int:
    return os.stat(path).st_dev  # follows symlinks: a linked output folder's own file system


def _staged_files(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    files = []
    for staged, real in pairs:
        if staged.is_dir():
            files += [(f, real / f.relative_to(staged)) for f in sorted(staged.rglob("*"))
                      if f.is_file()]
        elif staged.is_file():
            files.append((staged, real))
        # else: the dataset was not written (its node did not run)
    return files


class OutputFolderNotWritable(PermissionError):
    """An output folder cannot be written: refused before the first node, not half-way through
    the promotion of a finished run."""


class AnotherRunInProgress(RuntimeError):
    """Another `kedro run` is running in the same project folder: two runs promoting their
    files one by one would leave each file to whichever moved it last."""


def hold_run_lock(staging_root: Path, text: str):
    """(open handle holding the project's run lock, None), or (None, what the holder wrote)
    when another process holds it, or (None, None) where flock is unavailable (not refused:
    nothing can tell). The kernel drops the lock when the process ends, however it ends."""
    staging_root.mkdir(parents=True, exist_ok=True)
    handle = (staging_root / RUN_LOCK_FILE).open("a+", encoding="utf-8")
    taken = _lock_nowait(handle)
    if not taken:
        holder = None
        if taken is False:
            handle.seek(0)
            holder = handle.read().strip() or "a process that wrote nothing yet"
        handle.close()
        return None, holder
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()
    return handle, None


def writable(folder: Path) -> bool:
    """Whether a file can be created in `folder` (or in its nearest existing parent, which would
    create it). Tries for real: root ignores permission bits but not a read-only file system."""
    while not folder.exists():
        folder = folder.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_check_"):
            return True
    except OSError:
        return False


def unwritable_folders(pairs: list[tuple[Path, Path]]) -> list[Path]:
    return [folder for folder in sorted({real.parent for _, real in pairs})
            if not writable(folder)]


# A folder without an owner file this old is a run that died while creating it; a younger one
# may be a run starting right now.
_UNOWNED_GRACE_SECONDS = 600
# Clean-up of a killed run whose registry does not answer: tried at this many runs' starts, each
# request once, with a short timeout.
_RECLAIM_ATTEMPTS = 3
_ATTEMPTS_FILE = ".reclaim_attempts"
_CLEANUP_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _owner(folder: Path) -> tuple[int | None, str | None]:
    """(pid, host) written by the run that owns ``folder``; host None in an older folder."""
    try:
        fields = (folder / _OWNER_FILE).read_text().split()
        return int(fields[0]), (fields[1] if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None, None


def _lock_nowait(handle) -> bool | None:
    """Take an exclusive flock on ``handle`` without waiting: True taken, False held by another
    process, None where flock is unavailable or the file system refuses it."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # a file system without flock (some network or FUSE mounts)
        return None


def hold_owner_lock(owner: Path, text: str = ""):
    """Open ``owner``, lock it and write ``text`` (pid and host) through the locked handle; the
    lock lasts as long as the handle stays open (the kernel drops it when the process dies,
    however it dies). The owning process must never open the file again: on a network file
    system closing any handle of it drops the lock. None where flock cannot be had (the pid
    check decides; the text is still written)."""
    handle = owner.open("a+", encoding="utf-8")
    if not _lock_nowait(handle):
        handle.close()
        owner.write_text(text, encoding="utf-8")
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()
    return handle


def _claim_orphan(folder: Path):
    """An open handle holding the owner lock of ``folder`` when its run is gone (nobody holds
    the lock; kept through the clean-up so that two runs never reclaim it at once), True when
    the run is gone and flock is unavailable, None while the run lives or may be starting. A
    folder written under another host name is an orphan only on a local file system where its
    lock can be taken and its owner file has missed its heartbeats for a while (a container's
    host name changes with each start, its bind-mounted project stays); on a network file
    system, where locks may not reach, it is left alone."""
    owner = folder / _OWNER_FILE
    pid, host = _owner(folder)
    if pid is None:  # no owner file yet, or not yet written: a run may be starting
        try:
            age = time.time() - folder.stat().st_mtime
        except OSError:
            return None
        if age <= _UNOWNED_GRACE_SECONDS:
            return None
    other_host = host is not None and host != socket.gethostname()
    if other_host and not (is_local_file_system(folder) and _heartbeat_stopped(owner)):
        return None
    if owner.exists():
        handle = owner.open("a+", encoding="utf-8")
        taken = _lock_nowait(handle)
        if taken:
            return handle
        handle.close()
        if taken is False:
            return None
    if other_host:  # no lock to read: its pid says nothing about this machine
        return None
    if pid is None or not psutil.pid_exists(pid):
        return True
    # handed over by the process that starts this clean-up (where flock is unavailable)
    return True if pid == os.getppid() and (folder / _INTERRUPTED_FILE).is_file() else None


# File systems whose locks may not reach every host that mounts them (or, for FUSE and a VM's
# shared folders, whose lock semantics are the bridge's): a lock taken there proves nothing.
# Docker Desktop shows a macOS host's folders as "fakeowner", WSL2 Windows drives as "drvfs".
_SHARED_FILE_SYSTEMS = ("nfs", "cifs", "smb", "afs", "ceph", "gluster", "lustre", "gpfs", "beegfs",
                        "gfs2", "ocfs2", "9p", "virtiofs", "fuse", "fakeowner", "drvfs", "davfs",
                        "vboxsf", "prl_fs", "vmhgfs")
# A live run touches its owner file this often (no open: on a network file system closing a handle
# drops the lock); another host's folder whose owner file is older than the stale age, far above
# any clock skew between hosts, belongs to a run that is gone.
HEARTBEAT_SECONDS = 60
OTHER_HOST_STALE_SECONDS = 900


class _Heartbeat:
    """Touches a live run's owner file every HEARTBEAT_SECONDS, in a thread, until stopped."""

    def __init__(self, owner: Path) -> None:
        self._owner = owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="StagingHeartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self._owner)
            except OSError:  # the folder is gone (discarded, or promoted)
                return

    def stop(self) -> None:
        self._stop.set()


def _heartbeat_stopped(owner: Path) -> bool:
    try:
        return time.time() - owner.stat().st_mtime > OTHER_HOST_STALE_SECONDS
    except OSError:
        return False


def is_local_file_system(path: Path) -> bool:
    """Whether `path` is on a file system only this machine's kernel mounts (ext4, xfs, apfs,
    overlay, tmpfs, ...); False when that cannot be told."""
    try:
        real = str(path.resolve())
        mounts = [(m.mountpoint, m.fstype.lower()) for m in psutil.disk_partitions(all=True)]
    except (OSError, RuntimeError):
        return False
    inside = [(mountpoint, fstype) for mountpoint, fstype in mounts
              if real == mountpoint or real.startswith(mountpoint.rstrip(os.sep) + os.sep)]
    if not inside:
        return False
    _, fstype = max(inside, key=lambda pair: len(pair[0]))
    return bool(fstype) and not any(name in fstype for name in _SHARED_FILE_SYSTEMS)


def _recorded_run(folder: Path) -> tuple[Any, str, str] | None:
    """(client, run id, status) of the MLflow run a staging folder names; None when unknown."""
    try:
        record = json.loads((folder / _MLFLOW_RUN_FILE).read_text(encoding="utf-8"))
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=record["tracking_uri"])
        return client, record["run_id"], client.get_run(record["run_id"]).info.status
    except Exception as error:  # no record, or the store moved or is gone
        logger.debug("no MLflow run for %s: %s", folder, error)
        return None


@contextlib.contextmanager
def _impatient_mlflow():
    """One try with a short timeout for each clean-up request: a tracking server that is down
    must not hold every later run for minutes (MLflow retries for about 4 minutes by default)."""
    saved = {k: os.environ.get(k) for k in _CLEANUP_HTTP}
    os.environ.update(_CLEANUP_HTTP)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _reclaim(folder: Path) -> bool:
    """Take back what the killed run of ``folder`` registered and mark its MLflow run KILLED;
    False when a registration could not be taken back (the folder is kept to try again, up to
    _RECLAIM_ATTEMPTS runs)."""
    with _impatient_mlflow():
        done = _reclaim_now(folder)
    if done:
        return True
    attempts_file = folder / _ATTEMPTS_FILE
    try:
        attempts = int(attempts_file.read_text()) + 1
    except (OSError, ValueError):
        attempts = 1
    if attempts >= _RECLAIM_ATTEMPTS:
        logger.error("gave up taking back the registrations of a killed run after %d runs; see "
                     "%s for the versions to delete by hand", attempts,
                     folder / pending.JOURNAL_FILE)
        return True
    attempts_file.write_text(str(attempts))
    return False


class LaterRunPromoted(RuntimeError):  # noqa: N818 - reads as what happened
    """A run killed while promoting is not finished: a later run has written its outputs."""


def finish_promotion(folder: Path) -> list[Path]:
    """Move what a run killed while promoting left in its staging folder to the real paths
    (every node of it had succeeded: its outputs are one consistent set, half of which is in
    place already) and delete the files its promotion retires. Returns the paths written."""
    project = folder.parent.parent.parent  # <project>/data/.staging/<run id>
    marked = (folder / _PROMOTING_FILE).stat().st_mtime
    pairs = []
    for staged in sorted(folder.rglob("*")):
        relative = staged.relative_to(folder)
        if not staged.is_file() or (len(relative.parts) == 1 and relative.name.startswith(".")):
            continue  # the folder's own records (owner, journal, this marker)
        # staged_path in reverse: an output outside the project sits under _external/
        real = (Path(os.sep, *relative.parts[1:]) if relative.parts[0] == EXTERNAL_DIR
                else project / relative)
        pairs.append((staged, real))
    newer = [real for _, real in pairs if real.exists() and real.stat().st_mtime > marked]
    if newer:  # a later run promoted over them: this run's outputs are not the last ones
        raise LaterRunPromoted(f"{len(newer)} of its outputs were written after it was killed "
                               f"(e.g. {newer[0]}): its other files are not moved")
    pairs.sort(key=lambda pair: pair[1].name.startswith("run_summary"))  # the summary last
    written = promote_files(pairs)
    try:
        retired = json.loads((folder / _PROMOTING_FILE).read_text(encoding="utf-8"))["retired"]
    except (OSError, ValueError, KeyError):
        retired = []
    for stale in retired:
        Path(stale).unlink(missing_ok=True)
    return written


def _reclaim_now(folder: Path) -> bool:
    if (folder / _PROMOTING_FILE).is_file():
        try:
            written = finish_promotion(folder)
        except LaterRunPromoted as error:
            logger.warning("a run killed while moving its outputs into place (%s) is not "
                           "finished: %s", folder.name, error)
            return True
        except OSError as error:  # a full disk, a target that is now a folder: try again
            logger.error("could not finish moving the outputs of a run killed while moving "
                         "them into place (%s): %s", folder.name, error)
            return False
        logger.warning("a run whose nodes had all succeeded was killed while moving its outputs "
                       "into place: moved the %d file(s) it had left (%s), so its outputs are "
                       "one run's again", len(written), folder.name)
        return True
    recorded = _recorded_run(folder)
    if recorded is not None and recorded[2] == "FINISHED":
        # every node had run and kedro-mlflow had ended the run: killed while promoting its files
        logger.warning("a run that finished its nodes was killed while promoting its outputs "
                       "(MLflow run %s): its registration stays; rerun to rewrite its files",
                       recorded[1])
        return True
    undone, failed = pending.undo_journal(folder / pending.JOURNAL_FILE)
    if undone:
        logger.warning("a run that was killed registered %s: taken back", "; ".join(undone))
    if recorded is not None and (recorded[2] == "RUNNING" or (
            recorded[2] == "FAILED" and (folder / _INTERRUPTED_FILE).is_file())):
        try:
            recorded[0].set_terminated(recorded[1], "KILLED")
            logger.warning("MLflow run %s of a run that was killed (its process is gone) "
                           "marked KILLED", recorded[1])
        except Exception as error:
            logger.warning("could not mark the MLflow run of a killed run KILLED: %s", error)
    if failed:
        logger.error("%d registration(s) of a killed run could not be taken back; its staging "
                     "folder %s is kept so that the next run tries again", failed, folder)
    return not failed


def remove_orphans(staging_root: Path) -> None:
    """Clean up after runs whose process is gone (killed with SIGKILL, power loss): take back the
    model versions they registered, mark their MLflow run KILLED, delete their staging folder."""
    if not staging_root.is_dir():
        return
    for folder in staging_root.iterdir():
        if not folder.is_dir():
            continue
        claim = _claim_orphan(folder)
        if claim is None:
            continue
        try:
            if _reclaim(folder):
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            if claim is not True:
                claim.close()


@contextlib.contextmanager
def _signals_blocked():
    """Hold SIGINT / SIGTERM until the block ends; the first one is delivered afterwards.
    Done by swapping the handlers, not by pthread_sigmask: the mask covers this thread only,
    and the kernel may deliver the signal to another one (numpy's OpenBLAS threads), whose
    Python handler then runs here anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be swapped from the main thread
        return
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda received, frame: caught.append(received))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def _quiet_catalog_replacements():
    """DataCatalog warns 'Replacing dataset' on every redirect; that is the point here."""
    catalog_logger = logging.getLogger("kedro.io.data_catalog")
    level = catalog_logger.level
    catalog_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        catalog_logger.setLevel(level)


def outputs_written_by(pipeline) -> set[str]:
    """Datasets a pipeline writes (final and intermediate outputs)."""
    return {name for node in pipeline.nodes for name in node.outputs}


@dataclass
class RunStaging:
    """The staged datasets of one run and where they go."""

    project_path: Path
    run_id: str
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    # files the promoted outputs make stale (an earlier failed run's summary): removed after them
    retired: list[Path] = field(default_factory=list)
    _lock: Any = field(default=None, repr=False)  # the owner file's handle, locked for the run
    _heartbeat: Any = field(default=None, repr=False)  # keeps the owner file's time fresh
    handed_over: bool = False  # to a forced end's clean-up process (run_hooks/forced_exit.py)

    @property
    def folder(self) -> Path:
        return self.project_path / STAGING_DIR / self.run_id

    def stage(self, catalog, names: set[str]) -> None:
        """Rebuild each named file-backed dataset from its config with a staged filepath."""
        remove_orphans(self.project_path / STAGING_DIR)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = hold_owner_lock(self.folder / _OWNER_FILE,
                                     f"{os.getpid()} {socket.gethostname()}")
        self._heartbeat = _Heartbeat(self.folder / _OWNER_FILE)
        with _quiet_catalog_replacements():
            for name in sorted(names):
                if name not in catalog:
                    continue  # a MemoryDataset made at run time
                redirected = redirect_config(
                    catalog.config_resolver.resolve_pattern(name), self.project_path, self.folder
                )
                if redirected is None:
                    continue
                config, pairs = redirected
                for staged, _ in pairs:
                    staged.parent.mkdir(parents=True, exist_ok=True)
                catalog[name] = AbstractDataset.from_config(name, config)
                self.pairs.extend(pairs)
                self.datasets.append(name)
        logger.info("staging %d output dataset(s) under %s", len(self.datasets), self.folder)

    def check_writable(self) -> None:
        """Every real output folder can take the promoted files."""
        blocked = unwritable_folders(self.pairs)
        if blocked:
            raise OutputFolderNotWritable(
                f"Output folder(s) not writable: {', '.join(map(str, blocked[:5]))}; the run "
                "would fail when promoting its outputs. Make them writable or point the catalog "
                "elsewhere (conf/local/catalog.yml).")

    def record_mlflow_run(self, run_id: str, tracking_uri: str) -> None:
        """Name the run's MLflow run, for the clean-up should this process be killed."""
        (self.folder / _MLFLOW_RUN_FILE).write_text(
            json.dumps({"run_id": run_id, "tracking_uri": tracking_uri}), encoding="utf-8")

    def path_for(self, real: Path) -> Path:
        """Where to write a file that must be promoted with the outputs (e.g. run_summary.json)."""
        staged = staged_path(real, self.project_path, self.folder)
        self.pairs.append((staged, real if real.is_absolute() else self.project_path / real))
        return staged

    def retire_after_promotion(self, *real: Path) -> None:
        """Delete these real files once the outputs are promoted (not if the run fails later)."""
        self.retired.extend(p if p.is_absolute() else self.project_path / p for p in real)

    def promote(self) -> list[Path]:
        """Move the staged files over the real ones; the run summary (if staged) goes last."""
        if self.handed_over:
            return []
        summary_last = sorted(self.pairs, key=lambda pair: pair[1].name.startswith("run_summary"))
        with _signals_blocked():  # an interrupt now would leave a half-promoted run
            # every node succeeded: its registrations stay even if promoting is cut short
            (self.folder / pending.JOURNAL_FILE).unlink(missing_ok=True)
            pending.forget()
            pending.journal_to(None)
            # a SIGKILL from here on: the next run finishes the moves (finish_promotion)
            marker = self.folder / _PROMOTING_FILE
            marker.write_text(json.dumps({"retired": [str(p) for p in self.retired]}),
                              encoding="utf-8")
            with open(marker, encoding="utf-8") as written_marker:
                os.fsync(written_marker.fileno())
            written = promote_files(summary_last)
            for stale in self.retired:
                stale.unlink(missing_ok=True)
        self.discard()
        return written

    def hand_over(self, signal_name: str) -> Path:
        """Give up this run's claim on its folder (the owner lock) so that another process cleans
        it up as a killed run's; for a run ended by force after ``signal_name``. The folder is
        then neither promoted nor discarded by this process."""
        self.handed_over = True  # the heartbeat goes on: it takes no lock, and stops with the folder
        with contextlib.suppress(OSError):  # a folder discarded a moment ago
            (self.folder / _INTERRUPTED_FILE).write_text(signal_name, encoding="utf-8")
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()
        return self.folder

    def _stop_heartbeat(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()

    def discard(self) -> None:
        if self.handed_over:
            return
        self._stop_heartbeat()
        with _signals_blocked():  # a second Ctrl-C must not leave a half-deleted folder
            shutil.rmtree(self.folder, ignore_errors=True)
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.close()


class StagingHooks:
    """Stages the outputs of every run; promotes them only when the whole run succeeded."""

    def __init__(self) -> None:
        self.current: RunStaging | None = None
        self._project_path = Path.cwd()
        self._checked = False
        self._run_lock: Any = None  # the project's run lock, held for the run
        # runs refused because another is running, by their run id: they stop at their first
        # node (in whichever thread the runner starts it) and touch nothing of the running one
        self._refused: dict[str, AnotherRunInProgress] = {}
        self._owner_thread: threading.Thread | None = None  # the thread that started the run
        self._claimed: str | None = None  # the session claim_project let in, until it stages

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project_path = Path(context.project_path)

    def claim_project(self, run_params: dict[str, Any]) -> None:
        """Take the project's run lock, then finish or take back what runs killed before left
        (`remove_orphans`: a killed promotion is completed here). Called before any hook reads
        the stored outputs (ProjectClaimHooks), so their checks see the state this run will
        build on; and before kedro-mlflow starts a run, so a refused run leaves none. Raises
        AnotherRunInProgress (nothing of the running run is touched)."""
        session = str(run_params.get("run_id"))
        run_id = str(run_params.get("run_id") or os.getpid()).replace(":", "-")
        pending.forget()  # a previous run's in this process
        here = threading.current_thread()
        self._refused.pop(session, None)
        if self.current is not None:  # a run of this process that no end hook has reached
            if self._owner_thread is not here and self._owner_thread.is_alive():
                self._refused[session] = AnotherRunInProgress(
                    f"Another kedro run ({self.current.run_id}) is running in this process: "
                    "two runs in one project folder would leave a mix of both outputs. Wait for "
                    "it to end, or run in a copy of the project.")
                raise self._refused[session]
            self.discard_current("an earlier run of this process ended without its hooks")
        self._release_run_lock()  # one this process took for a run that never started
        self._owner_thread = here
        self._run_lock, holder = hold_run_lock(
            self._project_path / STAGING_DIR,
            f"pid {os.getpid()} on {socket.gethostname()}, kedro session {run_id}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        if holder is not None:
            self._refused[session] = AnotherRunInProgress(
                f"Another kedro run is running in this project folder ({holder}): two runs "
                "promoting their outputs at once would leave a mix of both. Wait for it to end, "
                "or run in a copy of the project.")
            raise self._refused[session]
        self._claimed = session
        remove_orphans(self._project_path / STAGING_DIR)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        run_id = str(run_params.get("run_id") or os.getpid()).replace(":", "-")
        if self._claimed != str(run_params.get("run_id")):  # without ProjectClaimHooks
            self.claim_project(run_params)
        self._claimed = None
        self.current = RunStaging(self._project_path, run_id)
        self.current.stage(catalog, outputs_written_by(pipeline))
        pending.journal_to(self.current.folder)
        import mlflow  # loaded by kedro-mlflow already

        run = mlflow.active_run()  # kedro-mlflow's before_pipeline_run is called first
        if run is not None:
            self.current.record_mlflow_run(run.info.run_id, mlflow.get_tracking_uri())
        self._checked = False

    # Checked at the first node, not in before_pipeline_run: an error there reaches the
    # on_pipeline_error hooks (MLflow run FAILED, staging discarded, failed summary written).
    @hook_impl
    def before_node_run(self) -> None:
        if self.current is not None and not self._checked:
            self._checked = True
            self.current.check_writable()

    # trylast: promotion runs after every other after_pipeline_run hook (the run summary is
    # written into the staging folder by then, and kedro-mlflow has logged its artifacts).
    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        if self.current is None:
            return
        written = self.current.promote()
        logger.info("promoted %d staged file(s) to their real paths", len(written))
        pending.forget()  # the run succeeded: its versions stay
        pending.journal_to(None)
        self.current = None
        self._release_run_lock()

    def _release_run_lock(self) -> None:
        lock, self._run_lock = self._run_lock, None
        if lock is not None:
            lock.close()

    @hook_impl(trylast=True)
    def on_pipeline_error(self, run_params: dict[str, Any]) -> None:
        self.discard_current("run failed", run_params.get("run_id"))

    def discard_current(self, why: str, run_id: str | None = None) -> None:
        if run_id is not None and self._refused.pop(str(run_id), None) is not None:
            return  # a refused run: the running one's staging and lock are not its own
        if self.current is not None and self.current.handed_over:
            return  # a forced end's clean-up process takes it back
        pending.undo_all()  # nothing of a failed run stays in the registry
        pending.journal_to(None)
        if self.current is None:
            self._release_run_lock()
            return
        self.current.discard()
        logger.warning("%s: staged outputs discarded, earlier outputs left as they were", why)
        self.current = None
        self._release_run_lock()


class StagingGuardHooks:
    """Discards the staging folder when an after_pipeline_run hook raises before promotion (e.g.
    a SIGINT landing after the last node): Kedro calls no error hook then, and the folder would
    be left behind with nothing promoted."""

    def __init__(self, staging: StagingHooks) -> None:
        self._staging = staging

    def _discarding_on_error(self, hook: str, run_params: dict[str, Any]):
        """The wrapped hooks' result; when one of them raises, the run's staging (and run lock)
        is let go first."""
        try:
            return (yield)
        except BaseException as error:
            self._staging.discard_current(f"{hook} hook failed ({type(error).__name__})",
                                          run_params.get("run_id"))
            raise

    @hook_impl(wrapper=True)
    def after_pipeline_run(self, run_params: dict[str, Any]):
        return (yield from self._discarding_on_error("an after-run", run_params))

    # Nor does Kedro call one when a before_pipeline_run hook raises: the staging folder and the
    # project's run lock would be held by a run that never started (a notebook's next run, or a
    # terminal's, would be refused as if it were running).
    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params: dict[str, Any]):
        return (yield from self._discarding_on_error("a before-run", run_params))


class ProjectClaimHooks:
    """Claims the project for a run (`StagingHooks.claim_project`) before any other
    before_pipeline_run hook but the parameter pre-flight: the stored-output checks
    (run_hooks/stored_records.py) then read what a killed run's promotion completed, not the
    half-promoted state, and a run refused because another runs starts no MLflow run."""

    def __init__(self, staging: StagingHooks) -> None:
        self._staging = staging

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._staging.claim_project(run_params)


def main(argv: list[str] | None = None) -> int:
    """``python -m bma_quant.run_hooks.staging <staging folder>``: clean up after the runs in it
    whose process is gone or handed its folder over (run_hooks/forced_exit.py)."""
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = Path((argv if argv is not None else sys.argv[1:])[0])
    remove_orphans(root)
    left = [f for f in root.iterdir() if (f / _INTERRUPTED_FILE).is_file()
            and _owner(f)[0] == os.getppid()] if root.is_dir() else []
    return 1 if left else 0  # the handed-over folder could not be cleaned up


if __name__ == "__main__":
    raise SystemExit(main())
