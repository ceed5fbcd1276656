"""One chaos run: a cluster of real processes, a workload, a fault schedule, the checkers,
and a report directory.

Order of a run: start the cluster (3 coordinators, ``groups`` store groups x 3) and wait
for leaders, or attach to the running cluster a ``cluster.json`` describes (``attach``) and
wait for its leaders; register the workload's model; start the clients and the schedule
(seeded random, or the ``timeline``) together; after ``duration_s`` stop the schedule and
heal everything (restart the killed, resume the paused, clear the network rules, reset the
tick rates); let the clients finish their operations in flight (each has a deadline); wait
until every store group has a leader that applied all it committed; pull the final weights;
check convergence (every replica's weights identical); run the checkers; write the report;
stop the cluster (never an attached one: it is left as it was found, healed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from consensus.storage import sync_journal
from paramstore.chaos._attach import load_cluster_file
from paramstore.chaos._catalogue import defaults_for, needing_fsync_always
from paramstore.chaos._history import History
from paramstore.chaos._linearizability import check_linearizable, pair_history
from paramstore.chaos._params_checker import check_params
from paramstore.chaos._report import CheckerVerdict, FaultWindow, Violation, write_report
from paramstore.chaos._schedule import Schedule
from paramstore.chaos._timeline import ScriptedFault
from paramstore.chaos._views import AttachedView, ClusterView, LocalView
from paramstore.chaos._workload import (
    LEAVES,
    WorkloadConfig,
    model_spec,
    run_kv_client,
    run_pull_client,
    run_push_client,
)
from paramstore.client import ClientError, StoreClient
from paramstore.commands._up import LocalCluster
from proto import store_service_pb2 as store_api
from proto import store_service_pb2_grpc as store_grpc

__all__ = ["ChaosConfig", "ChaosOutcome", "run_chaos"]

log = logging.getLogger("paramstore.chaos")

_READY_S = 60.0
_DRAIN_S = 30.0


@dataclass(frozen=True)
class ChaosConfig:
    directory: Path
    duration_s: float = 30.0
    seed: int = 1
    nemeses: tuple[str, ...] = defaults_for("batch")
    fault_s: float = 3.0
    gap_s: float = 2.0
    groups: int = 2
    fsync: str = "batch"
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    # Environment of every cluster process (the harness's self-tests plant bugs with it).
    cluster_env: dict[str, str] = field(default_factory=dict)
    # Scripted faults instead of the random schedule (``nemeses``, ``fault_s``, ``gap_s``).
    timeline: tuple[ScriptedFault, ...] | None = None
    # How long the end of the run waits for the healed cluster to settle (leaders, the final
    # pull, every replica caught up) before it counts what is missing as a violation.
    settle_s: float = 60.0
    # A running cluster's cluster.json (or its directory) to attack instead of starting one;
    # ``groups``, ``fsync`` and ``cluster_env`` then do not apply.
    attach: Path | None = None


@dataclass
class ChaosOutcome:
    ok: bool
    verdicts: list[CheckerVerdict]
    operations: int
    faults: int
    report: Path
    summary: dict[str, Any]

    @property
    def violations(self) -> int:
        return sum(len(v.violations) for v in self.verdicts if v.ok is False)


async def run_chaos(config: ChaosConfig) -> ChaosOutcome:
    named = {f.nemesis for f in config.timeline} if config.timeline is not None else set(config.nemeses)
    unsynced = sorted(named & set(needing_fsync_always()))
    if unsynced and config.attach is None and config.fsync != "always":
        raise ValueError(
            f"nemeses {', '.join(unsynced)} lose unsynced writes, a fault only under fsync 'always', "
            f"not {config.fsync!r}"
        )
    config.directory.mkdir(parents=True, exist_ok=True)
    if config.attach is not None:
        return await _run_attached(config, config.attach)
    env = dict(config.cluster_env)
    if unsynced:  # what the nodes synced, for the power-loss nemesis to cut their WALs back to
        env.setdefault(sync_journal.ENV_VARIABLE, str(config.directory.absolute() / "sync-journal"))
    cluster = LocalCluster(
        config.directory / "cluster",
        groups=config.groups,
        replicas=3,
        fsync=config.fsync,
        extra_env=env,
    )
    cluster.start()
    try:
        await cluster.wait_for_leader(_READY_S)
        await cluster.register_groups(_READY_S)
        await cluster.wait_for_store_leaders(_READY_S)
        cluster.write_cluster_file()
        return await _run(config, LocalView(cluster))
    finally:
        cluster.stop()


async def _run_attached(config: ChaosConfig, path: Path) -> ChaosOutcome:
    attached = load_cluster_file(path)
    down = attached.not_running()
    if down:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in down)
        raise RuntimeError(f"{attached.path}: not running: {names}; is `paramstore up` still up?")
    view = AttachedView(attached)
    await view.wait_for_coordinator_leader(_READY_S)
    await view.wait_for_store_leaders(_READY_S)
    if not config.workload.run_id:
        run_id = f"{config.seed}-{secrets.token_hex(4)}"
        config = dataclasses.replace(config, workload=dataclasses.replace(config.workload, run_id=run_id))
    return await _run(config, view)


async def _run(config: ChaosConfig, view: ClusterView) -> ChaosOutcome:
    addresses = view.client_addresses
    workload = config.workload
    async with StoreClient(addresses, client_id=workload.client_id("chaos-setup")) as setup:
        spec = model_spec(workload)
        await setup.register_model(spec, {leaf: np.zeros(workload.elements, np.float32) for leaf in LEAVES})
    history = History()
    stop = asyncio.Event()
    schedule = Schedule(
        view,
        config.nemeses,
        config.seed,
        history.now,
        fault_s=config.fault_s,
        gap_s=config.gap_s,
        timeline=config.timeline,
    )
    process = iter(range(1_000_000))
    clients = [
        *(
            run_push_client(history, next(process), c, addresses, workload, stop)
            for c in range(workload.push_clients)
        ),
        *(
            run_pull_client(history, next(process), addresses, workload, stop)
            for _ in range(workload.pull_clients)
        ),
        *(
            run_kv_client(history, next(process), addresses, workload, config.seed, stop)
            for _ in range(workload.kv_clients)
        ),
    ]
    tasks = [asyncio.create_task(c) for c in clients]
    nemesis = asyncio.create_task(schedule.run(stop))
    started = time.monotonic()
    try:
        await asyncio.sleep(config.duration_s)
    finally:
        # Heal even when interrupted: an attached cluster outlives this run.
        stop.set()
        await nemesis
        await schedule.heal()
    done, pending = await asyncio.wait(tasks, timeout=_DRAIN_S)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    ran_s = time.monotonic() - started
    await view.wait_for_coordinator_leader(config.settle_s)
    final, convergence = await _final_state(view, addresses, workload, config.settle_s)
    verdicts = _check(history, final, convergence)
    faults = [FaultWindow(f.name, f.start, f.end, f.detail) for f in schedule.faults]
    operations = sum(1 for r in history.records if r["type"] == "invoke")
    summary: dict[str, Any] = {
        "seed": config.seed,
        "duration_s": round(ran_s, 1),
        "nemeses": sorted({f.nemesis for f in config.timeline}) if config.timeline else list(config.nemeses),
        "schedule": "timeline" if config.timeline is not None else "random",
        "cluster": view.describe(),
        "workload": asdict(workload),
        "operations": operations,
        "faults": len(faults),
    }
    report = write_report(
        config.directory / "report",
        history=history.records,
        faults=faults,
        verdicts=verdicts,
        metadata=summary,
        logs=view.logs(),
    )
    ok = all(v.ok for v in verdicts)
    return ChaosOutcome(ok, verdicts, operations, len(faults), report, summary)


async def _final_state(
    view: ClusterView, addresses: list[str], workload: WorkloadConfig, settle_s: float
) -> tuple[dict[str, Any] | None, CheckerVerdict]:
    """The final weights (a linearizable pull) and the convergence verdict: every replica
    of every group, once it applied what its leader committed, holds the same weights."""
    client_id = workload.client_id("chaos-final")
    violations: list[Violation] = []
    final: dict[str, Any] | None = None
    async with StoreClient(addresses, client_id=client_id, deadline_s=settle_s) as client:
        try:
            final = await client.pull(workload.model)
        except ClientError as exc:  # a cluster that lost the model (a planted bug, say) fails here
            violations.append(Violation(f"the final weights could not be pulled: {str(exc)[:300]}", ()))
    for group, members in sorted(view.store_addresses.items()):
        # Each group gets the whole settle time: a group that cannot settle (a node that will
        # not start, say), or a final pull that waited for it, must not leave the next
        # group none and have it reported as not caught up.
        deadline = time.monotonic() + settle_s
        digests = await _settled_digests(list(members.values()), workload.model, deadline)
        if len(set(digests.values())) > 1:
            shown = ", ".join(f"{a}: {d[:12]}" for a, d in sorted(digests.items()))
            violations.append(Violation(f"store group {group}: replicas differ ({shown})", ()))
        elif len(digests) < len(members):
            violations.append(
                Violation(
                    f"store group {group}: only {len(digests)} of {len(members)} replicas caught up "
                    f"(not {', '.join(sorted(set(members.values()) - set(digests)))})",
                    (),
                )
            )
    verdict = CheckerVerdict(
        "convergence",
        not violations,
        "every replica of every store group holds the same weights"
        if not violations
        else f"{len(violations)} violation(s): groups that did not converge, or no final weights",
        violations,
    )
    return final, verdict


async def _settled_digests(addresses: list[str], model: str, deadline: float) -> dict[str, str]:
    """Each member's digest of the model's weights (a serializable pull from that member),
    taken once it applied everything the leader had committed when we asked."""
    digests: dict[str, str] = {}
    while time.monotonic() < deadline and len(digests) < len(addresses):
        target = 0
        statuses: dict[str, store_api.StatusResponse] = {}
        for address in addresses:
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    statuses[address] = await store_grpc.StoreStub(channel).Status(
                        store_api.StatusRequest(), timeout=2.0
                    )
            except grpc.aio.AioRpcError:
                continue
        target = max((s.commit_index for s in statuses.values() if s.role == "leader"), default=0)
        for address, status in statuses.items():
            if address in digests or not target or status.applied_index < target:
                continue
            try:
                digests[address] = await _digest(address, model)
            except grpc.aio.AioRpcError as exc:
                log.info("digest of %s on %s: %s", model, address, exc.code().name)
        if len(digests) < len(addresses):
            await asyncio.sleep(0.1)
    return digests


async def _digest(address: str, model: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        request = store_api.PullRequest(model=model, serializable=True)
        async for message in store_grpc.StoreStub(channel).Pull(request, timeout=10.0):
            for piece in message.weights:
                digest.update(piece.key.encode())
                digest.update(piece.data)
    return digest.hexdigest()


def _check(
    history: History, final: dict[str, Any] | None, convergence: CheckerVerdict
) -> list[CheckerVerdict]:
    params = check_params(history.records, final)
    pushes = ", ".join(f"{n} {kind}" for kind, n in sorted(params.pushes.items()))
    params_verdict = CheckerVerdict(
        "parameters (exactly-once, real-time order, final state)",
        params.ok,
        f"{params.pulls} pulls and pushes ({pushes}) checked; {params.violation_count} violation(s)",
        [Violation(description, indexes) for description, indexes in params.violations],
    )
    kv = check_linearizable(pair_history(history.records))
    kv_violations = [Violation(f"key {k.key}: {k.message}", tuple(k.failing_ops)) for k in kv.violations]
    kv_ok: bool | None = kv.ok if not kv.unknown or kv.violations else None
    kv_verdict = CheckerVerdict(
        "key/value linearizability (per key)",
        kv_ok,
        f"{sum(k.operations for k in kv.keys)} operations on {len(kv.keys)} keys; "
        f"{len(kv.violations)} non-linearizable, {len(kv.unknown)} undecided",
        kv_violations,
    )
    return [params_verdict, kv_verdict, convergence]


def outcome_json(outcome: ChaosOutcome) -> str:
    return json.dumps(
        {
            "ok": outcome.ok,
            "operations": outcome.operations,
            "faults": outcome.faults,
            "violations": outcome.violations,
            "report": str(outcome.report),
            "verdicts": [{"name": v.name, "ok": v.ok, "summary": v.summary} for v in outcome.verdicts],
        }
    )
