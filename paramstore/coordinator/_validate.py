"""Field checks shared by the command handlers. Each raises ``Rejected`` with a message that
says what was expected; none depends on anything but its arguments (replicas must agree)."""

from __future__ import annotations

import dataclasses
import json
import math

from paramstore.coordinator._limits import CoordinatorLimits
from paramstore.coordinator._types import (
    ErrorCode,
    GroupMember,
    ModelSpec,
    Rejected,
    SyncMode,
    canonical_json,
)

__all__ = ["DTYPES", "check_members", "check_name", "check_spec", "show"]

# The element types a leaf may have (numpy / ml_dtypes names).
DTYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
    }
)

_SHOWN_CHARS_MAX = 64
# JSON nesting and integer digits are bounded before parsing: the parser's own limits
# (recursion depth, int digits) depend on the interpreter's state and settings, which
# replicas need not share.
_JSON_DEPTH_MAX = 32
_JSON_INT_DIGITS_MAX = 40


def show(text: str) -> str:
    """``text`` quoted for an error message, cut short if long (messages stay small)."""
    if len(text) <= _SHOWN_CHARS_MAX:
        return repr(text)
    return repr(text[:_SHOWN_CHARS_MAX]) + f"... ({len(text)} chars)"


def check_name(what: str, value: str, bytes_max: int) -> None:
    """A non-empty identifier of at most ``bytes_max`` UTF-8 bytes."""
    if not value:
        raise Rejected(ErrorCode.INVALID_ARGUMENT, f"{what} must not be empty")
    size = len(value.encode())
    if size > bytes_max:
        raise Rejected(
            ErrorCode.TOO_LARGE, f"{what} {show(value)} is {size} bytes, over the maximum {bytes_max}"
        )


def check_members(members: tuple[GroupMember, ...], limits: CoordinatorLimits) -> tuple[GroupMember, ...]:
    """The members sorted by node id (the canonical form), after checking them."""
    if not 1 <= len(members) <= limits.group_members_max:
        raise Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"a group needs 1 to {limits.group_members_max} members, got {len(members)}",
        )
    node_ids = [member.node_id for member in members]
    if min(node_ids) < 1:
        raise Rejected(ErrorCode.INVALID_ARGUMENT, "node ids must be >= 1")
    if len(set(node_ids)) != len(node_ids):
        raise Rejected(ErrorCode.INVALID_ARGUMENT, f"node ids must be distinct, got {sorted(node_ids)}")
    for member in members:
        check_name(f"the address of node {member.node_id}", member.address, limits.address_bytes_max)
    return tuple(sorted(members, key=lambda member: member.node_id))


def _json_depth(text: str) -> int:
    depth = depth_max = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            depth_max = max(depth_max, depth)
        elif char in "]}":
            depth -= 1
    return depth_max


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _JSON_INT_DIGITS_MAX:
        raise ValueError(f"integer with more than {_JSON_INT_DIGITS_MAX} digits")
    return int(text)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def canonical_optimizer_json(text: str, limits: CoordinatorLimits) -> str:
    size = len(text.encode())
    if size > limits.optimizer_json_bytes_max:
        raise Rejected(
            ErrorCode.TOO_LARGE,
            f"optimizer spec is {size} bytes of JSON, over the maximum {limits.optimizer_json_bytes_max}",
        )
    if _json_depth(text) > _JSON_DEPTH_MAX:
        raise Rejected(
            ErrorCode.INVALID_ARGUMENT, f"optimizer spec nests deeper than {_JSON_DEPTH_MAX} levels"
        )
    try:
        value = json.loads(text, parse_int=_parse_int, parse_constant=_reject_constant)
    except ValueError as exc:
        raise Rejected(ErrorCode.INVALID_ARGUMENT, f"optimizer spec is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Rejected(
            ErrorCode.INVALID_ARGUMENT, f"optimizer spec must be a JSON object, got {type(value).__name__}"
        )
    return canonical_json(value)


def _check_leaves(spec: ModelSpec, limits: CoordinatorLimits) -> None:
    if not 1 <= len(spec.leaves) <= limits.leaves_max:
        raise Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"a model needs 1 to {limits.leaves_max} leaves, got {len(spec.leaves)}",
        )
    seen: set[str] = set()
    for leaf in spec.leaves:
        check_name("leaf path", leaf.path, limits.leaf_path_bytes_max)
        if leaf.path in seen:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, f"leaf path {show(leaf.path)} appears twice")
        seen.add(leaf.path)
        if len(leaf.shape) > limits.ndim_max:
            raise Rejected(
                ErrorCode.INVALID_ARGUMENT,
                f"leaf {show(leaf.path)} has {len(leaf.shape)} dimensions, over the maximum "
                f"{limits.ndim_max}",
            )
        if math.prod(leaf.shape) > limits.leaf_elements_max:
            raise Rejected(
                ErrorCode.TOO_LARGE,
                f"leaf {show(leaf.path)} has {math.prod(leaf.shape)} elements, over the maximum "
                f"{limits.leaf_elements_max}",
            )
        if leaf.dtype not in DTYPES:
            raise Rejected(
                ErrorCode.INVALID_ARGUMENT,
                f"leaf {show(leaf.path)} has dtype {show(leaf.dtype)}; expected one of {sorted(DTYPES)}",
            )


def check_spec(spec: ModelSpec, limits: CoordinatorLimits) -> ModelSpec:
    """The spec in canonical form (optimizer JSON canonical), after checking every field."""
    check_name("model name", spec.name, limits.name_bytes_max)
    _check_leaves(spec, limits)
    if not 1 <= spec.num_shards <= limits.num_shards_max:
        raise Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"num_shards must be in [1, {limits.num_shards_max}], got {spec.num_shards}",
        )
    if spec.sync_mode == SyncMode.SSP:
        if not 1 <= spec.staleness_bound <= limits.staleness_bound_max:
            raise Rejected(
                ErrorCode.INVALID_ARGUMENT,
                f"SSP needs a staleness bound in [1, {limits.staleness_bound_max}], "
                f"got {spec.staleness_bound}",
            )
    elif spec.staleness_bound != 0:
        raise Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"staleness_bound is for SSP only; {spec.sync_mode.name} needs 0, got {spec.staleness_bound}",
        )
    optimizer_json = canonical_optimizer_json(spec.optimizer_json, limits)
    return dataclasses.replace(spec, optimizer_json=optimizer_json)


def spec_difference(existing: ModelSpec, requested: ModelSpec) -> str:
    """The first field where two canonical specs differ (for the conflict message)."""
    for field in dataclasses.fields(ModelSpec):
        if getattr(existing, field.name) != getattr(requested, field.name):
            return field.name
    return ""
