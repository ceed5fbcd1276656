"""Where a model's keys live: the route a ``StoreClient`` builds from one coordinator
config (the model's layout, which group holds which keys, each group's members), and the
helpers that split gradients and initial values along it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from paramstore.client._errors import ClientError
from paramstore.coordinator import ModelSpec
from paramstore.coordinator._codec import spec_from_proto
from paramstore.shard import ModelLayout
from proto import coordinator_pb2 as coordinator_pb
from proto import coordinator_service_pb2 as coordinator_api

__all__ = ["ModelNotRoutedError", "Route", "blocks_by_group", "initial_blocks", "model_of", "route_of"]


class ModelNotRoutedError(ClientError):
    """The coordinator does not know the model, or some of its shards have no group yet
    (``register_model`` assigns them)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where one model's keys live, as of one coordinator config."""

    spec: ModelSpec
    layout: ModelLayout
    config_number: int
    keys_by_group: dict[int, tuple[str, ...]]  # only groups holding keys, keys in layout order
    members: dict[int, tuple[str, ...]]  # group -> member addresses


def blocks_by_group(
    route: Route, blocks: Mapping[str, npt.NDArray[np.float32]]
) -> dict[int, dict[str, npt.NDArray[np.float32]]]:
    group_of = {key: group for group, keys in route.keys_by_group.items() for key in keys}
    by_group: dict[int, dict[str, npt.NDArray[np.float32]]] = {}
    for key, block in blocks.items():
        by_group.setdefault(group_of[key], {})[key] = block
    return by_group


def model_of(config: coordinator_api.GetConfigResponse, name: str) -> coordinator_pb.Model | None:
    return next((m for m in config.models if m.spec.name == name), None)


def route_of(config: coordinator_api.GetConfigResponse, name: str) -> Route:
    model = model_of(config, name)
    if model is None:
        raise ModelNotRoutedError(f"the coordinator knows no model {name!r}; register it first")
    unassigned = [s for s, g in enumerate(model.shard_groups) if g == 0]
    if unassigned:
        raise ModelNotRoutedError(
            f"model {name!r}: {len(unassigned)} shard(s) have no store group (e.g. {unassigned[:5]}); "
            "register_model assigns them"
        )
    spec = spec_from_proto(model.spec)
    layout = ModelLayout.from_spec(spec)
    members = {g.group_id: tuple(m.address for m in g.members) for g in config.groups}
    keys_by_group: dict[int, list[str]] = {}
    for placement in layout.keys:
        group = int(model.shard_groups[placement.shard])
        if group not in members or not members[group]:
            raise ModelNotRoutedError(
                f"model {name!r}: shard {placement.shard} is on group {group}, not listed"
            )
        keys_by_group.setdefault(group, []).append(placement.key)
    return Route(
        spec=spec,
        layout=layout,
        config_number=int(config.config_number),
        keys_by_group={g: tuple(keys) for g, keys in sorted(keys_by_group.items())},
        members=members,
    )


def initial_blocks(
    layout: ModelLayout, spec: ModelSpec, values: Mapping[str, npt.NDArray[Any]]
) -> dict[str, npt.NDArray[np.float32]]:
    paths = [leaf.path for leaf in spec.leaves]
    if set(values) != set(paths):
        missing = sorted(set(paths) - set(values))
        extra = sorted(set(values) - set(paths))
        raise ValueError(f"initial values: leaves missing {missing[:5]}, unexpected {extra[:5]}")
    blocks: dict[str, npt.NDArray[np.float32]] = {}
    for path in paths:
        blocks.update(layout.split(path, np.ascontiguousarray(values[path], dtype="<f4")))
    return blocks
