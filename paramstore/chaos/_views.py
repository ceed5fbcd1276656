"""The chaos run's view of a cluster: its groups and nodes, their processes, their admin RPCs.

Two kinds, so that nemeses, workload and checkers do not care which:

* ``LocalView``: a ``LocalCluster`` the run started itself. Its processes are the run's own
  children, so nemeses may kill them and restart them with the same command line (or with
  a failpoint armed), and cut their power: kill -9 several at once and throw away what they
  had not synced, as the sync journal (``PARAMSTORE_SYNC_JOURNAL``) tells.
* ``AttachedView``: a cluster ``paramstore up`` runs (``--cluster``). Its processes belong
  to ``up``: the view signals them (SIGSTOP / SIGCONT, after checking the pid still is that
  node) but never kills or restarts them (``can_restart`` is False).

Both reach each node's ``RaftAdmin`` service (fault rules, tick rate) on its address.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import random
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import grpc

from consensus.storage import sync_journal
from consensus.storage.node_storage import WAL_DIR_NAME
from paramstore.chaos._attach import AttachedCluster
from paramstore.chaos._power_loss import SegmentCut, lose_unsynced_writes
from paramstore.chaos._targets import ClusterShape
from paramstore.client import CoordinatorClient
from paramstore.commands._up import LocalCluster, _store_leader
from proto import raft_service_pb2 as raft_api
from proto import raft_service_pb2_grpc as raft_grpc

__all__ = ["AttachedView", "ClusterView", "LocalView", "Node", "node_name"]

log = logging.getLogger("paramstore.chaos")

Node = tuple[int, int]  # (group, node id); group 0 = the coordinators

_LEADER_WAIT_S = 3.0
_ADMIN_TIMEOUT_S = 2.0


def node_name(node: Node) -> str:
    group, node_id = node
    return f"coordinator {node_id}" if group == 0 else f"store {group}-{node_id}"


class ClusterView(abc.ABC):
    """Addresses and admin RPCs common to both kinds; processes are the subclasses' business."""

    can_restart = False

    def __init__(self, coordinators: dict[int, str], stores: dict[int, dict[int, str]]) -> None:
        self.addresses = dict(coordinators)
        self.store_addresses = {g: dict(m) for g, m in stores.items()}

    # ---- shape --------------------------------------------------------------------------------

    @property
    def client_addresses(self) -> list[str]:
        return list(self.addresses.values())

    @property
    def shape(self) -> ClusterShape:
        groups = {0: tuple(sorted(self.addresses))}
        groups.update({g: tuple(sorted(m)) for g, m in self.store_addresses.items()})
        return ClusterShape(groups)

    def nodes(self) -> list[Node]:
        coordinators = [(0, n) for n in self.addresses]
        stores = [(g, n) for g, members in self.store_addresses.items() for n in members]
        return coordinators + stores

    def groups(self) -> list[int]:
        return [0, *self.store_addresses]

    def members(self, group: int) -> dict[int, str]:
        return dict(self.addresses) if group == 0 else dict(self.store_addresses[group])

    @abc.abstractmethod
    def describe(self) -> str:
        """One line: which cluster this is."""

    @abc.abstractmethod
    def logs(self) -> dict[str, Path]:
        """Each node's log file by node name (copied into the report)."""

    # ---- processes ----------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        raise RuntimeError(f"cannot kill {node_name(node)}: this cluster's processes are not ours to restart")

    def restart(self, node: Node, env: dict[str, str] | None = None) -> None:
        raise RuntimeError(f"cannot restart {node_name(node)}: this cluster's processes are not ours")

    def cut_power(self, nodes: Mapping[Node, random.Random]) -> dict[Node, list[SegmentCut]]:
        """kill -9 ``nodes`` at once, then lose what each had not synced (see ``_power_loss``),
        each with its own random generator (for torn tails)."""
        raise RuntimeError("cannot cut power: this cluster's processes are not ours to kill and restart")

    def exit_status(self, node: Node) -> int | None:
        """The node's exit status once its process has ended; None while it runs."""
        raise RuntimeError(f"cannot see how {node_name(node)} exited: its process is not ours")

    @abc.abstractmethod
    def signal(self, node: Node, signum: int) -> bool:
        """Send ``signum`` to the node's process if it runs; whether it was sent."""

    # ---- leaders ------------------------------------------------------------------------------

    async def leader(self, group: int) -> int:
        """The id of the node leading ``group`` now (waiting a little for one), 0 if none."""
        if group == 0:
            try:
                return await self.wait_for_coordinator_leader(_LEADER_WAIT_S)
            except (TimeoutError, RuntimeError):
                return 0
        return await _store_leader(list(self.members(group).values()))

    async def wait_for_coordinator_leader(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        async with CoordinatorClient(self.client_addresses) as client:
            while time.monotonic() < deadline:
                for status in await client.status_all(1.0):
                    if status.response is not None and status.response.role == "leader":
                        return int(status.response.node_id)
                await asyncio.sleep(0.05)
        raise TimeoutError(f"no coordinator leader within {timeout_s:.0f} s")

    async def wait_for_store_leaders(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for group, members in self.store_addresses.items():
            while not await _store_leader(list(members.values())):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"store group {group} has no leader within {timeout_s:.0f} s")
                await asyncio.sleep(0.05)

    # ---- RaftAdmin ----------------------------------------------------------------------------

    def _admin_address(self, node: Node) -> str:
        return self.members(node[0])[node[1]]

    async def inject(self, node: Node, rule: raft_api.FaultRule) -> None:
        async with grpc.aio.insecure_channel(self._admin_address(node)) as channel:
            await raft_grpc.RaftAdminStub(channel).InjectFault(
                raft_api.InjectFaultRequest(rule=rule), timeout=_ADMIN_TIMEOUT_S
            )

    async def clear(self, node: Node) -> None:
        try:
            async with grpc.aio.insecure_channel(self._admin_address(node)) as channel:
                await raft_grpc.RaftAdminStub(channel).ClearFaults(
                    raft_api.ClearFaultsRequest(), timeout=_ADMIN_TIMEOUT_S
                )
        except grpc.aio.AioRpcError as exc:  # a node that was restarted meanwhile has no rules
            log.info("clear faults on %s: %s", node_name(node), exc.code().name)

    async def set_tick_rate(self, node: Node, factor: float) -> raft_api.SetTickRateResponse:
        async with grpc.aio.insecure_channel(self._admin_address(node)) as channel:
            response: raft_api.SetTickRateResponse = await raft_grpc.RaftAdminStub(channel).SetTickRate(
                raft_api.SetTickRateRequest(factor=factor), timeout=_ADMIN_TIMEOUT_S
            )
            return response

    async def reset_tick_rate(self, node: Node) -> None:
        try:
            await self.set_tick_rate(node, 1.0)
        except grpc.aio.AioRpcError as exc:  # a restarted node ticks at the normal rate anyway
            log.info("reset the tick rate of %s: %s", node_name(node), exc.code().name)


class LocalView(ClusterView):
    """A ``LocalCluster`` started by this run: its processes may be killed and restarted."""

    can_restart = True

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(cluster.addresses, cluster.store_addresses)
        self.cluster = cluster
        journal = cluster.extra_env.get(sync_journal.ENV_VARIABLE)
        self._journal = sync_journal.JournalReader(Path(journal)) if journal else None

    def describe(self) -> str:
        groups = self.cluster.store_addresses
        replicas = len(next(iter(groups.values()))) if groups else 0
        return (
            f"{len(self.addresses)} coordinators, {len(groups)} store groups x {replicas} replicas, "
            f"fsync {self.cluster.fsync}"
        )

    def logs(self) -> dict[str, Path]:
        return {path.name: path for path in sorted((self.cluster.directory / "logs").glob("*.log"))}

    def _process(self, node: Node) -> subprocess.Popen[bytes] | None:
        group, node_id = node
        if group == 0:
            return self.cluster.processes.get(node_id)
        return self.cluster.store_processes.get(node)

    def kill(self, node: Node) -> None:
        process = self._process(node)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self, node: Node, env: dict[str, str] | None = None) -> None:
        """Start the node again unless it runs; ``env`` adds to (or overrides) the cluster's."""
        process = self._process(node)
        if process is not None and process.poll() is None:
            return
        group, node_id = node
        if group == 0:
            self.cluster.start_node(node_id, env)
        else:
            self.cluster.start_store(group, node_id, env)

    def cut_power(self, nodes: Mapping[Node, random.Random]) -> dict[Node, list[SegmentCut]]:
        if self._journal is None:
            raise RuntimeError(
                f"cannot simulate a power loss: the cluster runs without {sync_journal.ENV_VARIABLE}"
            )
        live = [p for node in nodes if (p := self._process(node)) is not None and p.poll() is None]
        for process in live:  # every signal first: the same moment for all of them
            process.send_signal(signal.SIGKILL)
        for process in live:
            process.wait(timeout=10)
        synced = self._journal.synced_sizes()
        return {node: lose_unsynced_writes(self._wal_dir(node), synced, rng) for node, rng in nodes.items()}

    def _wal_dir(self, node: Node) -> Path:
        group, node_id = node
        if group == 0:
            return self.cluster.data_dir(node_id) / WAL_DIR_NAME
        return self.cluster.store_data_dir(group, node_id) / WAL_DIR_NAME

    def exit_status(self, node: Node) -> int | None:
        process = self._process(node)
        return None if process is None else process.poll()

    def signal(self, node: Node, signum: int) -> bool:
        process = self._process(node)
        if process is None or process.poll() is not None:
            return False
        process.send_signal(signum)
        return True

    async def wait_for_coordinator_leader(self, timeout_s: float) -> int:
        # The cluster's own wait also notices a coordinator that crashed on start.
        return await self.cluster.wait_for_leader(timeout_s)


class AttachedView(ClusterView):
    """A cluster that ``paramstore up`` runs: signalled, never killed or restarted."""

    def __init__(self, cluster: AttachedCluster) -> None:
        super().__init__(cluster.coordinators, cluster.store_addresses)
        self.cluster = cluster

    def describe(self) -> str:
        return (
            f"attached to {self.cluster.path}: {len(self.addresses)} coordinators, "
            f"{len(self.store_addresses)} store groups"
        )

    def logs(self) -> dict[str, Path]:
        return {p.log.name: p.log for p in self.cluster.processes if p.log.name and p.log.is_file()}

    def signal(self, node: Node, signum: int) -> bool:
        process = self.cluster.process(*node)
        if process is None or process.pid is None or not process.is_running():
            log.warning("not signalling %s: pid %s is not that node (any more)", node_name(node), process)
            return False
        os.kill(process.pid, signum)
        return True
