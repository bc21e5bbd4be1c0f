"""The memory share the run's memory guard reads: the machine's, or a limited cgroup's."""

from types import SimpleNamespace

from bma_quant.run_hooks import memory_use
from bma_quant.run_hooks.memory_use import MemoryGauge, limited_cgroups

GIB = 2**30
MACHINE = 64 * GIB


def _cgroup(folder, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text + "\n")
    return folder


def _proc(tmp_path, text: str):
    path = tmp_path / "proc_self_cgroup"
    path.write_text(text)
    return path


def test_v2_limit_counts_use_without_the_file_cache_but_with_shared_memory(tmp_path):
    root = tmp_path / "fs"
    _cgroup(root, {"cgroup.controllers": "cpu memory", "memory.max": "max"})
    _cgroup(root / "pod" / "job", {"memory.max": str(8 * GIB), "memory.current": str(6 * GIB),
                                   "memory.stat": f"anon {3 * GIB}\nfile {3 * GIB}\n"
                                                  f"active_file {2 * GIB}\nshmem {GIB}"})
    cgroups = limited_cgroups(root, _proc(tmp_path, "0::/pod/job\n"), machine_total=MACHINE)
    assert [c.folder for c in cgroups] == [root / "pod" / "job"]  # "max" at the root: no limit
    # (6 - (3 - 1)) / 8: file cache, active or not, is reclaimed first; shared memory is not
    assert cgroups[0].share() == 0.5


def test_tightest_ancestor_counts_and_unlimited_or_larger_than_machine_do_not(tmp_path):
    root = tmp_path / "fs"
    _cgroup(root, {"cgroup.controllers": "memory"})
    _cgroup(root / "a", {"memory.max": str(2 * GIB), "memory.current": str(int(1.8 * GIB)),
                         "memory.stat": "file 0"})
    _cgroup(root / "a" / "b", {"memory.max": str(128 * GIB), "memory.current": str(GIB),
                               "memory.stat": "file 0"})
    cgroups = limited_cgroups(root, _proc(tmp_path, "0::/a/b\n"), machine_total=MACHINE)
    assert [c.folder for c in cgroups] == [root / "a"]
    use = MemoryGauge(cgroups, own_footprint=False).read()
    assert abs(use.share - 0.9) < 1e-9 and "2.0 GiB" in use.label


def test_v1_hybrid_machine_and_unlimited_sentinel(tmp_path):
    """A hybrid host (this project's CI kind): v1 memory controller, an empty v2 hierarchy."""
    root = tmp_path / "fs"
    own = "/process_api/3d2c"
    unlimited = "9223372036854771712"
    _cgroup(root / "memory", {"memory.limit_in_bytes": unlimited})
    _cgroup(root / "memory" / "process_api", {"memory.limit_in_bytes": unlimited})
    leaf = _cgroup(root / "memory" / "process_api" / "3d2c",
                   {"memory.limit_in_bytes": unlimited, "memory.usage_in_bytes": str(GIB),
                    "memory.stat": "total_cache 0"})
    _cgroup(root / "unified", {})  # no cgroup.controllers: not read
    proc = _proc(tmp_path, f"9:name=systemd:/\n4:memory:{own}\n0::/\n")
    assert limited_cgroups(root, proc, machine_total=MACHINE) == []
    (leaf / "memory.limit_in_bytes").write_text(str(4 * GIB))
    (leaf / "memory.stat").write_text(f"cache 5\ntotal_cache {GIB // 2}\ntotal_shmem 0\n")
    cgroups = limited_cgroups(root, proc, machine_total=MACHINE)
    assert [c.folder for c in cgroups] == [leaf] and cgroups[0].share() == 0.125


def test_container_without_cgroup_namespace_reads_its_mount_root(tmp_path):
    """Docker on cgroup v1 without a cgroup namespace: /proc/self/cgroup names the host's path,
    the container sees its own cgroup at the mount's root."""
    root = tmp_path / "fs"
    _cgroup(root / "memory", {"memory.limit_in_bytes": str(GIB), "memory.usage_in_bytes": "0",
                              "memory.stat": "total_cache 0"})
    cgroups = limited_cgroups(root, _proc(tmp_path, "4:memory:/docker/abc\n"), machine_total=MACHINE)
    assert [c.folder for c in cgroups] == [root / "memory"]


def test_a_limited_container_is_judged_by_its_limit_not_the_hosts_memory(tmp_path, monkeypatch):
    """Without LXCFS the machine's figure is the host's, other tenants included: in a limited
    container only the container's share counts; once its files are gone, the machine's."""
    assert limited_cgroups(tmp_path / "none", tmp_path / "missing", machine_total=MACHINE) == []
    root = tmp_path / "fs"
    _cgroup(root, {"cgroup.controllers": "memory", "memory.max": str(GIB),
                   "memory.current": str(GIB // 4), "memory.stat": "file 0"})
    cgroups = limited_cgroups(root, _proc(tmp_path, "0::/\n"), machine_total=MACHINE)
    monkeypatch.setattr(memory_use.psutil, "virtual_memory",
                        lambda: SimpleNamespace(percent=90.0, total=MACHINE))
    assert MemoryGauge(cgroups, own_footprint=False).read().share == 0.25  # not the host's 90 %
    (root / "memory.current").unlink()  # the cgroup went away mid-run
    use = MemoryGauge(cgroups, own_footprint=False).read()
    assert use.share == 0.9 and use.label == "System memory use"


def test_on_macos_the_run_is_judged_by_its_own_footprint(monkeypatch):
    """macOS counts active file cache and compressed pages as used: the machine's share would stop
    runs that use little."""
    monkeypatch.setattr(memory_use.psutil, "virtual_memory",
                        lambda: SimpleNamespace(percent=85.0, total=MACHINE))
    monkeypatch.setattr(memory_use, "_resident_bytes_of_this_run", lambda: 16 * GIB)
    use = MemoryGauge(cgroups=[], own_footprint=True).read()
    assert use.share == 0.25 and use.label == "This run's memory use"
    assert MemoryGauge(cgroups=[], own_footprint=False).read().share == 0.85


def test_gauge_on_this_machine_reads_a_share():
    assert 0.0 < MemoryGauge().read().share < 1.0
    assert 0.0 < MemoryGauge(cgroups=[], own_footprint=True).read().share < 1.0
