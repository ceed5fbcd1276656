"""``StoreClient``: the asyncio client of the store groups (register, push, pull a model).

It reads the routing from the coordinator (store groups and their members, each model's
shard -> group map), splits leaves into keys with ``ModelLayout``, and talks to each
group's leader: it follows the redirect hints of UNAVAILABLE answers (else tries the
members in turn) and retries UNAVAILABLE and DEADLINE_EXCEEDED with capped exponential
back-off, with a bounded number of attempts within one deadline per call.

Exactly-once pushes: every push carries this client's id and a sequence number of its own
per store group; a retry (after a timeout or a failover) reuses it, so the group's state
machine applies it at most once, and a retry that finds it applied gets the stored
acknowledgement. The dedup table keeps only a client's last sequence per group, so the
pushes of one client to one group go one at a time (a lock per group); pushes to different
groups go in parallel. A push whose outcome stayed unknown (its deadline passed) is given
up: the next push takes the next sequence, and the given-up one is applied at most once
(before the next one, or never: a sequence older than the last applied one is refused).
Run several clients (several client ids) for concurrency towards one group.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import grpc
import ml_dtypes
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from paramstore._piece_wire import Piece, encode_push_pieces, parse_pull_response
from paramstore.client._coordinator_client import CoordinatorClient, parse_addresses
from paramstore.client._errors import (
    ClientError,
    ClusterUnavailableError,
    CommandRejectedError,
    DeadlineExceededError,
)
from paramstore.client._raw_stub import RawTensorStoreStub
from paramstore.client._routes import (
    ModelNotRoutedError,
    Route,
    blocks_by_group,
    initial_blocks,
    model_of,
    route_of,
)
from paramstore.coordinator import AssignShards, ModelSpec, RegisterModel, SyncMode
from paramstore.coordinator._codec import spec_from_proto
from paramstore.shard import ErrorCode, ModelLayout, NonFinitePolicy, ShardResult, decode_result
from proto import shard_pb2 as shard_pb
from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc

__all__ = [
    "GroupPushResult",
    "ModelNotRoutedError",
    "PushFailedError",
    "StoreClient",
    "StoreRefusedError",
]

_LEADER_ADDRESS_METADATA = "paramstore-leader-address"
_ERROR_CODE_METADATA = "paramstore-error-code"
#: gradient_dtype -> (numpy dtype, wire element type).
_WIRE_DTYPES: dict[str, tuple[Any, Any]] = {
    "float32": (np.dtype("<f4"), shard_pb.D_TYPE_FLOAT32),
    "float16": (np.dtype("<f2"), shard_pb.D_TYPE_FLOAT16),
    "bfloat16": (np.dtype(ml_dtypes.bfloat16), shard_pb.D_TYPE_BFLOAT16),
}

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# A worker that just joined in the coordinator is a worker on a store group once the group's
# leader proposed the new membership (within a poll): its first pushes wait for that.
_WAIT_FOR_MEMBERSHIP = frozenset({ErrorCode.NOT_A_WORKER})
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# Rounds of assign -> install -> check in register_model before it gives up on a shard map
# that keeps changing under it (another client or an operator reassigning shards).
_REGISTER_ROUNDS_MAX = 4

_T = TypeVar("_T")


# ---- errors -----------------------------------------------------------------------------------


class StoreRefusedError(ClientError):
    """A store group refused the request (``code``: the shard state machine's reason, None
    when the server sent none; ``status``: the gRPC status). Nothing was applied."""

    def __init__(self, group: int, status: grpc.StatusCode, code: ErrorCode | None, details: str) -> None:
        super().__init__(f"store group {group}: {status.name}: {details}")
        self.group = group
        self.status = status
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class GroupPushResult:
    """One store group's acknowledgement of one push."""

    group: int
    sequence: int
    result: ShardResult  # ``duplicate`` when a retry found the push applied already
    merged_pushes: int  # pushes covered by the log entry that applied this one
    attempts: int


class PushFailedError(ClientError):
    """Some store groups did not acknowledge a push. ``acknowledged`` holds the groups that
    did (their part is applied exactly once), ``errors`` the others: a ``StoreRefusedError``
    means that group's part was not applied; any other error means its outcome is unknown
    (applied at most once), see ``unknown_groups``."""

    def __init__(self, acknowledged: dict[int, GroupPushResult], errors: dict[int, ClientError]) -> None:
        shown = "; ".join(f"group {group}: {error}" for group, error in sorted(errors.items()))
        super().__init__(f"push not acknowledged by {len(errors)} store group(s): {shown}")
        self.acknowledged = acknowledged
        self.errors = errors

    @property
    def unknown_groups(self) -> set[int]:
        return {g for g, e in self.errors.items() if not isinstance(e, StoreRefusedError)}


_PUSH_LANES_MAX = 8
_CLIENT_ID_BYTES_MAX = 256 - len(f"~lane{_PUSH_LANES_MAX}")


@dataclass(slots=True)
class _Lane:
    """One sequence of pushes to a group, sent one at a time (exactly-once per lane)."""

    sequence: int = 0  # the last push sequence taken
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class _GroupState(_Lane):
    """This client's session with one store group (and its lane 0)."""

    leader: str | None = None
    next_index: int = 0
    lanes: dict[int, _Lane] = field(default_factory=dict)  # lanes 1, 2, ... of async pushes


class StoreClient:
    """Registers, pushes to and pulls from models on the store groups that the coordinator
    group at ``coordinator_addresses`` lists. Use as ``async with``."""

    def __init__(
        self,
        coordinator_addresses: Sequence[str] | str,
        *,
        client_id: str | None = None,
        deadline_s: float = 30.0,
        attempt_timeout_s: float = 5.0,
        attempts_max: int = 200,
        backoff_initial_s: float = 0.01,
        # A store election takes a few hundred ms: waiting longer between rounds only adds
        # to the failover a caller sees.
        backoff_max_s: float = 0.2,
        piece_bytes: int = 1 << 20,  # push pieces: grpcio's sweet spot
        install_bytes_max: int = 8 << 20,  # initial values per Install request
        pull_bytes_max: int = 64 << 20,  # weights asked for in one Pull call
        # One push's gradient bytes per group (the store's bound: one log entry). A larger
        # async/SSP push is sent as several pushes of disjoint keys.
        push_bytes_max: int = 16 << 20,
        # Pull from any member of a group (serializable, no ReadIndex) instead of its
        # leader: spreads pull bandwidth over the replicas; a pull may then miss the latest
        # pushes (this client's own included), except that a BSP pull for a step waits until
        # the member has applied that step.
        follower_reads: bool = False,
        # The element type gradients travel in: "float32", or "bfloat16" / "float16" (half
        # the bytes; the store applies them in float32, as optax would the rounded values).
        gradient_dtype: str = "float32",
        # An async push of several parts sends up to this many of them at once, each lane
        # under its own client id (``client_id~lane<k>`` beyond the first) so that each stays
        # exactly-once in order; the group replicates one while the next arrives. BSP and
        # SSP pushes always go one after the other (their workers are known by client id).
        push_lanes: int = 2,
    ) -> None:
        self.coordinator_addresses = parse_addresses(coordinator_addresses)
        if deadline_s <= 0 or attempt_timeout_s <= 0 or attempts_max < 1:
            raise ValueError("deadline_s and attempt_timeout_s must be > 0 and attempts_max >= 1")
        if min(piece_bytes, install_bytes_max, pull_bytes_max) < 4:
            raise ValueError("piece_bytes, install_bytes_max and pull_bytes_max must be >= 4")
        if not 1 <= push_lanes <= _PUSH_LANES_MAX:
            raise ValueError(f"push_lanes must be between 1 and {_PUSH_LANES_MAX}, got {push_lanes}")
        self.push_lanes = push_lanes
        self.client_id = client_id or f"store-client-{uuid.uuid4().hex}"
        if len(self.client_id.encode()) > _CLIENT_ID_BYTES_MAX:
            raise ValueError(
                f"client_id is {len(self.client_id.encode())} bytes; at most {_CLIENT_ID_BYTES_MAX} "
                "(the store's 256, less room for a lane suffix)"
            )
        self.deadline_s = deadline_s
        self.attempt_timeout_s = attempt_timeout_s
        self.attempts_max = attempts_max
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.piece_bytes = piece_bytes
        self.install_bytes_max = install_bytes_max
        self.pull_bytes_max = pull_bytes_max
        self.push_bytes_max = push_bytes_max
        self.follower_reads = follower_reads
        if gradient_dtype not in _WIRE_DTYPES:
            raise ValueError(
                f"gradient_dtype must be one of {', '.join(_WIRE_DTYPES)}, got {gradient_dtype!r}"
            )
        self.gradient_dtype = gradient_dtype
        self._next_reader = 0  # follower reads: the member to ask next (round robin)
        self.coordinator = CoordinatorClient(
            self.coordinator_addresses, client_id=f"{self.client_id}-coordinator", deadline_s=deadline_s
        )
        self._routes: dict[str, Route] = {}
        self._groups: dict[int, _GroupState] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, api_grpc.StoreStub] = {}
        self._rng = random.Random()
        self.retries = 0
        self.reroutes = 0  # pushes or pulls sent again after a shard move (WRONG_GROUP)

    async def __aenter__(self) -> StoreClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close()
        await self.coordinator.close()

    # ---- register -------------------------------------------------------------------------

    async def register_model(
        self,
        spec: ModelSpec,
        initial_values: Mapping[str, npt.NDArray[Any]],
        *,
        non_finite_policy: NonFinitePolicy = NonFinitePolicy.REJECT,
    ) -> ModelSpec:
        """Register ``spec`` in the coordinator, give its unassigned shards a group and install
        every key on its group; returns the registered (canonical) spec. Idempotent: running
        it again, from this or another client with the same spec and values, changes nothing.

        Shard ``s`` goes to ``groups[s % len(groups)]`` of the sorted group ids, and only
        unassigned shards are assigned. The coordinator applies ``AssignShards`` as given
        (last writer wins, no compare), so two clients racing here write the same map as long
        as they saw the same groups. If the map changed under a client anyway (a group added
        in between, an operator moving shards), the check after the install sees it and the
        client installs again where the keys now live (bounded rounds): the keys end up on
        their groups of the final map; copies left on a former group are never routed to.
        A different spec or different initial values for a registered model are refused
        (``CommandRejectedError`` SPEC_CONFLICT, ``StoreRefusedError`` SPEC_CONFLICT).
        """
        result = await self.coordinator.execute(RegisterModel(spec))
        if not result.ok:
            raise CommandRejectedError(result)
        config = await self.coordinator.config()
        registered = model_of(config, spec.name)
        if registered is None:
            raise ModelNotRoutedError(f"model {spec.name!r} is not in the coordinator's config")
        layout = ModelLayout.from_spec(spec_from_proto(registered.spec))
        blocks = initial_blocks(layout, spec_from_proto(registered.spec), initial_values)
        installed: dict[int, set[str]] = {}
        for _ in range(_REGISTER_ROUNDS_MAX):
            registered = model_of(config, spec.name)
            assert registered is not None, "a registered model is never removed"
            unassigned = [s for s, g in enumerate(registered.shard_groups) if g == 0]
            if unassigned:
                groups = sorted(g.group_id for g in config.groups)
                if not groups:
                    raise ModelNotRoutedError("the coordinator lists no store group to put shards on")
                assignments = tuple((s, groups[s % len(groups)]) for s in unassigned)
                result = await self.coordinator.execute(AssignShards(spec.name, assignments))
                if not result.ok:
                    raise CommandRejectedError(result)
                config = await self.coordinator.config()
                continue
            route = route_of(config, spec.name)
            outcomes = await asyncio.gather(
                *(
                    self._install(
                        route,
                        group,
                        [k for k in keys if k not in installed.get(group, set())],
                        blocks,
                        non_finite_policy,
                    )
                    for group, keys in route.keys_by_group.items()
                ),
                return_exceptions=True,
            )
            moved = _moved_groups(route, outcomes)
            if moved:  # a shard moved while we installed: install where the map puts it now
                await self._moved_route(spec.name, route, [k for g in moved for k in route.keys_by_group[g]])
                config = await self.coordinator.config()
                continue
            for group, keys in route.keys_by_group.items():
                installed.setdefault(group, set()).update(keys)
            config = await self.coordinator.config()
            if route_of(config, spec.name).keys_by_group == route.keys_by_group:
                self._routes[spec.name] = route
                return route.spec
        raise ClientError(
            f"model {spec.name!r}: the shard map changed in each of {_REGISTER_ROUNDS_MAX} rounds; "
            "retry later"
        )

    async def _install(
        self,
        route: Route,
        group: int,
        keys: Sequence[str],
        blocks: Mapping[str, npt.NDArray[np.float32]],
        policy: NonFinitePolicy,
    ) -> None:
        """Install ``keys`` on ``group`` in requests of at most ``install_bytes_max`` bytes of
        values (an Install is idempotent per key, so retrying or splitting it is safe)."""
        batch: list[shard_pb.KeyTensor] = []
        held = 0

        async def send() -> None:
            request = api.InstallRequest(
                install=shard_pb.InstallKeys(
                    model=route.spec.name,
                    optimizer_json=route.spec.optimizer_json,
                    non_finite_policy=int(policy),  # type: ignore[arg-type]
                    num_shards=route.spec.num_shards,
                    keys=batch,
                    sync_mode=int(route.spec.sync_mode),  # type: ignore[arg-type]
                    staleness_bound=route.spec.staleness_bound,
                )
            )
            await self._call_group(
                route, group, lambda stub, timeout_s: stub.Install(request, timeout=timeout_s)
            )

        for key in keys:
            data = blocks[key].tobytes()
            if batch and held + len(data) > self.install_bytes_max:
                await send()
                batch, held = [], 0
            batch.append(
                shard_pb.KeyTensor(key=key, tensor=shard_pb.Tensor(dtype=shard_pb.D_TYPE_FLOAT32, data=data))
            )
            held += len(data)
        if batch:
            await send()

    # ---- push -----------------------------------------------------------------------------

    async def push(
        self, model: str, grads: Mapping[str, npt.NDArray[Any]], *, step: int = 0
    ) -> dict[int, GroupPushResult]:
        """Push the gradients of some or all leaves (leaf path -> array of the leaf's element
        count, cast to float32); one client-streaming Push per store group, in parallel.
        ``step``: for a BSP model, the step the gradient is for (the step its pull returned);
        leaves left out of a BSP push are sent as zeros.
        A BSP/SSP push from a client the group does not know as a worker yet (it just joined)
        is retried within the deadline.
        Returns each group's acknowledgement; raises ``PushFailedError`` when some group did
        not acknowledge (it says which parts were applied, refused or of unknown outcome),
        ``ValueError`` for a leaf the model lacks or an array of the wrong size."""
        route = await self._route(model)
        blocks: dict[str, npt.NDArray[np.float32]] = {}
        for path, array in grads.items():
            try:
                blocks.update(route.layout.split(path, np.ascontiguousarray(array, dtype="<f4")))
            except KeyError as exc:
                raise ValueError(str(exc.args[0])) from None
        if route.spec.sync_mode == SyncMode.BSP:
            # A BSP step of a shard completes once every worker pushed to it: a leaf left out
            # gets a zero gradient, as in single-process training, rather than stall the step.
            for placement in route.layout.keys:
                if placement.key not in blocks:
                    blocks[placement.key] = np.zeros(placement.elements, np.float32)
        if self.gradient_dtype != "float32":
            wire = _WIRE_DTYPES[self.gradient_dtype][0]
            blocks = {key: block.astype(wire) for key, block in blocks.items()}
        acknowledged: dict[int, GroupPushResult] = {}
        errors: dict[int, ClientError] = {}
        todo = blocks
        while todo:
            by_group = blocks_by_group(route, todo)
            groups = sorted(by_group)
            parts = {group: self._push_parts(route, group, by_group[group]) for group in groups}  # may refuse
            outcomes = await asyncio.gather(
                *(self._push_group(route, group, parts[group], step) for group in groups),
                return_exceptions=True,
            )
            todo = {}
            for group, outcome in zip(groups, outcomes, strict=True):
                if isinstance(outcome, GroupPushResult):
                    acknowledged[group] = outcome
                elif isinstance(outcome, _Moved):
                    if outcome.acknowledged is not None:
                        acknowledged[group] = outcome.acknowledged
                    todo.update(outcome.blocks)
                elif isinstance(outcome, ClientError):
                    errors[group] = outcome
                else:
                    raise outcome
            if todo:
                # Refused as moved: not applied anywhere. Where the coordinator now puts them,
                # they go as new pushes (new sequences).
                self.reroutes += 1
                try:
                    route = await self._moved_route(model, route, todo)
                except ClientError as exc:
                    errors[min(blocks_by_group(route, todo))] = exc
                    break
        if errors:
            raise PushFailedError(acknowledged, errors)
        return acknowledged

    def _push_parts(
        self, route: Route, group: int, blocks: Mapping[str, npt.NDArray[np.float32]]
    ) -> list[dict[str, npt.NDArray[np.float32]]]:
        """``blocks`` in parts of at most ``push_bytes_max`` bytes (one part when it fits).
        Under BSP a worker pushes once per step and shard, so a BSP part holds whole shards
        (a shard over the bound is refused: give the model more shards)."""
        units: list[dict[str, npt.NDArray[np.float32]]]
        if route.spec.sync_mode == SyncMode.BSP:
            by_shard: dict[int, dict[str, npt.NDArray[np.float32]]] = {}
            for key, block in blocks.items():
                by_shard.setdefault(route.layout.placement(key).shard, {})[key] = block
            units = [by_shard[shard] for shard in sorted(by_shard)]
        else:
            units = [{key: block} for key, block in blocks.items()]
        parts: list[dict[str, npt.NDArray[np.float32]]] = [{}]
        held = 0
        for unit in units:
            nbytes = sum(block.nbytes for block in unit.values())
            if route.spec.sync_mode == SyncMode.BSP and nbytes > self.push_bytes_max:
                shard = route.layout.placement(next(iter(unit))).shard
                raise ValueError(
                    f"BSP push to store group {group}: shard {shard} of model {route.spec.name!r} carries "
                    f"{nbytes} bytes, over {self.push_bytes_max} per push; register the model with more "
                    "shards (num_shards) so that no shard holds that much"
                )
            if parts[-1] and held + nbytes > self.push_bytes_max:
                parts.append({})
                held = 0
            parts[-1].update(unit)
            held += nbytes
        return parts

    async def _push_group(
        self, route: Route, group: int, parts: list[dict[str, npt.NDArray[np.float32]]], step: int
    ) -> GroupPushResult:
        """The parts (disjoint keys: each is its own exactly-once push) over the lanes, one
        after the other within a lane; ``_Moved`` when the group refused some because their
        keys moved away (with every part not applied)."""
        lanes = min(self.push_lanes if route.spec.sync_mode == SyncMode.ASYNC else 1, len(parts))
        if lanes == 1:
            return await self._push_lane(route, group, parts, step, 0)
        outcomes = await asyncio.gather(
            *(self._push_lane(route, group, parts[lane::lanes], step, lane) for lane in range(lanes)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, _Moved):
                raise outcome
        results = [o for o in outcomes if isinstance(o, GroupPushResult)]
        moved = [o for o in outcomes if isinstance(o, _Moved)]
        results += [m.acknowledged for m in moved if m.acknowledged is not None]
        latest = max(results, key=lambda r: r.result.step) if results else None
        if moved:
            raise _Moved(latest, {key: block for m in moved for key, block in m.blocks.items()})
        assert latest is not None
        return latest

    async def _push_lane(
        self, route: Route, group: int, parts: list[dict[str, npt.NDArray[np.float32]]], step: int, lane: int
    ) -> GroupPushResult:
        result: GroupPushResult | None = None
        for index, part in enumerate(parts):
            try:
                result = await self._push_part(route, group, part, step, lane)
            except StoreRefusedError as exc:
                if exc.code != ErrorCode.WRONG_GROUP:
                    raise
                rest = {key: block for later in parts[index:] for key, block in later.items()}
                raise _Moved(result, rest) from None
        assert result is not None
        return result

    async def _push_part(
        self,
        route: Route,
        group: int,
        blocks: Mapping[str, npt.NDArray[np.float32]],
        step: int,
        lane: int = 0,
    ) -> GroupPushResult:
        header, piece_messages = self._push_messages(route, blocks)
        header.step = step
        group_state = self._group(group)
        state: _Lane = group_state if lane == 0 else group_state.lanes.setdefault(lane, _Lane())
        async with state.lock:
            state.sequence += 1
            sequence = state.sequence
            header.client_id = self.client_id if lane == 0 else f"{self.client_id}~lane{lane}"
            header.sequence = sequence
            messages = [header.SerializeToString(), *piece_messages]
            attempts = 0

            def call(stub: api_grpc.StoreStub, timeout_s: float) -> Awaitable[api.PushResponse]:
                nonlocal attempts
                attempts += 1
                response: Awaitable[api.PushResponse] = stub.Push(iter(messages), timeout=timeout_s)
                return response

            response = await self._call_group(route, group, call, wait_codes=_WAIT_FOR_MEMBERSHIP)
        result = decode_result(response.result.SerializeToString())
        return GroupPushResult(group, sequence, result, response.merged_pushes, attempts)

    def _push_messages(
        self, route: Route, blocks: Mapping[str, npt.NDArray[np.float32]]
    ) -> tuple[api.PushRequest, list[bytes]]:
        """The stream: a header message (its client id, sequence and step are set by the
        caller), then messages of about ``piece_bytes`` bytes, framed by hand straight from
        the blocks (``paramstore._piece_wire``), each key's pieces one after the other; built
        once, resent as they are on a retry."""
        header = api.PushRequest(model=route.spec.name, config_number=route.config_number)
        dtype = _WIRE_DTYPES[self.gradient_dtype][1]
        pieces: list[Piece] = []
        for key, block in blocks.items():
            data = np.ascontiguousarray(block).reshape(-1).view(np.uint8).data
            step_bytes = block.itemsize * max(1, self.piece_bytes // block.itemsize)
            for start in range(0, data.nbytes, step_bytes) if data.nbytes else range(1):
                pieces.append(Piece(key, dtype, data[start : start + step_bytes]))
        return header, encode_push_pieces(pieces, self.piece_bytes)

    # ---- pull -----------------------------------------------------------------------------

    async def pull(self, model: str) -> dict[str, npt.NDArray[np.float32]]:
        """Every leaf of ``model`` (leaf path -> float32 array of the leaf's shape); each
        group's part is a linearizable read at its leader."""
        leaves, _ = await self.pull_step(model)
        return leaves

    async def pull_step(
        self, model: str, *, min_step: int = 0, worker_id: str = ""
    ) -> tuple[dict[str, npt.NDArray[np.float32]], int]:
        """``pull``, and the model's step the weights are of (the smallest over the groups).
        BSP: with ``min_step`` every group answers once it completed that many steps. SSP:
        with ``worker_id`` a group answers once that worker is within the staleness bound.
        Waits are retried until the client's deadline."""
        route = await self._route(model)
        while True:
            outcomes = await asyncio.gather(
                *(
                    self._pull_group(route, group, keys, min_step, worker_id)
                    for group, keys in route.keys_by_group.items()
                ),
                return_exceptions=True,
            )
            moved = _moved_groups(route, outcomes)
            if not moved:
                break
            self.reroutes += 1  # some keys moved away: pull everything again where they are now
            route = await self._moved_route(model, route, [k for g in moved for k in route.keys_by_group[g]])
        parts = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        blocks: dict[str, npt.NDArray[np.float32]] = {}
        steps = []
        for part, group_step in parts:
            blocks.update(part)
            steps.append(group_step)
        leaves: dict[str, npt.NDArray[np.float32]] = {}
        for leaf in route.spec.leaves:
            keys = route.layout.keys_of_leaf(leaf.path)
            leaves[leaf.path] = route.layout.join(leaf.path, {p.key: blocks[p.key] for p in keys})
        return leaves, min(steps, default=0)

    async def _pull_group(
        self, route: Route, group: int, keys: Sequence[str], min_step: int, worker_id: str
    ) -> tuple[dict[str, npt.NDArray[np.float32]], int]:
        """``keys`` of ``group``, in calls of at most ``pull_bytes_max`` bytes (a failed
        call is asked again whole)."""
        batches: list[list[str]] = [[]]
        held = 0
        for key in keys:
            nbytes = 4 * route.layout.placement(key).elements
            if batches[-1] and held + nbytes > self.pull_bytes_max:
                batches.append([])
                held = 0
            batches[-1].append(key)
            held += nbytes
        blocks: dict[str, npt.NDArray[np.float32]] = {}
        step = 0
        for index, batch in enumerate(batches):
            request = api.PullRequest(
                model=route.spec.name,
                keys=batch,
                serializable=self.follower_reads,
                min_step=min_step,
                worker_id=worker_id,
                wait_ms=max(1, int(self.attempt_timeout_s * 900)),  # answer before the attempt times out
            )

            async def call(
                stub: api_grpc.StoreStub, timeout_s: float, request: api.PullRequest = request
            ) -> tuple[dict[str, list[bytes | memoryview]], int]:
                pieces: dict[str, list[bytes | memoryview]] = {}
                first_step: int | None = None
                # Raw bytes (see RawTensorStoreStub): the pieces stay slices of what grpcio received.
                async for raw in stub.Pull(request, timeout=timeout_s):
                    try:
                        message_step, message_pieces = parse_pull_response(raw)
                    except DecodeError as exc:
                        raise ClientError(
                            f"store group {group} sent a malformed pull response: {exc}"
                        ) from None
                    if first_step is None:
                        first_step = message_step
                    for piece in message_pieces:
                        if piece.dtype != shard_pb.D_TYPE_FLOAT32:
                            raise ClientError(
                                f"store group {group} sent key {piece.key!r} as dtype {piece.dtype}, "
                                "expected float32"
                            )
                        pieces.setdefault(piece.key, []).append(piece.data)
                return pieces, first_step or 0

            if self.follower_reads:
                pieces, batch_step = await self._call_any_member(route.members[group], group, call)
            else:
                pieces, batch_step = await self._call_group(route, group, call)
            step = batch_step if index == 0 else min(step, batch_step)
            for key, data in pieces.items():
                blocks[key] = np.frombuffer(b"".join(data) if len(data) > 1 else data[0], dtype="<f4")
        missing = [key for key in keys if key not in blocks]
        if missing:
            raise ClientError(f"store group {group} sent no weights for {len(missing)} key(s): {missing[:5]}")
        return blocks, step

    # ---- worker membership ----------------------------------------------------------------

    async def wait_for_worker(
        self, model: str, worker_id: str, *, present: bool = True, min_workers: int = 0
    ) -> None:
        """Wait (within the deadline) until every store group holding keys of ``model`` has
        ``worker_id`` among the model's workers (``present=False``: until none has), and at
        least ``min_workers`` workers. The groups learn workers from the coordinator's leases
        through their logs, so this is what a BSP/SSP worker waits for after joining, before
        its first pull (``min_workers``: a start barrier for a fixed set of workers)."""
        route = await self._route(model)
        deadline = time.monotonic() + self.deadline_s
        backoff_s = self.backoff_initial_s
        waiting = set(route.keys_by_group)
        while waiting:
            for group in sorted(waiting):
                workers = await self._group_workers(route, group, model)
                if workers is not None and (worker_id in workers) == present and len(workers) >= min_workers:
                    waiting.discard(group)
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    f"store group(s) {sorted(waiting)} did not {'add' if present else 'remove'} worker "
                    f"{worker_id!r} of model {model!r} within {self.deadline_s:.1f} s"
                )
            await asyncio.sleep(backoff_s)
            backoff_s = min(self.backoff_max_s, backoff_s * 2)

    async def _group_workers(self, route: Route, group: int, model: str) -> set[str] | None:
        """The model's workers on ``group`` as its most advanced answering member applied
        them (an applied membership is committed); None when no member answered."""
        answers: list[tuple[int, set[str]]] = []
        for address in route.members[group]:
            try:
                status = await self._stub(address).Status(api.StatusRequest(), timeout=self.attempt_timeout_s)
            except grpc.aio.AioRpcError:
                continue
            for item in status.models:
                if item.name == model:
                    answers.append((int(status.applied_index), set(item.workers)))
        if not answers:
            return None
        return max(answers, key=lambda answer: answer[0])[1]

    # ---- routing --------------------------------------------------------------------------

    async def _route(self, model: str) -> Route:
        route = self._routes.get(model)
        if route is None:
            route = route_of(await self.coordinator.config(), model)
            self._routes[model] = route
        return route

    async def _moved_route(
        self, model: str, stale: Route, keys: Mapping[str, object] | Sequence[str]
    ) -> Route:
        """After a group refused ``keys`` as moved (WRONG_GROUP): the coordinator's newest
        route, once it puts one of them on another group than ``stale`` did (a move is
        released at its old group before the coordinator's map changes, so the map may lag
        for a moment). Waits within the deadline; ``DeadlineExceededError`` past it."""
        before = {key: group for group, held in stale.keys_by_group.items() for key in held}
        deadline = time.monotonic() + self.deadline_s
        backoff_s = self.backoff_initial_s
        while True:
            route = route_of(await self.coordinator.config(), model)
            self._routes[model] = route
            now = {key: group for group, held in route.keys_by_group.items() for key in held}
            if any(now.get(key) != before.get(key) for key in keys):
                return route
            if time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    f"model {model!r}: store group(s) refused {len(keys)} key(s) as moved away, and the "
                    f"coordinator still routes them there after {self.deadline_s:.1f} s (a shard move "
                    "that does not finish? see `paramstore cluster moves`)"
                )
            await asyncio.sleep(backoff_s)
            backoff_s = min(self.backoff_max_s, backoff_s * 2)

    def _group(self, group: int) -> _GroupState:
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = _GroupState()
        return state

    # ---- the retry loop -------------------------------------------------------------------

    async def call_group(
        self, group: int, members: Sequence[str], call: Callable[[api_grpc.StoreStub, float], Awaitable[_T]]
    ) -> _T:
        """``call`` at the leader of ``group`` (members' addresses), with this client's
        redirects, retries and deadline (the shard mover's calls use it)."""
        return await self._call_group(tuple(members), group, call)

    async def _call_group(
        self,
        route: Route | tuple[str, ...],
        group: int,
        call: Callable[[api_grpc.StoreStub, float], Awaitable[_T]],
        wait_codes: frozenset[ErrorCode] = frozenset(),
    ) -> _T:
        """``call`` at ``group``'s leader until it answers or refuses, within ``deadline_s``
        and ``attempts_max`` attempts; a refusal with one of ``wait_codes`` is retried at the
        same node after a back-off (a condition that the group's log will change)."""
        members = route if isinstance(route, tuple) else route.members[group]
        state = self._group(group)
        deadline = time.monotonic() + self.deadline_s
        last_error = "no attempt made"
        backoff_s = self.backoff_initial_s
        saw_deadline = False
        hops = 0  # attempts since the last back-off
        for _ in range(self.attempts_max):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            address = state.leader if state.leader in members else members[state.next_index % len(members)]
            try:
                return await call(self._stub(address), min(self.attempt_timeout_s, remaining))
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                last_error = f"{address}: {code.name}: {exc.details()}"
                metadata = dict(exc.trailing_metadata() or ())
                refused = _error_code(metadata)
                if refused in wait_codes:
                    hops = len(members)  # the leader answered: back off, then ask it again
                elif code not in _RETRYABLE:
                    raise StoreRefusedError(group, code, refused, exc.details() or "") from None
                saw_deadline = saw_deadline or code == grpc.StatusCode.DEADLINE_EXCEEDED
                hint = str(metadata.get(_LEADER_ADDRESS_METADATA, ""))
                if refused in wait_codes:
                    state.leader = address
                elif hint in members and hint != address:
                    state.leader = hint  # a redirect: go there at once
                else:
                    state.leader = None
                    state.next_index += 1
            self.retries += 1
            hops += 1
            if hops < len(members):
                continue  # try the others before waiting: one of them may lead already
            hops = 0
            await asyncio.sleep(
                min(backoff_s * self._rng.uniform(0.5, 1.0), max(0.0, deadline - time.monotonic()))
            )
            backoff_s = min(self.backoff_max_s, backoff_s * 2)
        if saw_deadline:
            raise DeadlineExceededError(
                f"store group {group}: no answer within {self.deadline_s:.1f} s; outcome unknown "
                f"({last_error})"
            )
        raise ClusterUnavailableError(
            f"cannot reach store group {group}'s leader at {','.join(members)} (last error: {last_error})"
        )

    async def _call_any_member(
        self, members: tuple[str, ...], group: int, call: Callable[[api_grpc.StoreStub, float], Awaitable[_T]]
    ) -> _T:
        """``call`` at the members in turn, starting at the next one round robin (a follower
        read): a member that does not answer is skipped; after a full round, a back-off.
        Bounded by ``deadline_s`` and ``attempts_max``."""
        deadline = time.monotonic() + self.deadline_s
        backoff_s = self.backoff_initial_s
        last_error = "no attempt made"
        for attempt in range(self.attempts_max):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            address = members[self._next_reader % len(members)]
            self._next_reader += 1
            try:
                return await call(self._stub(address), min(self.attempt_timeout_s, remaining))
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRYABLE:
                    refused = _error_code(dict(exc.trailing_metadata() or ()))
                    raise StoreRefusedError(group, exc.code(), refused, exc.details() or "") from None
                last_error = f"{address}: {exc.code().name}: {exc.details()}"
            self.retries += 1
            if (attempt + 1) % len(members) == 0:
                await asyncio.sleep(min(backoff_s, max(0.0, deadline - time.monotonic())))
                backoff_s = min(self.backoff_max_s, backoff_s * 2)
        raise ClusterUnavailableError(f"no member of store group {group} served the pull ({last_error})")

    def _stub(self, address: str) -> api_grpc.StoreStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            self._channels[address] = channel
            stub = RawTensorStoreStub(channel)
            self._stubs[address] = stub
        return stub


class _Moved(Exception):
    """A group refused a push part as moved (WRONG_GROUP): ``blocks`` were not applied;
    ``acknowledged``: the group's result for the parts before it, if any."""

    def __init__(
        self, acknowledged: GroupPushResult | None, blocks: dict[str, npt.NDArray[np.float32]]
    ) -> None:
        super().__init__(f"{len(blocks)} key(s) moved away")
        self.acknowledged = acknowledged
        self.blocks = blocks


def _moved_groups(route: Route, outcomes: Sequence[object]) -> list[int]:
    """The groups (in ``route.keys_by_group`` order, one outcome each) that refused as
    moved (WRONG_GROUP); any other failure is raised."""
    moved = []
    for group, outcome in zip(route.keys_by_group, outcomes, strict=True):
        if isinstance(outcome, StoreRefusedError) and outcome.code == ErrorCode.WRONG_GROUP:
            moved.append(group)
        elif isinstance(outcome, BaseException):
            raise outcome
    return moved


def _error_code(metadata: Mapping[str, Any]) -> ErrorCode | None:
    name = metadata.get(_ERROR_CODE_METADATA)
    if not name:
        return None
    try:
        return ErrorCode(shard_pb.ErrorCode.Value(str(name)))
    except ValueError:
        return None
