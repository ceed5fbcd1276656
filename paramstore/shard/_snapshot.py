"""The shard state machine's snapshot: a header message, then every array's raw bytes.

Layout: ``b"PSSHARD\\0"``, the format version (u32), the header's length (u64), all
big-endian; the ``ShardStateHeader`` message; then for each model (by name), each key (by
key): its weights, then its slots in the optimizer's slot order, then (a BSP model with
then, for each shard that moved (by shard), its released keys and its staged keys (by key),
each weights then slots, then the gathered sums of its released BSP barrier and of its
staged keys; then the gathered sums of each BSP barrier (by shard, by key); all float32
little-endian.
Format 5 added the fences (shards released before their model came here) to the header;
format 4 is read as a state without any.
Weights stay out of the protobuf message so that a snapshot is not bounded by protobuf's
2 GiB message limit and is written with one copy. No checksum: storage checksums snapshots.
"""

from __future__ import annotations

import json
import struct
import sys

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from paramstore.coordinator import SyncMode
from paramstore.optim import OptimizerSpecError, optimizer_from_spec
from paramstore.shard._dedup import DedupTable
from paramstore.shard._fences import Fences
from paramstore.shard._limits import ShardLimits
from paramstore.shard._model import KeyState, ModelState, ShardMoves
from paramstore.shard._sync import Barrier, SyncState
from paramstore.shard._types import NonFinitePolicy, SnapshotFormatError
from proto import shard_pb2 as pb

__all__ = ["SNAPSHOT_FORMAT_VERSION", "decode", "encode"]

SNAPSHOT_FORMAT_VERSION = 5
# Format 4 is format 5 without fences; it is read as a state without any.
_READABLE_VERSIONS = (4, 5)
_MAGIC = b"PSSHARD\x00"
_HEADER = struct.Struct(">8sIQ")
_F32_LE = np.dtype("<f4")
_F32_BYTES = 4


def _le(array: npt.NDArray[np.float32]) -> memoryview:
    if sys.byteorder != "little":
        array = array.astype(_F32_LE)
    return memoryview(array.data).cast("B")


def encode(
    limits: ShardLimits, models: dict[str, ModelState], dedup: DedupTable, clock_ms: int, fences: Fences
) -> bytes:
    header = pb.ShardStateHeader(limits_json=limits.to_json(), clock_ms=clock_ms)
    fences.encode(header)
    arrays: list[memoryview] = []
    for name in sorted(models):
        model = models[name]
        stored = header.models.add(
            name=name,
            optimizer_json=model.optimizer_json,
            non_finite_policy=int(model.policy),
            num_shards=model.num_shards,
            step=model.step,
            skipped_pushes=model.skipped_pushes,
            sync_mode=int(model.sync.mode),
            staleness_bound=model.sync.staleness_bound,
            workers_config=model.sync.workers_config,
            applied_pushes=model.applied_pushes,
        )
        for worker in sorted(model.sync.clocks):
            stored.workers.add(worker_id=worker, clock=model.sync.clocks[worker])
        for key in sorted(model.keys):
            state = model.keys[key]
            stored.keys.add(key=key, elements=state.elements, step=state.step, initial_digest=state.digest)
            arrays.append(_le(state.weights))
            arrays.extend(_le(state.slots[slot]) for slot in model.optimizer.slot_names)
        for shard in sorted(model.moves):
            moves = model.moves[shard]
            stored_shard = stored.shards.add(
                shard=shard,
                released_move=moves.released_move,
                released_dropped=moves.released_dropped,
                accepted_move=moves.accepted_move,
                staging_move=moves.staging_move,
                last_move=moves.last_move,
            )
            for into, held in (
                (stored_shard.released_keys, moves.released_keys),
                (stored_shard.staged_keys, moves.staged_keys),
            ):
                for key in sorted(held):
                    state = held[key]
                    into.add(key=key, elements=state.elements, step=state.step, initial_digest=state.digest)
                    arrays.append(_le(state.weights))
                    arrays.extend(_le(state.slots[slot]) for slot in model.optimizer.slot_names)
            if moves.released_barrier is not None:
                _encode_barrier(stored_shard.released_barrier, shard, moves.released_barrier, arrays)
            stored_shard.staged_gathered.extend(sorted(moves.staged_gathered))
            arrays.extend(_le(moves.staged_gathered[key]) for key in sorted(moves.staged_gathered))
        for shard in sorted(model.sync.barriers):
            _encode_barrier(stored.barriers.add(), shard, model.sync.barriers[shard], arrays)
    for client_id, entry in dedup.items():
        header.sessions.add(
            client_id=client_id,
            last_sequence=entry.last_sequence,
            last_result=entry.last_result,
            last_ms=entry.last_ms,
        )
    body = header.SerializeToString(deterministic=True)
    return b"".join([_HEADER.pack(_MAGIC, SNAPSHOT_FORMAT_VERSION, len(body)), body, *arrays])


def _encode_barrier(into: pb.StoredBarrier, shard: int, barrier: Barrier, arrays: list[memoryview]) -> None:
    into.shard = shard
    into.step = barrier.step
    into.pushed.extend(sorted(barrier.pushed))
    into.gathered_pushes = barrier.gathered_pushes
    into.gathered_keys.extend(sorted(barrier.gathered))
    arrays.extend(_le(barrier.gathered[key]) for key in sorted(barrier.gathered))


def decode(data: bytes, limits: ShardLimits) -> tuple[dict[str, ModelState], DedupTable, int, Fences]:
    if len(data) < _HEADER.size:
        raise SnapshotFormatError(f"snapshot of {len(data)} bytes is shorter than its header")
    magic, version, header_bytes = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise SnapshotFormatError(f"not a shard snapshot (magic {magic!r})")
    if version not in _READABLE_VERSIONS:
        raise SnapshotFormatError(
            f"snapshot format version {version}; this build reads {', '.join(map(str, _READABLE_VERSIONS))}"
        )
    offset = _HEADER.size + header_bytes
    if offset > len(data):
        raise SnapshotFormatError("snapshot is shorter than its header says")
    header = pb.ShardStateHeader()
    try:
        header.ParseFromString(data[_HEADER.size : offset])
    except DecodeError as exc:
        raise SnapshotFormatError(f"snapshot header does not decode: {exc}") from None
    if version < 5 and header.fences:
        raise SnapshotFormatError(f"a format {version} snapshot cannot hold fences")
    if header.limits_json != limits.to_json():
        raise SnapshotFormatError(
            "the snapshot was taken under other limits; every replica must run with the same ShardLimits "
            f"(snapshot: {header.limits_json}, here: {limits.to_json()})"
        )
    if len(header.models) > limits.models_max:
        raise SnapshotFormatError(f"{len(header.models)} models, over {limits.models_max}")
    names = [m.name for m in header.models]
    if names != sorted(set(names)):
        raise SnapshotFormatError("models are not sorted and unique")
    models: dict[str, ModelState] = {}
    elements_total = 0
    for stored in header.models:
        try:
            optimizer = optimizer_from_spec(json.loads(stored.optimizer_json))
        except (ValueError, OptimizerSpecError) as exc:
            raise SnapshotFormatError(f"model {stored.name!r}: optimizer_json: {exc}") from None
        if int(stored.non_finite_policy) not in tuple(NonFinitePolicy):
            raise SnapshotFormatError(f"model {stored.name!r}: unknown non-finite policy")
        if not 1 <= stored.num_shards <= limits.num_shards_max:
            raise SnapshotFormatError(f"model {stored.name!r}: num_shards {stored.num_shards} out of range")
        if len(stored.keys) > limits.keys_per_model_max:
            raise SnapshotFormatError(f"model {stored.name!r}: {len(stored.keys)} keys, over the maximum")
        keys = [k.key for k in stored.keys]
        if keys != sorted(set(keys)):
            raise SnapshotFormatError(f"model {stored.name!r}: keys are not sorted and unique")
        model = ModelState(
            stored.name,
            optimizer,
            stored.optimizer_json,
            NonFinitePolicy(stored.non_finite_policy),
            stored.num_shards,
            stored.step,
            stored.skipped_pushes,
        )
        model.sync = _decode_sync(stored, limits)
        model.applied_pushes = stored.applied_pushes
        reader = _ArrayReader(data, offset, limits, elements_total)
        for key in stored.keys:
            arrays = reader.read(key, 1 + len(optimizer.slot_names))
            slots = {slot: arrays[1 + index] for index, slot in enumerate(optimizer.slot_names)}
            model.keys[key.key] = KeyState(arrays[0], slots, key.step, key.initial_digest)
        model.moves = _decode_moves(stored, optimizer.slot_names, reader)
        _decode_barriers(stored, model, reader)
        offset, elements_total = reader.offset, reader.elements_total
        models[stored.name] = model
    if offset != len(data):
        raise SnapshotFormatError(f"{len(data) - offset} bytes after the last array")
    if len(header.sessions) > limits.dedup_clients_max:
        raise SnapshotFormatError(f"{len(header.sessions)} dedup clients, over the maximum")
    dedup = DedupTable(limits.dedup_clients_max)
    previous = None
    for session in header.sessions:
        if (previous is not None and session.client_id <= previous) or session.last_sequence < 1:
            raise SnapshotFormatError(
                f"dedup client {session.client_id!r} is out of order or has no sequence"
            )
        previous = session.client_id
        if session.last_ms > header.clock_ms:
            raise SnapshotFormatError(
                f"dedup client {session.client_id!r} was last seen at {session.last_ms} ms, "
                f"after the log time {header.clock_ms}"
            )
        dedup.record(session.client_id, session.last_sequence, session.last_result, session.last_ms)
    return models, dedup, header.clock_ms, Fences.decode(header, limits, set(models))


class _ArrayReader:
    """Reads the arrays section key by key, checking every bound on the way."""

    def __init__(self, data: bytes, offset: int, limits: ShardLimits, elements_total: int) -> None:
        self.data = data
        self.offset = offset
        self.limits = limits
        self.elements_total = elements_total

    def read(self, key: pb.StoredKey, arrays_per_key: int) -> npt.NDArray[np.float32]:
        """``arrays_per_key`` arrays of ``key``'s element count, as rows of a fresh array."""
        if key.elements > self.limits.key_elements_max:
            raise SnapshotFormatError(f"key {key.key!r}: {key.elements} elements, over the maximum")
        self.elements_total += key.elements
        if self.elements_total > self.limits.elements_max:
            raise SnapshotFormatError("more elements than elements_max")
        end = self.offset + key.elements * _F32_BYTES * arrays_per_key
        if end > len(self.data):
            raise SnapshotFormatError(f"snapshot ends inside the arrays of key {key.key!r}")
        arrays = np.frombuffer(
            self.data, dtype=_F32_LE, count=key.elements * arrays_per_key, offset=self.offset
        )
        self.offset = end
        return arrays.astype(np.float32).reshape(arrays_per_key, key.elements)

    def read_sum(self, key: str, elements: int) -> npt.NDArray[np.float32]:
        """One gathered gradient sum of ``elements`` (not counted as held elements)."""
        end = self.offset + elements * _F32_BYTES
        if end > len(self.data):
            raise SnapshotFormatError(f"snapshot ends inside the gathered sum of key {key!r}")
        values = np.frombuffer(self.data, dtype=_F32_LE, count=elements, offset=self.offset)
        self.offset = end
        return values.astype(np.float32)


def _decode_barrier(
    stored: pb.StoredModel, item: pb.StoredBarrier, keys: dict[str, KeyState], reader: _ArrayReader
) -> Barrier:
    where = f"model {stored.name!r} barrier of shard {item.shard}"
    if list(item.pushed) != sorted(set(item.pushed)) or list(item.gathered_keys) != sorted(
        set(item.gathered_keys)
    ):
        raise SnapshotFormatError(f"{where}: workers or keys are not sorted and unique")
    unknown = [key for key in item.gathered_keys if key not in keys]
    if unknown:
        raise SnapshotFormatError(f"{where}: sums of keys it does not hold ({unknown[:3]})")
    gathered = {key: reader.read_sum(key, keys[key].elements) for key in item.gathered_keys}
    return Barrier(set(keys), item.step, set(item.pushed), item.gathered_pushes, gathered)


def _decode_barriers(stored: pb.StoredModel, model: ModelState, reader: _ArrayReader) -> None:
    shards = [b.shard for b in stored.barriers]
    if shards != sorted(set(shards)) or any(shard >= stored.num_shards for shard in shards):
        raise SnapshotFormatError(f"model {stored.name!r}: barriers are not sorted, unique and in range")
    if shards and model.sync.mode != SyncMode.BSP:
        raise SnapshotFormatError(f"model {stored.name!r}: barriers outside BSP")
    by_shard: dict[int, dict[str, KeyState]] = {}
    for key, state in model.keys.items():
        by_shard.setdefault(model.shard_of(key), {})[key] = state
    for item in stored.barriers:
        model.sync.barriers[item.shard] = _decode_barrier(stored, item, by_shard.get(item.shard, {}), reader)
    if model.sync.mode == SyncMode.BSP and set(by_shard) - set(model.sync.barriers):
        raise SnapshotFormatError(f"model {stored.name!r}: shards with keys but no barrier")


def _decode_moves(
    stored: pb.StoredModel, slot_names: tuple[str, ...], reader: _ArrayReader
) -> dict[int, ShardMoves]:
    shards = [s.shard for s in stored.shards]
    if shards != sorted(set(shards)) or any(shard >= stored.num_shards for shard in shards):
        raise SnapshotFormatError(f"model {stored.name!r}: moved shards are not sorted, unique and in range")
    moves: dict[int, ShardMoves] = {}
    for item in stored.shards:
        held: list[dict[str, KeyState]] = []
        for keys in (item.released_keys, item.staged_keys):
            names = [k.key for k in keys]
            if names != sorted(set(names)):
                raise SnapshotFormatError(
                    f"model {stored.name!r} shard {item.shard}: keys are not sorted and unique"
                )
            states: dict[str, KeyState] = {}
            for key in keys:
                arrays = reader.read(key, 1 + len(slot_names))
                slots = {slot: arrays[1 + index] for index, slot in enumerate(slot_names)}
                states[key.key] = KeyState(arrays[0], slots, key.step, key.initial_digest)
            held.append(states)
        released_barrier = (
            _decode_barrier(stored, item.released_barrier, held[0], reader)
            if item.HasField("released_barrier")
            else None
        )
        unknown = [key for key in item.staged_gathered if key not in held[1]]
        if unknown or list(item.staged_gathered) != sorted(set(item.staged_gathered)):
            raise SnapshotFormatError(f"model {stored.name!r} shard {item.shard}: bad staged sums")
        staged_gathered = {key: reader.read_sum(key, held[1][key].elements) for key in item.staged_gathered}
        moves[item.shard] = ShardMoves(
            item.released_move,
            item.released_dropped,
            held[0],
            item.accepted_move,
            item.staging_move,
            held[1],
            released_barrier,
            staged_gathered,
            item.last_move,
        )
    return moves


def _decode_sync(stored: pb.StoredModel, limits: ShardLimits) -> SyncState:
    if int(stored.sync_mode) not in tuple(SyncMode):
        raise SnapshotFormatError(f"model {stored.name!r}: unknown sync mode {stored.sync_mode}")
    mode = SyncMode(stored.sync_mode)
    if len(stored.workers) > limits.workers_per_model_max:
        raise SnapshotFormatError(f"model {stored.name!r}: {len(stored.workers)} workers, over the maximum")
    workers = [w.worker_id for w in stored.workers]
    if workers != sorted(set(workers)):
        raise SnapshotFormatError(f"model {stored.name!r}: workers are not sorted and unique")
    return SyncState(
        mode,
        stored.staleness_bound,
        stored.workers_config,
        {w.worker_id: w.clock for w in stored.workers},
    )
