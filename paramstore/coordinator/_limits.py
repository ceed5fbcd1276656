"""The bounds of the coordinator state machine: every table, key, value and list has one.

The limits are part of the replicated state's definition: every replica must run with the
same ones (a snapshot records them and a replica with other limits refuses to restore it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

__all__ = ["CoordinatorLimits"]


@dataclass(frozen=True, slots=True)
class CoordinatorLimits:
    # ---- key/value store
    key_bytes_max: int = 1024
    value_bytes_max: int = 1 << 20
    keys_max: int = 100_000
    # Keys plus values of every stored key together.
    kv_bytes_max: int = 256 << 20
    # Watch history: the last this many changes, and at most this many key + value bytes.
    history_changes_max: int = 10_000
    history_bytes_max: int = 64 << 20
    range_limit_max: int = 10_000
    delete_range_keys_max: int = 10_000
    # ---- client sessions
    client_id_bytes_max: int = 128
    sessions_max: int = 10_000
    # A session ends after this long without a command. A client must give up retrying a
    # command well before this, or a retry after the session ended could apply it twice.
    session_ttl_ms: int = 15 * 60 * 1000
    # ---- whole commands
    command_bytes_max: int = 4 << 20
    # ---- cluster configuration
    groups_max: int = 1024
    group_members_max: int = 9
    address_bytes_max: int = 256
    models_max: int = 256
    name_bytes_max: int = 256  # model names and worker ids
    leaves_max: int = 65_536
    leaf_path_bytes_max: int = 1024
    ndim_max: int = 32
    leaf_elements_max: int = 1 << 40
    num_shards_max: int = 65_536
    optimizer_json_bytes_max: int = 64 << 10
    staleness_bound_max: int = 1_000_000
    workers_max: int = 10_000
    worker_ttl_ms_min: int = 100
    worker_ttl_ms_max: int = 60 * 60 * 1000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field.name} must be an int >= 1, got {value!r}")
        if self.history_bytes_max < self.key_bytes_max + self.value_bytes_max:
            raise ValueError(
                f"history_bytes_max ({self.history_bytes_max}) must hold one change of the largest key "
                f"and value ({self.key_bytes_max + self.value_bytes_max} bytes)"
            )
        if self.kv_bytes_max < self.key_bytes_max + self.value_bytes_max:
            raise ValueError(
                f"kv_bytes_max ({self.kv_bytes_max}) must hold at least one key of the largest size"
            )
        if self.worker_ttl_ms_min > self.worker_ttl_ms_max:
            raise ValueError(
                f"worker_ttl_ms_min ({self.worker_ttl_ms_min}) must be <= worker_ttl_ms_max "
                f"({self.worker_ttl_ms_max})"
            )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the same limits always give the same text."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CoordinatorLimits:
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError(f"limits must be a JSON object, got {type(fields).__name__}")
        return cls(**fields)
