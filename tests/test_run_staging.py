"""Staged outputs: a run writes under data/.staging/<run id>/ and promotes only on success."""

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline

from bma_quant.run_hooks import staging
from bma_quant.run_hooks.staging import RunStaging, StagingHooks, redirect_config
from tests.support import REGISTERING_RUN_SCRIPT


def _catalog(project):
    return DataCatalog.from_config({
        "table": {"type": "pandas.ParquetDataset",
                  "filepath": str(project / "data/03_primary/table.parquet")},
        "report": {"type": "kedro_mlflow.io.artifacts.MlflowArtifactDataset",
                   "dataset": {"type": "json.JSONDataset",
                               "filepath": "data/08_reporting/report.json"}},
        "raw": {"type": "pandas.ParquetDataset", "filepath": "data/01_raw/raw.parquet"},
        "plot_{name}": {"type": "json.JSONDataset", "filepath": "data/08_reporting/{name}.json"},
    })


def _pipeline():
    return Pipeline([
        Node(lambda raw: raw.assign(y=1), "raw", "table", name="make_table"),
        Node(lambda table: {"rows": len(table)}, "table", ["report"], name="report"),
        Node(lambda table: {"x": 1}, "table", "plot_ic", name="plot"),
    ])


def _guarded_hooks(project, failing):
    """The staging hooks, their guard and a `failing` hook in one Kedro hook manager."""
    from kedro.framework.hooks import _create_hook_manager

    hooks = StagingHooks()
    hooks._project_path = project
    manager = _create_hook_manager()
    for plugin in (hooks, staging.StagingGuardHooks(hooks), failing):
        manager.register(plugin)
    return hooks, manager


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative filepaths resolve against the working directory
    raw = tmp_path / "data/01_raw/raw.parquet"
    raw.parent.mkdir(parents=True)
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(raw)
    old = tmp_path / "data/03_primary/table.parquet"
    old.parent.mkdir(parents=True)
    pd.DataFrame({"old": [0]}).to_parquet(old)
    return tmp_path


def _store_with_one_version(db: Path, name: str):
    """A fresh SQLite MLflow store (made current) holding model ``name`` with version 1, logged
    by a finished run: (tracking URI, client, version, that run's id)."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{db}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    client.create_registered_model(name)
    with mlflow.start_run() as run:
        mlflow.log_text("chain", "model/chain.txt")
        version = client.create_model_version(name, f"{mlflow.get_artifact_uri()}/model",
                                              run.info.run_id)
    return uri, client, version, run.info.run_id


def test_config_redirect_moves_plain_and_wrapped_filepaths(tmp_path):
    run = tmp_path / "data/.staging/r1"
    plain, moved = redirect_config({"type": "x", "filepath": "data/03_primary/a.parquet"},
                                   tmp_path, run)
    assert plain["filepath"] == str(run / "data/03_primary/a.parquet")
    assert moved == [(run / "data/03_primary/a.parquet", tmp_path / "data/03_primary/a.parquet")]
    wrapped, _ = redirect_config({"type": "m", "dataset": {"type": "j", "filepath": "r.json"}},
                                 tmp_path, run)
    assert wrapped["dataset"]["filepath"] == str(run / "r.json")
    outside, _ = redirect_config({"type": "x", "filepath": "/elsewhere/b.csv"}, tmp_path, run)
    assert outside["filepath"] == str(run / "_external/elsewhere/b.csv")
    assert redirect_config({"type": "x", "filepath": "s3://bucket/c.csv"}, tmp_path, run) is None
    assert redirect_config({"type": "MemoryDataset"}, tmp_path, run) is None


def test_outputs_are_staged_read_back_within_the_run_and_promoted(project):
    catalog = _catalog(project)
    run = RunStaging(project, "r1")
    run.stage(catalog, staging.outputs_written_by(_pipeline()))
    assert sorted(run.datasets) == ["plot_ic", "report", "table"]  # raw is only read
    catalog.save("table", pd.DataFrame({"new": [1, 2]}))
    assert list(catalog.load("table").columns) == ["new"]  # same run reads the staged file
    assert list(pd.read_parquet(project / "data/03_primary/table.parquet").columns) == ["old"]
    assert catalog.load("raw")["x"].tolist() == [1.0, 2.0]  # inputs keep their real paths
    catalog.save("plot_ic", {"x": 1})
    summary = run.path_for(project / "data/08_reporting/run_summary.json")
    summary.write_text("{}")
    written = run.promote()
    assert list(pd.read_parquet(project / "data/03_primary/table.parquet").columns) == ["new"]
    assert json.loads((project / "data/08_reporting/ic.json").read_text()) == {"x": 1}
    assert written[-1].name == "run_summary.json"  # the summary is promoted last
    assert not run.folder.exists()


def test_a_retired_file_goes_only_when_the_outputs_are_promoted(project):
    """An earlier failed run's summary is stale once a run's outputs land, not before."""
    stale = project / "data/08_reporting/run_summary.failed.json"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("{}")
    failing = RunStaging(project, "r1")
    failing.stage(_catalog(project), staging.outputs_written_by(_pipeline()))
    failing.retire_after_promotion(stale)
    failing.discard()  # the run failed after all: the earlier failure's record stays
    assert stale.is_file()
    run = RunStaging(project, "r2")
    run.stage(_catalog(project), staging.outputs_written_by(_pipeline()))
    run.retire_after_promotion(Path("data/08_reporting/run_summary.failed.json"))
    run.promote()
    assert not stale.exists()


def test_failed_run_discards_staging_and_leaves_real_outputs(project):
    hooks = StagingHooks()
    hooks._project_path = project
    catalog = _catalog(project)
    before = (project / "data/03_primary/table.parquet").read_bytes()
    hooks.before_pipeline_run({"run_id": "2024-01-01T00.00.00"}, _pipeline(), catalog)
    folder = hooks.current.folder
    catalog.save("table", pd.DataFrame({"new": [1]}))
    hooks.on_pipeline_error({"run_id": "2024-01-01T00.00.00"})
    assert (project / "data/03_primary/table.parquet").read_bytes() == before
    assert not folder.exists()
    assert not (project / "data/08_reporting/report.json").exists()


def test_a_second_run_in_the_same_project_is_refused_before_it_writes(project):
    """Two runs promoting their files one by one left each file to whichever moved it last (a
    date split of one run beside the data build of the other). A run finds the project's run
    lock held, by another process, and stops at its first node with the holder named."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from bma_quant.run_hooks import staging; "
         "lock, _ = staging.hold_run_lock(Path(sys.argv[1]), 'pid 4242, run first'); "
         "print('held', flush=True); time.sleep(120)", str(project / staging.STAGING_DIR)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(staging.__file__).resolve().parents[2])})
    try:
        assert holder.stdout.readline().strip() == "held"
        hooks = StagingHooks()
        hooks._project_path = project
        before = (project / "data/03_primary/table.parquet").read_bytes()
        with pytest.raises(staging.AnotherRunInProgress, match=r"pid 4242, run first"):
            hooks.before_pipeline_run({"run_id": "second"}, _pipeline(), _catalog(project))
        assert hooks.current is None and not (project / staging.STAGING_DIR / "second").exists()
        hooks.discard_current("refused", "second")  # the guard's call: nothing of the holder's
        assert (project / "data/03_primary/table.parquet").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone, however it ended: the next run goes on, and lets go when it ends
    for _ in range(2):
        hooks.before_pipeline_run({"run_id": "third"}, _pipeline(), _catalog(project))
        hooks.before_node_run()
        hooks.after_pipeline_run()


def test_a_run_that_never_started_and_a_run_in_another_thread_hold_nothing(project):
    """Kedro calls no end hook when a before_pipeline_run hook raises: the guard lets the lock
    and the staging folder go (a notebook's next run was refused as if one were running). A
    run started in another thread of the process while one runs is refused and leaves the
    running one's staging alone."""
    import threading

    from kedro.framework.hooks.markers import hook_impl

    class FailingBeforeRun:
        @hook_impl
        def before_pipeline_run(self):
            raise PermissionError("a later before-run hook failed")

    hooks, manager = _guarded_hooks(project, FailingBeforeRun())
    with pytest.raises(PermissionError):
        manager.hook.before_pipeline_run(run_params={"run_id": "never"}, pipeline=_pipeline(),
                                         catalog=_catalog(project))
    assert hooks.current is None and hooks._run_lock is None
    assert not (project / staging.STAGING_DIR / "never").exists()

    hooks.before_pipeline_run({"run_id": "running"}, _pipeline(), _catalog(project))
    running = hooks.current
    errors = []

    def second_run():
        try:
            hooks.before_pipeline_run({"run_id": "other-thread"}, _pipeline(),
                                      _catalog(project))
        except staging.AnotherRunInProgress as error:
            errors.append(error)
            hooks.discard_current("refused", "other-thread")

    worker = threading.Thread(target=second_run)
    worker.start()
    worker.join()
    assert "(running) is running in this process" in str(errors[0])
    assert hooks.current is running and running.folder.exists()
    hooks.before_node_run()
    hooks.after_pipeline_run()
    assert hooks._run_lock is None and not running.folder.exists()


@pytest.mark.parametrize("later_run", [False, True], ids=["finished", "a-later-run-promoted"])
def test_a_run_killed_while_promoting_is_finished_by_the_next(project, later_run):
    """SIGKILL half-way through the moves left the new run's models beside the old run's
    features; every node had succeeded, so the next run moves the rest into place, unless a
    later run (from another host, its folder reclaimed only 15 minutes on) has promoted over
    them since."""
    hooks = StagingHooks()
    hooks._project_path = project
    catalog = _catalog(project)
    hooks.before_pipeline_run({"run_id": "killed-promoting"}, _pipeline(), catalog)
    run = hooks.current
    stale = project / "data/08_reporting/run_summary.failed.json"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("{}")
    run.retire_after_promotion(stale)
    catalog.save("table", pd.DataFrame({"new": [1]}))
    catalog.save("plot_ic", {"x": 1})
    moved = []
    real_promote = staging.promote_files

    def killed_after_one(pairs):
        moved.extend(real_promote(staging._staged_files(pairs)[:1]))
        raise SystemExit("SIGKILL")  # no hook runs after this

    staging.promote_files = killed_after_one
    try:
        with pytest.raises(SystemExit):
            run.promote()
    finally:
        staging.promote_files = real_promote
    run._stop_heartbeat()
    run._lock.close()  # the process is gone: the kernel drops its locks
    hooks._release_run_lock()
    assert len(moved) == 1 and run.folder.exists()
    table, plot = project / "data/03_primary/table.parquet", project / "data/08_reporting/ic.json"
    if later_run:
        later = time.time() + 5
        for real in (table, plot):
            real.parent.mkdir(parents=True, exist_ok=True)
            real.write_text("later")
            os.utime(real, (later, later))
    staging.remove_orphans(project / staging.STAGING_DIR)  # the next run's staging
    assert not run.folder.exists()
    if later_run:
        assert table.read_text() == plot.read_text() == "later"
        return
    assert not stale.exists()
    assert pd.read_parquet(table).columns.tolist() == ["new"]
    assert json.loads(plot.read_text()) == {"x": 1}


def test_orphaned_staging_of_a_dead_process_is_removed(project):
    """A folder is an orphan when nobody holds its owner lock: a live run (even one whose pid
    is reused or in another pid namespace) holds it until it ends, however it ends."""
    root = project / staging.STAGING_DIR
    dead, alive, reused = root / "dead", root / "alive", root / "reused"
    for folder, pid in ((dead, 2**22 + 12345), (alive, 2**22 + 12346), (reused, os.getpid())):
        folder.mkdir(parents=True)
        (folder / ".pid").write_text(str(pid))
    lock = staging.hold_owner_lock(alive / ".pid", f"{2**22 + 12346}")  # pid of another namespace
    starting = root / "starting"
    starting.mkdir()  # a run between creating its folder and its owner file
    staging.remove_orphans(root)
    assert not dead.exists() and alive.exists() and starting.exists()
    assert not reused.exists()  # its pid is alive (this process), but no run holds the lock
    lock.close()
    staging.remove_orphans(root)
    assert not alive.exists()


def test_read_only_output_folder_is_refused_at_the_first_node(project, monkeypatch):
    """Root ignores permission bits, so the folder is made unwritable through `writable`."""
    reporting = (project / "data/08_reporting").resolve()
    real_writable = staging.writable
    monkeypatch.setattr(staging, "writable",
                        lambda folder: folder.resolve() != reporting and real_writable(folder))
    hooks = StagingHooks()
    hooks._project_path = project
    hooks.before_pipeline_run({"run_id": "ro"}, _pipeline(), _catalog(project))
    with pytest.raises(staging.OutputFolderNotWritable, match="08_reporting"):
        hooks.before_node_run()
    hooks.on_pipeline_error({"run_id": "ro"})  # what kedro calls next: nothing was promoted
    assert not (project / "data/08_reporting/report.json").exists()


def test_writable_checks_by_creating_a_file(tmp_path):
    assert staging.writable(tmp_path / "not" / "yet" / "there")  # its parent would create it
    (tmp_path / "file.txt").write_text("x")
    assert not staging.writable(tmp_path / "file.txt" / "sub")  # no folder can be made there


def test_an_interrupt_in_an_after_run_hook_discards_staging_instead_of_leaving_it(project):
    """Kedro calls no error hook when an after_pipeline_run hook raises (e.g. a SIGINT landing
    after the last node): the guard discards the staged outputs, nothing is promoted."""
    from kedro.framework.hooks.markers import hook_impl

    from bma_quant.run_hooks.interrupts import RunInterrupted

    class InterruptedAfterRun:
        @hook_impl
        def after_pipeline_run(self):
            raise RunInterrupted("run interrupted by SIGINT")

    hooks, manager = _guarded_hooks(project, InterruptedAfterRun())
    catalog = _catalog(project)
    before = (project / "data/03_primary/table.parquet").read_bytes()
    hooks.before_pipeline_run({"run_id": "late-signal"}, _pipeline(), catalog)
    folder = hooks.current.folder
    catalog.save("table", pd.DataFrame({"new": [1]}))
    with pytest.raises(RunInterrupted):
        manager.hook.after_pipeline_run(run_params={}, run_result={}, pipeline=_pipeline(),
                                        catalog=catalog)
    assert not folder.exists() and hooks.current is None
    assert (project / "data/03_primary/table.parquet").read_bytes() == before


def test_a_folder_from_another_host_on_a_shared_file_system_is_left_alone(project, monkeypatch):
    monkeypatch.setattr(staging, "is_local_file_system", lambda path: False)
    root = project / staging.STAGING_DIR
    elsewhere = root / "elsewhere"
    elsewhere.mkdir(parents=True)
    (elsewhere / ".pid").write_text(f"{2**22 + 12345} another-host.example")
    staging.remove_orphans(root)
    assert elsewhere.exists()  # its lock may not reach here, its pid says nothing


def test_a_folder_from_another_host_name_on_a_local_disk_is_cleaned_up_once_unlocked(project):
    """A container's host name changes with each start; its bind-mounted project does not: the
    lock a killed run held is gone whatever name it ran under."""
    assert staging.is_local_file_system(project)
    root = project / staging.STAGING_DIR
    stale = time.time() - staging.OTHER_HOST_STALE_SECONDS - 60

    def folder(name: str, beat_at: float | None) -> Path:
        path = root / name
        path.mkdir(parents=True)
        (path / ".pid").write_text(f"{2**22 + 12345} {name}-host")
        if beat_at is not None:
            os.utime(path / ".pid", (beat_at, beat_at))
        return path

    killed = folder("killed", stale)
    just_beating = folder("beating", None)  # lock free but a heartbeat just now: left alone
    live = folder("live", stale)
    held = staging.hold_owner_lock(live / ".pid", f"{os.getpid()} live-host")
    os.utime(live / ".pid", (stale, stale))
    try:
        staging.remove_orphans(root)
        assert not killed.exists()
        assert just_beating.exists()
        assert live.exists()  # its lock is held
    finally:
        if held is not None:
            held.close()


def test_a_live_runs_owner_file_keeps_beating(project, monkeypatch):
    monkeypatch.setattr(staging, "HEARTBEAT_SECONDS", 0.05)
    run = RunStaging(project, "beating")
    run.stage(_catalog(project), staging.outputs_written_by(_pipeline()))
    owner = run.folder / ".pid"
    os.utime(owner, (0, 0))
    deadline = time.monotonic() + 10
    while owner.stat().st_mtime == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert owner.stat().st_mtime > 0
    run.discard()
    assert run._heartbeat is None and not run.folder.exists()


def test_file_system_kind_is_the_innermost_mounts(monkeypatch):
    from types import SimpleNamespace

    mounts = [SimpleNamespace(mountpoint="/", fstype="ext4"),
              SimpleNamespace(mountpoint="/mnt/share", fstype="nfs4"),
              SimpleNamespace(mountpoint="/mnt/share/scratch", fstype="xfs"),
              SimpleNamespace(mountpoint="/home/me/remote", fstype="fuse.sshfs"),
              SimpleNamespace(mountpoint="/Users", fstype="apfs")]
    monkeypatch.setattr(staging.psutil, "disk_partitions", lambda all=False: mounts)
    assert staging.is_local_file_system(Path("/srv/project"))
    assert not staging.is_local_file_system(Path("/mnt/share/project"))
    assert staging.is_local_file_system(Path("/mnt/share/scratch/project"))
    assert staging.is_local_file_system(Path("/mnt/share-d/project"))  # not under /mnt/share
    assert not staging.is_local_file_system(Path("/home/me/remote/p"))
    assert staging.is_local_file_system(Path("/Users/me/p"))


_KILLED_RUN = REGISTERING_RUN_SCRIPT + """
os.kill(os.getpid(), signal.SIGKILL)  # no hook, no atexit: the run stays RUNNING
"""


def test_a_run_killed_with_sigkill_is_cleaned_up_by_the_next_run(project):
    """SIGKILL after registering: the next run's clean-up deletes the version, gives @champion
    back, marks the MLflow run KILLED and removes the staging folder."""
    import subprocess
    import sys

    name = "bma_quant-killed"
    uri, client, kept, _ = _store_with_one_version(project / "killed.db", name)
    client.set_registered_model_alias(name, "champion", kept.version)
    src = str(Path(staging.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    script = project / "killed_run.py"
    script.write_text(_KILLED_RUN)
    done = subprocess.run([sys.executable, str(script), str(project), name, uri, "killed-run",
                           "champion"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    (killed,) = client.search_runs(["0"], "attributes.status = 'RUNNING'")
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"

    staging.remove_orphans(project / staging.STAGING_DIR)  # what the next run's staging does

    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    assert not (project / staging.STAGING_DIR / "killed-run").exists()


def test_a_run_killed_while_promoting_keeps_its_version_and_an_unanswered_undo_is_retried(
        project, monkeypatch):
    """Killed after every node ran (kedro-mlflow ended its run FINISHED): its registration is
    a successful run's and stays. A journal whose store does not answer keeps its folder, so
    the next run tries again."""
    import json

    name = "bma_quant-finished"
    uri, client, version, run_id = _store_with_one_version(project / "finished.db", name)
    root = project / staging.STAGING_DIR
    record = {"name": name, "version": str(version.version), "alias": "champion",
              "replaced": None, "run_id": run_id, "registry_uri": uri}
    for folder, tracking in ((root / "promoting", uri), (root / "unanswered", "http://127.0.0.1:9")):
        folder.mkdir(parents=True)
        (folder / ".pid").write_text(f"{2**22 + 12345}")
        (folder / ".mlflow_run.json").write_text(json.dumps(
            {"run_id": run_id, "tracking_uri": tracking}))
        (folder / ".registrations.jsonl").write_text(json.dumps(
            {**record, "tracking_uri": tracking, "registry_uri": tracking}) + "\n")
    staging.remove_orphans(root)
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert not (root / "promoting").exists()
    assert (root / "unanswered" / ".registrations.jsonl").exists()  # tried again next run
    staging.remove_orphans(root)
    assert (root / "unanswered").exists()
    staging.remove_orphans(root)  # the third run gives up (named in an error)
    assert not (root / "unanswered").exists()


def test_a_run_stopped_while_promoting_keeps_its_registrations(project, monkeypatch):
    """Every node succeeded; the run is stopped while moving its files into place: the journal
    is dropped and the in-memory undo forgotten before the first file moves."""
    from bma_quant.run_hooks import registrations

    run = RunStaging(project, "promoting")
    run.stage(_catalog(project), staging.outputs_written_by(_pipeline()))
    registrations.journal_to(run.folder)
    registrations.add(lambda: "undone", record={"name": "m", "version": "1"})
    assert (run.folder / registrations.JOURNAL_FILE).exists()

    def stopped(pairs):
        raise KeyboardInterrupt

    monkeypatch.setattr(staging, "promote_files", stopped)
    with pytest.raises(KeyboardInterrupt):
        run.promote()
    assert not (run.folder / registrations.JOURNAL_FILE).exists()
    assert registrations.undo_all() == []
    run.discard()


def test_a_journaled_version_another_run_made_is_left_alone(tmp_path):
    import json

    from bma_quant.run_hooks import registrations

    name = "bma_quant-other"
    uri, client, _, _ = _store_with_one_version(tmp_path / "other.db", name)
    journal = tmp_path / "journal.jsonl"
    journal.write_text(json.dumps({"name": name, "version": "1", "alias": "champion",
                                   "replaced": None, "run_id": "a-run-that-was-killed",
                                   "tracking_uri": uri, "registry_uri": uri}) + "\n")
    assert registrations.undo_journal(journal) == ([], 0)  # the model was re-created since
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]


def test_a_folder_whose_owner_is_not_written_yet_is_not_reclaimed(project):
    root = project / staging.STAGING_DIR
    starting = root / "starting"
    starting.mkdir(parents=True)
    (starting / ".pid").write_text("")  # opened, not yet locked and written
    staging.remove_orphans(root)
    assert starting.exists()


def test_a_signal_during_a_held_section_is_delivered_after_it():
    """Promotion and discarding hold SIGINT / SIGTERM by swapping their handlers (a signal mask
    covers one thread, and the kernel may pick another, e.g. one of OpenBLAS's)."""
    import signal
    import threading

    seen, during = [], []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with staging._signals_blocked():
            # sent from another thread, as a signal the kernel hands to any thread
            sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM))
            sender.start()
            sender.join()
            for _ in range(1000):  # Python runs handlers between bytecodes of the main thread
                during.extend(seen)
        assert during == [] and seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def _other_file_system(tmp_path, monkeypatch) -> Path:
    """A folder on another file system than tmp_path: /dev/shm (tmpfs) where it is one; else a
    folder the promotion is told is on another device (the copy path runs all the same, only
    the final renames stay on one device)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        return shm
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real_device = staging._device
    monkeypatch.setattr(staging, "_device", lambda path: real_device(path) + (
        1 if str(Path(path).resolve()).startswith(str(elsewhere.resolve())) else 0))
    return elsewhere


def test_outputs_on_another_file_system_are_promoted(tmp_path, monkeypatch):
    """An output folder that is a symlink to another file system: os.replace alone fails there
    (EXDEV) after every node succeeded."""
    import tempfile

    other = Path(tempfile.mkdtemp(dir=_other_file_system(tmp_path, monkeypatch)))
    try:
        (tmp_path / "models").symlink_to(other)
        (other / "model.pkl").write_text("old")
        staged = tmp_path / ".staging" / "run" / "models"
        staged.mkdir(parents=True)
        (staged / "model.pkl").write_text("new")
        (staged / "part").mkdir()
        (staged / "part" / "a.csv").write_text("a")
        local = tmp_path / ".staging" / "run" / "report.json"
        local.write_text("{}")
        written = staging.promote_files([(staged, tmp_path / "models"),
                                         (local, tmp_path / "report.json")])
        assert (other / "model.pkl").read_text() == "new"
        assert (other / "part" / "a.csv").read_text() == "a"
        assert (tmp_path / "report.json").read_text() == "{}"
        assert len(written) == 3
        assert not list(other.glob(".*promoting*")) and not list(other.glob("*/.*promoting*"))
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)


def test_a_copy_that_fails_leaves_every_real_file_as_it_was(tmp_path, monkeypatch):
    real = tmp_path / "out"
    real.mkdir()
    for name in ("a.txt", "b.txt"):
        (real / name).write_text("old " + name)
    staged = tmp_path / ".staging" / "run" / "out"
    staged.mkdir(parents=True)
    for name in ("a.txt", "b.txt"):
        (staged / name).write_text("new " + name)
    # the staged files look as if on another device than their targets
    monkeypatch.setattr(staging, "_device", lambda path: 1 if ".staging" in str(path) else 0)
    copied = []

    def copy_then_fail(source, target):
        copied.append(Path(target))
        if len(copied) == 2:
            raise OSError(28, "No space left on device")
        Path(target).write_bytes(Path(source).read_bytes())

    monkeypatch.setattr(staging.shutil, "copy2", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        staging.promote_files([(staged, real)])
    assert not list(real.glob(".*promoting*"))  # the copy made before the failure is gone
    assert {p.name: p.read_text() for p in real.iterdir()} == {"a.txt": "old a.txt",
                                                               "b.txt": "old b.txt"}


def test_the_project_is_claimed_before_stored_outputs_are_read_and_mlflow_starts():
    """A killed run's promotion is completed by the claim: the stored-output checks read the
    state before it and the lineage written at the end merged the stale record over the
    completed one (a stacking run was accepted on base models of other parameters). The claim
    now comes after the parameter pre-flight, before those checks and before kedro-mlflow."""
    from kedro.framework.hooks import _create_hook_manager

    from bma_quant import settings

    manager = _create_hook_manager()
    for hook in settings.HOOKS:
        manager.register(hook)
    called = [type(impl.plugin).__name__ for impl in
              manager.hook.before_pipeline_run.get_hookimpls()[::-1]
              if not (impl.wrapper or impl.hookwrapper)]
    claim = called.index("ProjectClaimHooks")
    assert called.index("PreflightHooks") < claim
    for later in ("DataBuildHooks", "LayerLineageHooks", "BatchedParamsMlflowHook",
                  "StagingHooks"):
        assert claim < called.index(later), later
