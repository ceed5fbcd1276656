"""The shard group's replicated state machine (sans-I/O: no clock, no randomness, no I/O).

``apply`` takes one committed log entry (an encoded ``ShardCommand``) and returns the
encoded ``ShardResult``. Every command checks everything first and only then changes state,
so a refused command leaves the state byte-identical (same ``snapshot()``).

**Exactly-once for merged pushes.** The leader merges concurrent pushes into one entry with
the summed gradient and the list of (client, sequence) pairs it covers. Per client the
dedup table keeps the last applied sequence and its result. For an entry:

* every pair was applied (each is its client's last sequence): acknowledged again without
  applying; the result says ``duplicate`` and carries each pair's stored result;
* some pairs were applied and some not: refused with ``PARTIAL_DUPLICATE``, nothing changes;
  ``replays`` lists the applied ones so the leader answers those and re-proposes the rest;
* a pair older than its client's last sequence: refused with ``STALE_SEQUENCE``.

Why refuse partial duplicates rather than keep each client's gradient apart inside the entry
(so duplicates could be subtracted): per-client gradients multiply the replicated bytes by the
number of merged pushes, which undoes the point of merging, and float subtraction would not
give back the exact sum of the others. A partial duplicate only arises when a retry races
its original across a leader change, so the cost of one more entry is rare.

Refused pushes are not recorded in the dedup table (they changed nothing, and a retry after
the cause is fixed - e.g. the model was installed - may then apply). A push dropped under
the "skip" policy *is* recorded: it was consumed, and a retry must not apply it.

Reads (``pull``, ``step``, ``keys``) are not commands; the leader serves them from here
after a ReadIndex barrier.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from consensus.messages import Entry
from paramstore.coordinator import SyncMode
from paramstore.optim import OptimizerSpecError, optimizer_from_spec
from paramstore.shard import _moves, _snapshot
from paramstore.shard._codec import decode_result, encode_result
from paramstore.shard._dedup import DedupTable
from paramstore.shard._fences import Fences
from paramstore.shard._limits import ShardLimits
from paramstore.shard._model import KeyState, ModelState, initial_digest
from paramstore.shard._push_wire import KeyGradient, PushOp, WireTensor, parse_push_command
from paramstore.shard._sync import Barrier, SyncState
from paramstore.shard._tensors import DTYPE_NAMES, all_finite, decode_tensor
from paramstore.shard._types import (
    ClientSequence,
    ErrorCode,
    NonFinitePolicy,
    Rejected,
    Replay,
    ShardError,
    ShardResult,
)
from proto import shard_pb2 as pb

__all__ = ["ShardStateMachine"]


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _show(name: str, limit: int = 80) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "...")


class ShardStateMachine:
    """Weights, optimizer slots, step counts and the dedup table of one store group's shards.

    Every replica that applies the same entries holds the same state (and snapshot bytes).
    """

    def __init__(self, limits: ShardLimits | None = None) -> None:
        self.limits = limits or ShardLimits()
        self._models: dict[str, ModelState] = {}
        self._dedup = DedupTable(self.limits.dedup_clients_max)
        self._clock_ms = 0  # log time: the largest Push.now_ms applied (dedup ages by it)
        self._elements = 0  # weights of every key of every model
        self._fences = Fences(self.limits)  # shards released before their model came here
        # Called after every applied command (the store service wakes waiting pulls with it).
        self.listeners: list[Callable[[], None]] = []

    # ---- applying commands ------------------------------------------------------------------

    def apply(self, entry: Entry) -> bytes:
        """Apply one committed NORMAL entry; returns the encoded ``ShardResult``."""
        return self.apply_bytes(entry.data)

    def apply_bytes(self, data: bytes) -> bytes:
        try:
            result = self._apply(data)
        except Rejected as rejected:
            return encode_result(ShardResult(rejected.code, rejected.message, **rejected.fields))  # type: ignore[arg-type]
        for listener in self.listeners:
            listener()
        return result

    def _apply(self, data: bytes) -> bytes:
        if len(data) > self.limits.command_bytes_max:
            raise Rejected(
                ErrorCode.TOO_LARGE,
                f"command is {len(data)} bytes, over the maximum {self.limits.command_bytes_max}",
            )
        push = parse_push_command(data)  # the fast path: gradients viewed in the entry
        if push is not None:
            return self._push(push)
        command = pb.ShardCommand()
        try:
            command.ParseFromString(data)
        except DecodeError as exc:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, f"command does not decode: {exc}") from None
        kind = command.WhichOneof("op")
        if kind == "install_keys":
            return encode_result(self._install(command.install_keys))
        if kind == "push":
            return self._push(PushOp.from_proto(command.push))
        if kind == "set_workers":
            return encode_result(self._set_workers(command.set_workers))
        if kind == "release_shard":
            return encode_result(self._release(command.release_shard))
        if kind == "accept_shard":
            return encode_result(self._accept(command.accept_shard))
        if kind == "drop_shard":
            return encode_result(self._drop(command.drop_shard))
        raise Rejected(ErrorCode.INVALID_ARGUMENT, "command has no operation")

    # ---- InstallKeys ------------------------------------------------------------------------

    def _install(self, op: pb.InstallKeys) -> ShardResult:
        model, created = self._definition(op)
        if created:
            self._fences.attach(model)  # keys of a shard that moved away before are refused
        if len(op.keys) > self.limits.keys_per_model_max:
            raise Rejected(ErrorCode.TOO_LARGE, f"{len(op.keys)} keys, over {self.limits.keys_per_model_max}")
        new: list[tuple[str, npt.NDArray[Any], bytes]] = []
        seen: set[str] = set()
        for item in op.keys:
            self._check_name("key", item.key, self.limits.key_bytes_max)
            if item.key in seen:
                raise Rejected(ErrorCode.INVALID_ARGUMENT, f"key {_show(item.key)} is repeated")
            seen.add(item.key)
            if item.tensor.dtype != pb.D_TYPE_FLOAT32:
                raise Rejected(
                    ErrorCode.DTYPE_MISMATCH, f"initial values of {_show(item.key)} must be float32"
                )
            values = self._decode(item.key, item.tensor)
            if values.size > self.limits.key_elements_max:
                raise Rejected(
                    ErrorCode.TOO_LARGE,
                    f"key {_show(item.key)} has {values.size} elements, over {self.limits.key_elements_max}",
                )
            if not all_finite(values):
                raise Rejected(
                    ErrorCode.INVALID_ARGUMENT, f"initial values of {_show(item.key)} are not finite"
                )
            digest = initial_digest(item.tensor.data)
            existing = model.keys.get(item.key)
            if existing is None:
                moved = _moves.wrong_group(model, item.key)
                if moved is not None:
                    raise Rejected(*moved, keys=(item.key,))
                new.append((item.key, values, digest))
            elif existing.digest != digest or existing.elements != values.size:
                raise Rejected(
                    ErrorCode.SPEC_CONFLICT,
                    f"key {_show(item.key)} of model {_show(op.model)} was installed with other values",
                )
        held = len(model.keys)
        if held + len(new) > self.limits.keys_per_model_max:
            raise Rejected(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"model {_show(op.model)} would have {held + len(new)} keys, "
                f"over {self.limits.keys_per_model_max}",
            )
        added = sum(int(values.size) for _, values, _ in new)
        if self._elements + added > self.limits.elements_max:
            raise Rejected(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"{self._elements + added} elements in all, over {self.limits.elements_max}",
            )
        # ---- checked: change state
        if created:
            self._models[op.model] = model
            self._fences.forget(op.model)
        for key, values, digest in new:
            model.add_key(key, values, digest)
        self._elements += added
        return ShardResult(ErrorCode.OK, installed=len(new), step=model.step)

    def _definition(self, op: pb.InstallKeys) -> tuple[ModelState, bool]:
        """The model ``op`` defines: the one held here (refused when it differs), or a new one
        not added yet (True) that the caller adds once the whole command is checked."""
        self._check_name("model", op.model, self.limits.name_bytes_max)
        model = self._models.get(op.model)
        optimizer_json, policy, sync_mode = self._check_definition(op)
        if model is None:
            if len(self._models) >= self.limits.models_max:
                raise Rejected(ErrorCode.RESOURCE_EXHAUSTED, f"{len(self._models)} models, the maximum")
            model = ModelState(
                op.model,
                optimizer_from_spec(json.loads(optimizer_json)),
                optimizer_json,
                policy,
                op.num_shards,
            )
            model.sync = SyncState(sync_mode, op.staleness_bound)
            return model, True
        differences = [
            what
            for what, same in (
                ("optimizer", model.optimizer_json == optimizer_json),
                ("non-finite policy", model.policy == policy),
                ("num_shards", model.num_shards == op.num_shards),
                ("sync mode", model.sync.mode == sync_mode),
                ("staleness bound", model.sync.staleness_bound == op.staleness_bound),
            )
            if not same
        ]
        if differences:
            raise Rejected(
                ErrorCode.SPEC_CONFLICT,
                f"model {_show(op.model)} exists with another {', '.join(differences)}",
            )
        return model, False

    def _check_definition(self, op: pb.InstallKeys) -> tuple[str, NonFinitePolicy, SyncMode]:
        if len(op.optimizer_json) > self.limits.optimizer_json_bytes_max:
            raise Rejected(ErrorCode.TOO_LARGE, "optimizer_json is over its maximum size")
        try:
            spec = json.loads(op.optimizer_json)
            optimizer = optimizer_from_spec(spec)
        except (ValueError, OptimizerSpecError) as exc:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, f"optimizer_json: {exc}") from None
        if int(op.non_finite_policy) not in tuple(NonFinitePolicy):
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "non_finite_policy must be REJECT or SKIP")
        if not 1 <= op.num_shards <= self.limits.num_shards_max:
            raise Rejected(
                ErrorCode.INVALID_ARGUMENT, f"num_shards must be 1 to {self.limits.num_shards_max}"
            )
        if int(op.sync_mode) not in (0, *tuple(SyncMode)):
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "sync_mode must be BSP, SSP or ASYNC")
        sync_mode = SyncMode(op.sync_mode) if op.sync_mode else SyncMode.ASYNC
        if op.staleness_bound and sync_mode != SyncMode.SSP:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "a staleness bound is for SSP models only")
        if op.staleness_bound > self.limits.staleness_bound_max:
            raise Rejected(
                ErrorCode.INVALID_ARGUMENT,
                f"staleness_bound must be at most {self.limits.staleness_bound_max}",
            )
        return _canonical_json(optimizer.spec()), NonFinitePolicy(op.non_finite_policy), sync_mode

    # ---- Push -------------------------------------------------------------------------------

    def check_push(self, op: PushOp) -> ShardResult | None:
        """What applying ``op`` now would answer, without changing anything: the refusal, or
        the duplicate acknowledgement; None when it would be applied (or skipped under the
        "skip" policy). The leader checks a push with it before merging it into an entry."""
        try:
            checked = self._check_push(op)
        except Rejected as rejected:
            return ShardResult(rejected.code, rejected.message, **rejected.fields)  # type: ignore[arg-type]
        if isinstance(checked, bytes):
            return decode_result(checked)
        return None

    def _push(self, op: PushOp) -> bytes:
        checked = self._check_push(op)
        if isinstance(checked, bytes):
            return checked
        model, covers, gradients, non_finite = checked
        # ---- checked: change state
        now_ms = self._clock_ms = self._log_time(op)
        self._dedup.forget(self._forgettable(covers, now_ms))
        sync = model.sync
        if non_finite:
            model.skipped_pushes += 1
            result = ShardResult(
                ErrorCode.OK,
                f"skipped: the gradient of {len(non_finite)} key(s) holds NaN or infinity",
                step=model.step,
                skipped=True,
                keys=tuple(non_finite[: self.limits.reported_keys_max]),
            )
        elif sync.mode == SyncMode.BSP:
            for key, grads in gradients:
                model.barrier(key).gather(key, grads)
            model.applied_pushes += len(covers)
        else:
            for key, grads in gradients:
                state = model.keys[key]
                model.optimizer.apply(state.weights, grads, state.slots, state.step)
                state.step += 1
            model.step += 1
            model.applied_pushes += len(covers)
        if sync.mode == SyncMode.SSP:
            for cover in covers:
                if cover.client_id in sync.clocks:
                    sync.clocks[cover.client_id] += 1
        if sync.mode == SyncMode.BSP:
            touched = {id(b): b for b in (model.barrier(key) for key, _ in gradients)}.values()
            for barrier in touched:
                barrier.pushed.update(cover.client_id for cover in covers)
                if not non_finite:
                    barrier.gathered_pushes += len(covers)
            self._complete_barriers(model, touched)
        if not non_finite:
            result = ShardResult(ErrorCode.OK, step=model.step)
        encoded = encode_result(result)
        for cover in covers:
            self._dedup.record(cover.client_id, cover.sequence, encoded, now_ms)
        return encoded

    def _log_time(self, op: PushOp) -> int:
        return max(self._clock_ms, op.now_ms)

    def _forgettable(self, covers: list[ClientSequence], now_ms: int) -> list[str]:
        """The clients to forget so that ``covers`` fit in the dedup table (none while there
        is room; fewer than needed when too few have been idle for long enough)."""
        covered = {c.client_id for c in covers}
        shortfall = self._dedup.shortfall(sum(1 for c in covered if self._dedup.get(c) is None))
        if not shortfall:
            return []
        idle = self._dedup.idle(now_ms, self.limits.dedup_idle_ms)
        return [client for client in idle if client not in covered][:shortfall]

    def _check_push(
        self, op: PushOp
    ) -> bytes | tuple[ModelState, list[ClientSequence], list[tuple[str, npt.NDArray[Any]]], list[str]]:
        """Every check of a push: raises ``Rejected``; the encoded duplicate result when every
        covered push was applied before; else what applying needs: the model, the covers, the
        checked gradients and the keys whose gradient is not finite."""
        model = self._model(op.model, Rejected)
        covers = self._check_covers(op.covers)
        # Routing is checked per key against this group's own log (a key whose shard moved
        # away is WRONG_GROUP, in ``_check_gradients``), after the dedup check: a retry of a
        # push applied before its shard moved is acknowledged, not refused.
        applied = [c for c in covers if self._dedup.last_sequence(c.client_id) == c.sequence]
        replays = tuple(Replay(c, self._stored_result(c)) for c in applied)
        if len(applied) == len(covers):
            return encode_result(ShardResult(ErrorCode.OK, step=model.step, duplicate=True, replays=replays))
        if applied:
            shown = ", ".join(
                f"({c.client_id!r}, {c.sequence})" for c in applied[: self.limits.reported_keys_max]
            )
            raise Rejected(
                ErrorCode.PARTIAL_DUPLICATE,
                f"{len(applied)} of the {len(covers)} covered pushes were applied before ({shown}); "
                "re-propose the others without them",
                replays=replays,
            )
        new_clients = sum(1 for c in covers if self._dedup.get(c.client_id) is None)
        if not self._dedup.room_for(new_clients):
            shortfall = self._dedup.shortfall(new_clients)
            if len(self._forgettable(covers, self._log_time(op))) < shortfall:
                raise Rejected(
                    ErrorCode.RESOURCE_EXHAUSTED,
                    f"the dedup table holds {len(self._dedup)} clients, the maximum, and fewer than "
                    f"{shortfall} have been idle for {self.limits.dedup_idle_ms} ms; "
                    f"no room for {new_clients} more",
                )
        gradients = self._check_gradients(model, op.gradients)
        self._check_sync(model, covers, op.step, [key for key, _ in gradients])
        non_finite = [key for key, grads in gradients if not all_finite(grads)]
        if non_finite and model.policy == NonFinitePolicy.REJECT:
            reported = tuple(non_finite[: self.limits.reported_keys_max])
            raise Rejected(
                ErrorCode.NON_FINITE,
                f"the gradient of {len(non_finite)} key(s) holds NaN or infinity "
                f"({', '.join(map(repr, reported))})",
                keys=reported,
            )
        return model, covers, gradients, non_finite

    def _check_sync(
        self, model: ModelState, covers: list[ClientSequence], step: int, keys: list[str]
    ) -> None:
        """BSP and SSP pushes come from the model's workers; a BSP push is for the step its
        shards are gathering, once per worker and shard."""
        sync = model.sync
        if not sync.needs_workers:
            return
        for cover in covers:
            if cover.client_id not in sync.clocks:
                raise Rejected(
                    ErrorCode.NOT_A_WORKER,
                    f"client {_show(cover.client_id)} is not a worker of model {_show(model.name)} on this "
                    f"group ({len(sync.clocks)} workers); workers join via the coordinator: retry shortly",
                )
        if sync.mode != SyncMode.BSP:
            return
        seen: set[int] = set()
        for key in keys:
            shard = model.shard_of(key)
            if shard in seen:
                continue
            seen.add(shard)
            barrier = model.sync.barriers.get(shard) or Barrier(step=model.step)  # (not kept: a check)
            if step != barrier.step:
                raise Rejected(
                    ErrorCode.WRONG_STEP,
                    f"push for step {step}, but shard {shard} of model {_show(model.name)} is gathering "
                    f"step {barrier.step}",
                )
            again = next((c.client_id for c in covers if c.client_id in barrier.pushed), None)
            if again is not None:
                raise Rejected(
                    ErrorCode.WRONG_STEP,
                    f"worker {_show(again)} already pushed for step {barrier.step} of model "
                    f"{_show(model.name)}; pull step {barrier.step + 1} first",
                )

    def _complete_barriers(self, model: ModelState, barriers: Iterable[Barrier]) -> None:
        """BSP: each complete barrier applies the mean of its gathered gradients to its
        shard's keys as one optimizer step (a key nobody pushed gets a zero gradient, as in
        single-process training); then the model's step is its slowest shard's."""
        workers = model.sync.clocks
        for barrier in barriers:
            if not barrier.complete(workers):
                continue
            if barrier.gathered_pushes:
                scale = np.float32(1.0 / barrier.gathered_pushes)
                for key in sorted(barrier.keys):
                    state = model.keys[key]
                    total = barrier.gathered.get(key)
                    grads = np.zeros(state.elements, np.float32) if total is None else total * scale
                    model.optimizer.apply(state.weights, grads, state.slots, state.step)
                    state.step += 1
            barrier.step += 1
            barrier.pushed.clear()
            barrier.gathered.clear()
            barrier.gathered_pushes = 0
        model.refresh_step()

    # ---- shard moves (``_moves``) ------------------------------------------------------------

    def _release(self, op: pb.ReleaseShard) -> ShardResult:
        self._check_name("model", op.model, self.limits.name_bytes_max)
        model = self._models.get(op.model)
        if model is None:
            return self._fences.fence(op)
        return _moves.release(model, op)

    def _accept(self, op: pb.AcceptShard) -> ShardResult:
        if op.model not in self._models and not op.definition.model and not op.keys and op.last:
            self._check_name("model", op.model, self.limits.name_bytes_max)
            return self._fences.lift(op)
        if op.definition.model != op.model or op.definition.keys:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "definition must name the model and carry no keys")
        model, created = self._definition(op.definition)
        if created:
            model.step = op.model_step
            self._fences.attach(model)
        result, delta = _moves.accept(
            model, op, self.limits.elements_max - self._elements, self.limits.key_elements_max
        )
        # ---- checked (accept changed the model only after its checks): record
        if created:
            self._models[op.model] = model
            self._fences.forget(op.model)
        self._elements += delta
        return result

    def _drop(self, op: pb.DropShard) -> ShardResult:
        model = self._models.get(op.model)
        if model is None:
            return ShardResult(ErrorCode.OK, f"no model {_show(op.model)} here: nothing to drop")
        result, delta = _moves.drop(model, op)
        self._elements += delta
        return result

    def released_shard(self, model: str, shard: int, move_id: int) -> tuple[ModelState, dict[str, KeyState]]:
        """The model and the frozen keys of ``shard`` as released by ``move_id`` (read-only
        use: the mover reads them to send to the shard's new group). ``ShardError`` when the
        shard was not released by that move here, or its state was dropped already."""
        state = self._model(model, ShardError)
        moves = state.moves.get(shard)
        if moves is None or moves.released_move != move_id or moves.released_dropped:
            raise ShardError(
                ErrorCode.WRONG_GROUP,
                f"shard {shard} of model {_show(model)} holds no state of move {move_id} here",
            )
        return state, moves.released_keys

    # ---- SetWorkers -------------------------------------------------------------------------

    def _set_workers(self, op: pb.SetWorkers) -> ShardResult:
        model = self._model(op.model, Rejected)
        workers = list(op.workers)
        if len(workers) > self.limits.workers_per_model_max:
            raise Rejected(
                ErrorCode.TOO_LARGE, f"{len(workers)} workers, over {self.limits.workers_per_model_max}"
            )
        for worker in workers:
            self._check_name("worker id", worker, self.limits.name_bytes_max)
        if workers != sorted(set(workers)):
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "workers must be sorted and unique")
        sync = model.sync
        if op.config_number <= sync.workers_config:
            return ShardResult(
                ErrorCode.OK,
                f"config {op.config_number} is not newer than {sync.workers_config}: ignored",
                step=model.step,
            )
        # ---- checked: change state
        sync.workers_config = op.config_number
        sync.set_workers(workers)
        if sync.mode == SyncMode.BSP:
            for barrier in sync.barriers.values():  # one who left and comes back pushes again
                barrier.pushed.intersection_update(workers)
            self._complete_barriers(model, list(sync.barriers.values()))
        return ShardResult(ErrorCode.OK, step=model.step)

    def _check_covers(self, covers: Iterable[ClientSequence]) -> list[ClientSequence]:
        pairs = [ClientSequence(c.client_id, c.sequence) for c in covers]
        if not pairs:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "a push covers at least one (client, sequence)")
        if len(pairs) > self.limits.covers_per_push_max:
            raise Rejected(
                ErrorCode.TOO_LARGE, f"{len(pairs)} covered pushes, over {self.limits.covers_per_push_max}"
            )
        seen: set[str] = set()
        for pair in pairs:
            self._check_name("client_id", pair.client_id, self.limits.name_bytes_max)
            if pair.sequence < 1:
                raise Rejected(
                    ErrorCode.INVALID_ARGUMENT, f"client {_show(pair.client_id)}: sequence must be >= 1"
                )
            if pair.client_id in seen:
                raise Rejected(
                    ErrorCode.INVALID_ARGUMENT,
                    f"client {_show(pair.client_id)} is covered twice "
                    "(at most one push per client per entry)",
                )
            seen.add(pair.client_id)
            last = self._dedup.last_sequence(pair.client_id)
            if pair.sequence < last:
                raise Rejected(
                    ErrorCode.STALE_SEQUENCE,
                    f"sequence {pair.sequence} of client {_show(pair.client_id)} is older than its last "
                    f"applied push {last}",
                )
        return pairs

    def _stored_result(self, cover: ClientSequence) -> bytes:
        entry = self._dedup.get(cover.client_id)
        assert entry is not None
        return entry.last_result

    def _check_gradients(
        self, model: ModelState, gradients: Iterable[KeyGradient]
    ) -> list[tuple[str, npt.NDArray[Any]]]:
        items = list(gradients)
        if not items:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "a push carries at least one gradient")
        if len(items) > self.limits.keys_per_push_max:
            raise Rejected(
                ErrorCode.TOO_LARGE, f"{len(items)} gradients, over {self.limits.keys_per_push_max}"
            )
        checked: list[tuple[str, npt.NDArray[Any]]] = []
        seen: set[str] = set()
        for item in items:
            state = model.keys.get(item.key)
            if state is None:
                moved = _moves.wrong_group(model, item.key)
                if moved is not None:
                    raise Rejected(*moved, keys=(item.key,))
                raise Rejected(
                    ErrorCode.UNKNOWN_KEY,
                    f"model {_show(model.name)} has no key {_show(item.key)}",
                    keys=(item.key,),
                )
            if item.key in seen:
                raise Rejected(
                    ErrorCode.INVALID_ARGUMENT, f"key {_show(item.key)} is repeated", keys=(item.key,)
                )
            seen.add(item.key)
            if item.tensor.dtype not in DTYPE_NAMES:
                raise Rejected(
                    ErrorCode.DTYPE_MISMATCH,
                    f"gradient of {_show(item.key)}: dtype must be float32, float16 or bfloat16",
                    keys=(item.key,),
                )
            grads = self._decode(item.key, item.tensor)
            if grads.size != state.elements:
                raise Rejected(
                    ErrorCode.SHAPE_MISMATCH,
                    f"gradient of {_show(item.key)} has {grads.size} elements, the key {state.elements}",
                    keys=(item.key,),
                )
            checked.append((item.key, grads))
        return checked

    # ---- shared checks ----------------------------------------------------------------------

    def _check_name(self, what: str, name: str, bytes_max: int) -> None:
        if not name:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, f"{what} must not be empty")
        size = len(name.encode("utf-8"))
        if size > bytes_max:
            raise Rejected(ErrorCode.TOO_LARGE, f"{what} {_show(name)} is {size} bytes, over {bytes_max}")

    def _decode(self, key: str, tensor: pb.Tensor | WireTensor) -> npt.NDArray[Any]:
        try:
            return decode_tensor(tensor)
        except ValueError as exc:
            raise Rejected(
                ErrorCode.INVALID_ARGUMENT, f"tensor of {_show(key)}: {exc}", keys=(key,)
            ) from None

    def _model(self, name: str, error: type[Rejected] | type[ShardError]) -> ModelState:
        model = self._models.get(name)
        if model is None:
            raise error(ErrorCode.UNKNOWN_MODEL, f"no model {_show(name)} on this group")
        return model

    # ---- reads ------------------------------------------------------------------------------

    def models(self) -> tuple[str, ...]:
        return tuple(sorted(self._models))

    def keys(self, model: str) -> tuple[str, ...]:
        """The keys of ``model`` held here, sorted."""
        return tuple(sorted(self._model(model, ShardError).keys))

    def step(self, model: str) -> int:
        """Pushes applied to ``model`` (skipped ones not counted)."""
        return self._model(model, ShardError).step

    def sync_state(self, model: str) -> SyncState:
        """The model's sync mode, workers and clocks (read-only use)."""
        return self._model(model, ShardError).sync

    def pull_ready(self, model: str, min_step: int, worker_id: str) -> bool:
        """Whether a pull may be answered now: BSP: ``min_step`` steps are complete; SSP:
        ``worker_id`` is within the staleness bound. ``ShardError`` for an unknown model."""
        state = self._model(model, ShardError)
        if state.sync.mode == SyncMode.BSP:
            return state.step >= min_step
        if state.sync.mode == SyncMode.SSP:
            return state.sync.ssp_may_read(worker_id)
        return True

    def applied_pushes(self, model: str) -> int:
        """Pushes applied to ``model``, each push of a merged entry counted (duplicates and
        pushes skipped as non-finite are not)."""
        return self._model(model, ShardError).applied_pushes

    def skipped_pushes(self, model: str) -> int:
        return self._model(model, ShardError).skipped_pushes

    def key_step(self, model: str, key: str) -> int:
        """Optimizer updates applied to ``key`` (the optimizer's count)."""
        return self._key(model, key).step

    def pull(self, model: str, keys: Iterable[str], copy: bool = True) -> dict[str, npt.NDArray[np.float32]]:
        """The flat float32 weights of ``keys``: copies, or (``copy=False``) read-only views
        that later pushes change in place. ``ShardError`` for an unknown model or key."""
        out: dict[str, npt.NDArray[np.float32]] = {}
        for key in keys:
            weights = self._key(model, key).weights
            if copy:
                out[key] = weights.copy()
            else:
                view = weights.view()
                view.flags.writeable = False
                out[key] = view
        return out

    def _key(self, model: str, key: str) -> KeyState:
        held = self._model(model, ShardError)
        state = held.keys.get(key)
        if state is None:
            moved = _moves.wrong_group(held, key)
            if moved is not None:
                raise ShardError(*moved)
            raise ShardError(ErrorCode.UNKNOWN_KEY, f"model {_show(model)} has no key {_show(key)}")
        return state

    # ---- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state; the same state always gives the same bytes."""
        return _snapshot.encode(self.limits, self._models, self._dedup, self._clock_ms, self._fences)

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises ``SnapshotFormatError`` (and
        changes nothing) for bytes that are not a consistent state taken under these limits."""
        models, dedup, clock_ms, fences = _snapshot.decode(data, self.limits)
        self._models, self._dedup, self._clock_ms, self._fences = models, dedup, clock_ms, fences
        self._elements = sum(_held_elements(model) for model in models.values())


def _held_elements(model: ModelState) -> int:
    """Elements of every key the model holds here: served, frozen (released) and staged."""
    total = sum(state.elements for state in model.keys.values())
    for moves in model.moves.values():
        total += sum(state.elements for state in moves.released_keys.values())
        total += sum(state.elements for state in moves.staged_keys.values())
    return total
