"""The bounds of the shard state machine: every table, name, list and tensor has one.

The limits are part of the replicated state's definition: every replica of a store group
must run with the same ones (a snapshot records them and a replica with other limits
refuses to restore it), because they decide which commands are refused.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

__all__ = ["ShardLimits"]


@dataclass(frozen=True, slots=True)
class ShardLimits:
    # ---- whole commands: a push of many 4 MiB blocks fits; larger ones are split by the leader
    command_bytes_max: int = 256 << 20
    # ---- models and keys
    models_max: int = 256
    name_bytes_max: int = 256  # model names and client ids
    key_bytes_max: int = 1024
    keys_per_model_max: int = 1 << 20
    key_elements_max: int = 1 << 24
    # Weights of every key of every model together (each key also has its optimizer slots).
    elements_max: int = 1 << 32
    optimizer_json_bytes_max: int = 64 << 10
    num_shards_max: int = 65_536
    # ---- pushes
    keys_per_push_max: int = 1 << 16
    covers_per_push_max: int = 4096  # merged pushes in one entry
    # Clients in the dedup table. A full table forgets the clients idle for dedup_idle_ms
    # of log time to make room (their retries ended long before); without such clients it
    # refuses new ones (RESOURCE_EXHAUSTED) rather than forget one that may still retry.
    dedup_clients_max: int = 100_000
    dedup_idle_ms: int = 3_600_000
    # ---- sync modes
    workers_per_model_max: int = 4096
    staleness_bound_max: int = 1 << 20
    # ---- results
    reported_keys_max: int = 8  # keys named in one error message or result

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field.name} must be an int >= 1, got {value!r}")
        if self.elements_max < self.key_elements_max:
            raise ValueError(
                f"elements_max ({self.elements_max}) must hold one key of key_elements_max "
                f"({self.key_elements_max}) elements"
            )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the same limits always give the same text."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ShardLimits:
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError(f"limits must be a JSON object, got {type(fields).__name__}")
        return cls(**fields)
