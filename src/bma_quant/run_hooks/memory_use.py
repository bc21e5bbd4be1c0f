"""How full the memory this run can use is: the machine's; its container's when a cgroup limit
is below the machine's memory (Docker's `--memory`, a Kubernetes pod's limit, a CI runner's
slice); on macOS the run's own footprint.

psutil reports the whole machine: in a container limited to 4 GiB on a 64 GiB host the run is
killed by the kernel at 4 GiB while the machine still shows 10 % used, so the memory guard
(`memory.max_threshold`) would never stop it cleanly. Which share is read: `MemoryGauge`.

A cgroup's use counts its page cache, which the kernel reclaims before it kills anything: the
file cache is left out, except shared memory (tmpfs, /dev/shm), which counts as file cache but
cannot be dropped. Re-reading a data set makes its pages active, so leaving out only the inactive
file cache (as `docker stats` does) would count a run's reads as its memory.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# limit file, usage file, memory.stat's file-cache and shared-memory keys
_V1_FILES = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache", "total_shmem")
_V2_FILES = ("memory.max", "memory.current", "file", "shmem")


@dataclass(frozen=True)
class MemoryUse:
    share: float  # used / what this run may use, 0..1
    label: str  # "System memory use" or "Memory use against the container's limit (4.0 GiB)"


@dataclass(frozen=True)
class _LimitedCgroup:
    folder: Path
    files: tuple[str, str, str, str]  # _V1_FILES or _V2_FILES
    limit: int

    def share(self) -> float | None:
        _, usage_file, cache_key, shmem_key = self.files
        try:
            used = int((self.folder / usage_file).read_text())
            stat = _stat_values(self.folder / "memory.stat")
        except (OSError, ValueError):  # the cgroup went away or changed: the machine's share stays
            return None
        reclaimable = max(stat.get(cache_key, 0) - stat.get(shmem_key, 0), 0)
        return max(used - reclaimable, 0) / self.limit


def _stat_values(path: Path) -> dict[str, int]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[name] = int(value)
    return values


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text in ("", "max"):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _own_cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """hierarchy -> this process's cgroup path: "v2" for the unified one, "memory" for v1's."""
    paths = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths["v2"] = path
        elif "memory" in controllers.split(","):
            paths["memory"] = path
    return paths


def _folders_up(mount: Path, path: str) -> list[Path]:
    """The process's cgroup folder and its ancestors under `mount`. Without a cgroup namespace a
    container sees the host's path in /proc/self/cgroup but its own cgroup at the mount's root:
    folders that do not exist are skipped, so the root is still read."""
    parts = [part for part in path.strip("/").split("/") if part]
    folders = [mount.joinpath(*parts[:depth]) for depth in range(len(parts), 0, -1)] + [mount]
    return [folder for folder in folders if folder.is_dir()]


def limited_cgroups(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP,
                    machine_total: int | None = None) -> list[_LimitedCgroup]:
    """Every cgroup above this process (its own first) whose memory limit is below the machine's."""
    machine_total = machine_total or psutil.virtual_memory().total
    own = _own_cgroup_paths(proc_cgroup)
    candidates = []
    if "memory" in own:  # cgroup v1 (alone or beside a v2 hierarchy that has no controllers)
        candidates += [(folder, _V1_FILES) for folder in
                       _folders_up(cgroup_root / "memory", own["memory"])]
    if "v2" in own:
        # a unified-only machine mounts v2 at the root; a hybrid one under "unified"
        for mount in (cgroup_root, cgroup_root / "unified"):
            if (mount / "cgroup.controllers").is_file():
                candidates += [(folder, _V2_FILES) for folder in _folders_up(mount, own["v2"])]
                break
    limited = []
    for folder, files in candidates:
        limit = _read_limit(folder / files[0])
        # v1 writes "no limit" as a page-rounded 2**63 - 1; a limit at or above the machine's
        # memory limits nothing the machine does not
        if limit is not None and 0 < limit < machine_total:
            limited.append(_LimitedCgroup(folder, files, limit))
    return limited


class MemoryGauge:
    """Reads the memory share a run is judged by; the cgroups are looked up once, when built.

    - In a container with a memory limit below the machine's: the fullest limited cgroup's share.
      The machine's is not read there: without LXCFS it is the host's, other tenants' memory
      included, and the kernel kills this run at its container's limit, not the host's.
    - On macOS: this run's own resident memory (its process and children) against the machine's.
      macOS counts its active file cache and compressed pages as used (a laptop at rest reads
      75-85 %, psutil issue 1277), so the machine's share would stop runs that use little.
    - Elsewhere: the machine's share (psutil)."""

    def __init__(self, cgroups: list[_LimitedCgroup] | None = None,
                 own_footprint: bool | None = None) -> None:
        if cgroups is None:
            try:
                cgroups = limited_cgroups()
            except Exception as exc:  # an odd cgroup layout must not stop a run: the machine's share
                logger.debug("could not read cgroup memory limits: %s", exc)
                cgroups = []
        self._cgroups = cgroups
        self._own_footprint = sys.platform == "darwin" if own_footprint is None else own_footprint

    def read(self) -> MemoryUse:
        shares = [(share, cgroup) for cgroup in self._cgroups
                  if (share := cgroup.share()) is not None]
        if shares:
            share, cgroup = max(shares, key=lambda pair: pair[0])
            return MemoryUse(share, "Memory use against the container's limit "
                                    f"({cgroup.limit / 2**30:.1f} GiB)")
        if self._own_footprint:
            return MemoryUse(_resident_bytes_of_this_run() / psutil.virtual_memory().total,
                             "This run's memory use")
        return MemoryUse(psutil.virtual_memory().percent / 100.0, "System memory use")


def _resident_bytes_of_this_run() -> int:
    process = psutil.Process()
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # ended meanwhile
            pass
    return total
