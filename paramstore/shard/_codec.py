"""Encoding commands for the shard group's log, and decoding their results.

The leader (and tests) build entries with ``encode_install`` / ``encode_push``; whoever
answers a client decodes the state machine's result with ``decode_result``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy.typing as npt

from paramstore.coordinator import SyncMode
from paramstore.shard._model import KeyState, ModelState
from paramstore.shard._push_wire import encode_push_command
from paramstore.shard._tensors import encode_tensor
from paramstore.shard._types import ClientSequence, ErrorCode, NonFinitePolicy, Replay, ShardResult
from proto import shard_pb2 as pb

__all__ = [
    "accept_parts",
    "decode_result",
    "encode_drop",
    "encode_install",
    "encode_push",
    "encode_release",
    "encode_result",
    "encode_set_workers",
]


def encode_install(
    model: str,
    optimizer: Mapping[str, Any],
    keys: Mapping[str, npt.NDArray[Any]],
    num_shards: int,
    non_finite_policy: NonFinitePolicy = NonFinitePolicy.REJECT,
    sync_mode: SyncMode = SyncMode.ASYNC,
    staleness_bound: int = 0,
) -> bytes:
    """An InstallKeys entry: ``keys`` maps each key to its initial values (float32)."""
    command = pb.ShardCommand(
        install_keys=pb.InstallKeys(
            model=model,
            optimizer_json=json.dumps(dict(optimizer), sort_keys=True),
            non_finite_policy=int(non_finite_policy),  # type: ignore[arg-type]
            num_shards=num_shards,
            keys=[pb.KeyTensor(key=key, tensor=encode_tensor(values)) for key, values in keys.items()],
            sync_mode=int(sync_mode),  # type: ignore[arg-type]
            staleness_bound=staleness_bound,
        )
    )
    return command.SerializeToString(deterministic=True)


def encode_push(
    model: str,
    covers: Iterable[tuple[str, int] | ClientSequence],
    gradients: Mapping[str, npt.NDArray[Any]],
    config_number: int = 0,
    step: int = 0,
    now_ms: int = 0,
) -> bytes:
    """A Push entry: the summed ``gradients`` of the pushes ``covers`` names (client, sequence);
    ``step``: the BSP step they are for; ``now_ms``: the proposing leader's clock (log
    time). Each gradient's bytes are copied once, into the
    result (``paramstore.shard._push_wire``)."""
    pairs = [c if isinstance(c, ClientSequence) else ClientSequence(*c) for c in covers]
    return encode_push_command(model, pairs, gradients, config_number=config_number, step=step, now_ms=now_ms)


def encode_set_workers(model: str, config_number: int, workers: Iterable[str]) -> bytes:
    """A SetWorkers entry: ``model``'s workers as of coordinator config ``config_number``."""
    command = pb.ShardCommand(
        set_workers=pb.SetWorkers(model=model, config_number=config_number, workers=sorted(set(workers)))
    )
    return command.SerializeToString(deterministic=True)


def encode_release(model: str, shard: int, move_id: int) -> bytes:
    command = pb.ShardCommand(release_shard=pb.ReleaseShard(model=model, shard=shard, move_id=move_id))
    return command.SerializeToString(deterministic=True)


def encode_drop(model: str, shard: int, move_id: int) -> bytes:
    command = pb.ShardCommand(drop_shard=pb.DropShard(model=model, shard=shard, move_id=move_id))
    return command.SerializeToString(deterministic=True)


def accept_parts(
    model: ModelState, shard: int, move_id: int, keys: Mapping[str, KeyState], part_bytes_max: int
) -> Iterator[pb.AcceptShard]:
    """``keys`` (a released shard's frozen state) as AcceptShard parts of about
    ``part_bytes_max`` tensor bytes each (a key is never split); the last part is marked, and
    there is always one even for a shard without keys. Every part carries the definition;
    a BSP shard's barrier (from ``model.moves``) goes with the keys and the last part."""
    definition = pb.InstallKeys(
        model=model.name,
        optimizer_json=model.optimizer_json,
        non_finite_policy=int(model.policy),  # type: ignore[arg-type]
        num_shards=model.num_shards,
        sync_mode=int(model.sync.mode),  # type: ignore[arg-type]
        staleness_bound=model.sync.staleness_bound,
    )

    def part() -> pb.AcceptShard:
        return pb.AcceptShard(
            model=model.name, shard=shard, move_id=move_id, definition=definition, model_step=model.step
        )

    moves = model.moves.get(shard)
    barrier = None if moves is None else moves.released_barrier
    current = part()
    held = 0
    for key in sorted(keys):
        state = keys[key]
        nbytes = state.weights.nbytes * (1 + len(state.slots))
        if held and held + nbytes > part_bytes_max:
            yield current
            current, held = part(), 0
        current.keys.append(
            pb.MovedKey(
                key=key,
                step=state.step,
                initial_digest=state.digest,
                weights=encode_tensor(state.weights),
                slots=[encode_tensor(state.slots[name]) for name in model.optimizer.slot_names],
            )
        )
        gathered = None if barrier is None else barrier.gathered.get(key)
        if gathered is not None:
            current.keys[-1].gathered.CopyFrom(encode_tensor(gathered))
        held += nbytes
    current.last = True
    if barrier is not None:
        current.barrier_step = barrier.step
        current.barrier_pushed.extend(sorted(barrier.pushed))
        current.barrier_gathered_pushes = barrier.gathered_pushes
    yield current


def encode_result(result: ShardResult) -> bytes:
    message = pb.ShardResult(
        code=int(result.code),  # type: ignore[arg-type]
        message=result.message,
        step=result.step,
        skipped=result.skipped,
        keys=list(result.keys),
        installed=result.installed,
        duplicate=result.duplicate,
        replays=[
            pb.Replay(
                push=pb.ClientSequence(client_id=r.push.client_id, sequence=r.push.sequence),
                result=r.result,
            )
            for r in result.replays
        ],
    )
    return message.SerializeToString(deterministic=True)


def decode_result(data: bytes) -> ShardResult:
    message = pb.ShardResult()
    message.ParseFromString(data)
    return ShardResult(
        code=ErrorCode(message.code),
        message=message.message,
        step=message.step,
        skipped=message.skipped,
        keys=tuple(message.keys),
        installed=message.installed,
        duplicate=message.duplicate,
        replays=tuple(
            Replay(ClientSequence(r.push.client_id, r.push.sequence), r.result) for r in message.replays
        ),
    )
