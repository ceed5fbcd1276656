"""Attaching to a cluster that ``paramstore up --dir DIR`` runs: its ``cluster.json``.

``up`` writes every process it started (role, id, store group, address, pid, data dir, log)
to ``DIR/cluster.json``. A chaos run attached to that cluster drives the same nemeses as
against its own, with one limit: it cannot restart a process. The processes are ``up``'s
children, and ``cluster.json`` does not hold their command lines (the fsync policy and
any extra flags are not in it), so a process killed by the chaos run would come back
different, or owned by nobody once the run ended. Nemeses that kill (``kill``, ``leader``)
are therefore refused when attached; the others only signal processes (SIGSTOP / SIGCONT)
or talk to their ``RaftAdmin`` service, and are all undone when the run ends.

A pid in ``cluster.json`` is only signalled while ``/proc/PID/cmdline`` still shows a
paramstore process listening on that entry's address, so a stale file (``up`` stopped, the
pid reused) never makes the run signal a stranger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paramstore.chaos._targets import ClusterShape

__all__ = ["AttachedCluster", "ClusterFileError", "ClusterProcess", "load_cluster_file"]

CLUSTER_FILE = "cluster.json"


class ClusterFileError(ValueError):
    """A cluster.json that is missing, unreadable or not what ``paramstore up`` writes."""


@dataclass(frozen=True)
class ClusterProcess:
    role: str  # "coordinator" or "store"
    group: int  # 0 for a coordinator
    node_id: int
    address: str
    pid: int | None
    data_dir: Path
    log: Path

    @property
    def name(self) -> str:
        return f"coordinator {self.node_id}" if self.group == 0 else f"store {self.group}-{self.node_id}"

    def is_running(self) -> bool:
        """Whether ``pid`` is (still) the paramstore process listening on ``address``."""
        if self.pid is None or self.pid <= 0:
            return False
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
            state = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        argv = raw.decode(errors="replace").split("\0")
        zombie = state.rsplit(")", 1)[-1].split()[:1] == ["Z"]
        paramstore = any(arg == "paramstore.cli" or Path(arg).name == "paramstore" for arg in argv)
        return not zombie and paramstore and self.address in argv


@dataclass(frozen=True)
class AttachedCluster:
    path: Path
    cluster_id: str
    processes: tuple[ClusterProcess, ...]

    @property
    def coordinators(self) -> dict[int, str]:
        return {p.node_id: p.address for p in self.processes if p.group == 0}

    @property
    def store_addresses(self) -> dict[int, dict[int, str]]:
        groups: dict[int, dict[int, str]] = {}
        for p in self.processes:
            if p.group:
                groups.setdefault(p.group, {})[p.node_id] = p.address
        return dict(sorted(groups.items()))

    @property
    def shape(self) -> ClusterShape:
        groups: dict[int, tuple[int, ...]] = {0: tuple(sorted(self.coordinators))}
        groups.update({g: tuple(sorted(m)) for g, m in self.store_addresses.items()})
        return ClusterShape(groups)

    def process(self, group: int, node_id: int) -> ClusterProcess | None:
        for p in self.processes:
            if (p.group, p.node_id) == (group, node_id):
                return p
        return None

    def not_running(self) -> list[ClusterProcess]:
        return [p for p in self.processes if not p.is_running()]


def cluster_file_path(path: Path) -> Path:
    """``path`` itself if it is a file, ``path/cluster.json`` if it is a directory."""
    return path / CLUSTER_FILE if path.is_dir() else path


def load_cluster_file(path: Path) -> AttachedCluster:
    """Parse and check a cluster.json; ``ClusterFileError`` (one line) saying what is wrong."""
    file = cluster_file_path(path)
    try:
        described = json.loads(file.read_text())
    except FileNotFoundError:
        hint = "start a cluster with `paramstore up --dir DIR`"
        raise ClusterFileError(f"{file}: no such file ({hint})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterFileError(f"{file}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ClusterFileError(f"{file}: not JSON: {exc}") from None
    if not isinstance(described, dict) or not isinstance(described.get("processes"), list):
        expected = "an object with a 'processes' list, as `paramstore up` writes"
        raise ClusterFileError(f"{file}: expected {expected}")
    processes = tuple(_process(file, i, entry) for i, entry in enumerate(described["processes"]))
    seen: set[tuple[int, int]] = set()
    for p in processes:
        if (p.group, p.node_id) in seen:
            raise ClusterFileError(f"{file}: {p.name} is listed twice")
        seen.add((p.group, p.node_id))
    if not any(p.group == 0 for p in processes):
        raise ClusterFileError(f"{file}: lists no coordinator")
    return AttachedCluster(file, str(described.get("cluster_id", "")), processes)


def _process(file: Path, index: int, entry: Any) -> ClusterProcess:
    where = f"{file}: processes[{index}]"
    if not isinstance(entry, dict):
        raise ClusterFileError(f"{where}: expected an object, got {type(entry).__name__}")
    role = entry.get("role")
    if role not in ("coordinator", "store"):
        raise ClusterFileError(f"{where}.role: expected 'coordinator' or 'store', got {role!r}")
    group: Any = entry.get("group", 0) if role == "store" else 0
    node_id: Any = entry.get("id")
    for name, value in (("id", node_id), ("group", group)):
        minimum = 0 if name == "group" and role == "coordinator" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ClusterFileError(f"{where}.{name}: expected an integer >= {minimum}, got {value!r}")
    address = entry.get("address")
    if not isinstance(address, str) or ":" not in address:
        raise ClusterFileError(f"{where}.address: expected 'host:port', got {address!r}")
    pid = entry.get("pid")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        raise ClusterFileError(f"{where}.pid: expected an integer or null, got {pid!r}")
    return ClusterProcess(
        role=role,
        group=group,
        node_id=node_id,
        address=address,
        pid=pid,
        data_dir=Path(str(entry.get("data_dir", ""))),
        log=Path(str(entry.get("log", ""))),
    )
