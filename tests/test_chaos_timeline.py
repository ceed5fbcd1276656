"""The chaos harness's pure parts: targets, partition shapes, timeline files, and the
command line refusing bad input before it starts anything (all in-process, no cluster)."""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import pytest

from paramstore.chaos import NEMESES, ChaosConfig, ClusterShape, TimelineError, load_timeline, run_chaos
from paramstore.chaos._attach import ClusterFileError, ClusterProcess, load_cluster_file
from paramstore.chaos._catalogue import without_restarts
from paramstore.chaos._nemesis import draw_skew_factor
from paramstore.chaos._shapes import bridge, cut_links, majorities_ring, reachable
from paramstore.chaos._targets import Target, TargetError, parse_target
from paramstore.cli import main
from paramstore.commands import _chaos

SHAPE = ClusterShape.local(coordinators=3, groups=2, replicas=3)


def test_the_command_line_knows_every_nemesis_of_the_package() -> None:
    assert _chaos._NEMESES == NEMESES
    assert set(without_restarts()) == set(NEMESES) - {"kill", "leader", "power-loss", "fsync-fail"}


# ---- targets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("coordinator", Target("group", 0)),
        ("coordinator:2", Target("node", 0, 2)),
        ("store:1", Target("group", 1)),
        ("store:2:3", Target("node", 2, 3)),
        ("leader:coordinator", Target("leader", 0)),
        ("leader:1", Target("leader", 1)),
    ],
)
def test_targets_parse_and_print_back(text: str, target: Target) -> None:
    assert parse_target(text) == target
    assert str(target) == text
    SHAPE.check(target)


@pytest.mark.parametrize(
    "text", ["", "store", "store:0", "store:1:0", "leader:0", "leader", "node:1", "store:x"]
)
def test_a_misspelled_target_is_refused_with_the_spellings(text: str) -> None:
    with pytest.raises(TargetError, match="expected coordinator, coordinator:N, store:G"):
        parse_target(text)


def test_a_target_outside_the_cluster_is_refused() -> None:
    with pytest.raises(TargetError, match=r"store:3: the cluster has store groups 1\.\.2"):
        SHAPE.check(parse_target("store:3"))
    with pytest.raises(TargetError, match="that group's nodes are 1, 2, 3"):
        SHAPE.check(parse_target("store:1:4"))


# ---- partition shapes --------------------------------------------------------------------------


def test_a_bridge_of_three_cuts_the_one_link_that_avoids_the_bridge() -> None:
    cuts = bridge([1, 2, 3], 2, random.Random(1))
    assert cut_links(cuts) == [(1, 3)]
    assert reachable([1, 2, 3], cuts) == {1: {1, 2}, 2: {1, 2, 3}, 3: {2, 3}}


@pytest.mark.parametrize("size", [3, 5, 7])
def test_a_bridge_leaves_two_sides_that_meet_only_at_the_bridge(size: int) -> None:
    members = list(range(1, size + 1))
    for seed in range(10):
        middle = random.Random(seed).choice(members)
        cuts = bridge(members, middle, random.Random(seed))
        sees = reachable(members, cuts)
        assert sees[middle] == set(members)
        sides = {frozenset(sees[m] - {middle}) for m in members if m != middle}
        assert len(sides) == 2 and frozenset.intersection(*sides) == frozenset()
        assert all(len(sees[m]) > size // 2 for m in members)  # every node still sees a majority


@pytest.mark.parametrize("size", [3, 4, 5, 6, 7, 9])
def test_a_majorities_ring_shows_every_node_a_different_majority(size: int) -> None:
    members = list(range(1, size + 1))
    for seed in range(10):
        ring, cuts = majorities_ring(members, random.Random(seed))
        assert sorted(ring) == members
        assert all(a in cuts[b] for a, peers in cuts.items() for b in peers)  # symmetric
        sees = reachable(members, cuts)
        assert all(len(s) > size // 2 for s in sees.values()), sees
        assert len(set(sees.values())) == size, sees
    if size == 3:
        assert len(cut_links(cuts)) == 1
    if size == 5:
        assert all(len(s) == 3 for s in sees.values())  # itself and its two ring neighbours


def test_shapes_refuse_groups_too_small() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        majorities_ring([1, 2], random.Random(1))
    with pytest.raises(ValueError, match="at least 3"):
        bridge([1, 2], 1, random.Random(1))


def test_drawn_skew_factors_are_fast_or_slow_and_within_the_rpc_bounds() -> None:
    rng = random.Random(5)
    factors = [draw_skew_factor(rng) for _ in range(200)]
    assert all(0.25 <= f <= 4.0 and (f >= 1.5 or f <= 0.67) for f in factors)
    assert any(f > 1 for f in factors) and any(f < 1 for f in factors)


# ---- timeline files ----------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "timeline.toml"
    path.write_text(text)
    return path


GOOD = """
[[fault]]
at_s = 6
duration_s = 2
nemesis = "skew"
target = "leader:coordinator"
factor = 4

[[fault]]
at_s = 1.5
duration_s = 3
nemesis = "bridge"
target = "store:2"

[[fault]]
at_s = 4.5
duration_s = 1.5
nemesis = "kill"
"""


def test_a_timeline_is_read_in_time_order_with_its_targets_and_factors(tmp_path: Path) -> None:
    faults = load_timeline(write(tmp_path, GOOD), SHAPE, NEMESES)
    assert [(f.index, f.at_s, f.end_s, f.nemesis) for f in faults] == [
        (2, 1.5, 4.5, "bridge"),
        (3, 4.5, 6.0, "kill"),
        (1, 6.0, 8.0, "skew"),
    ]
    assert faults[0].target == Target("group", 2)
    assert faults[1].target is None and faults[1].factor is None
    assert faults[2].target == Target("leader", 0) and faults[2].factor == 4.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no faults; expected at least one [[fault]] table"),
        ("fault = 3", "'fault' must be an array of tables"),
        ("[settings]\n", "unknown top-level key 'settings'"),
        ("[[fault]\n", "not valid TOML"),
        ('[[fault]]\nat_s = 1\nnemesis = "pause"\n', "fault 1: duration_s: missing"),
        (
            '[[fault]]\nat_s = -1\nduration_s = 1\nnemesis = "pause"\n',
            "fault 1: at_s: expected a number from 0",
        ),
        ('[[fault]]\nat_s = true\nduration_s = 1\nnemesis = "pause"\n', "fault 1: at_s: expected a number"),
        (
            '[[fault]]\nat_s = 1\nduration_s = "2"\nnemesis = "pause"\n',
            "fault 1: duration_s: expected a number",
        ),
        ('[[fault]]\nat_s = 1\nduration_s = 1\nnemesis = "flood"\n', "fault 1: nemesis: unknown 'flood'"),
        (
            '[[fault]]\nat_s = 1\nduration_s = 1\nnemesis = "pause"\nwhen = 2\n',
            "fault 1: unknown field 'when'",
        ),
        (
            '[[fault]]\nat_s = 1\nduration_s = 1\nnemesis = "skew"\nfactor = 20\n',
            "fault 1: factor: expected a number from 0.1 to 10, got 20",
        ),
        (
            '[[fault]]\nat_s = 1\nduration_s = 1\nnemesis = "links"\nfactor = 2\n',
            "fault 1: factor: only the skew nemesis takes a factor",
        ),
        (
            '[[fault]]\nat_s = 1\nduration_s = 1\nnemesis = "pause"\ntarget = "store:9"\n',
            "fault 1: target: store:9: the cluster has store groups 1..2",
        ),
        (
            '[[fault]]\nat_s = 1\nduration_s = 1\nnemesis = "pause"\ntarget = 2\n',
            "fault 1: target: expected a string",
        ),
        (
            '[[fault]]\nat_s = 1\nduration_s = 1\nnemesis = "leader"\ntarget = "store:1:2"\n',
            "fault 1: target: leader acts on a whole group, not one node",
        ),
        (
            '[[fault]]\nat_s = 0\nduration_s = 5\nnemesis = "pause"\n'
            '[[fault]]\nat_s = 4\nduration_s = 1\nnemesis = "links"\n',
            "fault 2: at_s: starts at 4 s, before fault 1 (at 0 s for 5 s) ends at 5 s; "
            "faults may not overlap",
        ),
    ],
)
def test_a_bad_timeline_is_refused_naming_the_fault_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TimelineError) as caught:
        load_timeline(path, SHAPE, NEMESES)
    assert str(caught.value).startswith(f"timeline {path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_attached_timeline_may_not_kill(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(
        TimelineError, match="fault 3: nemesis: 'kill': it kills processes, which an attached"
    ):
        load_timeline(path, SHAPE, without_restarts())


# ---- the command line refuses before starting anything -----------------------------------------


def chaos_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["chaos", *args])
    return status, capsys.readouterr().err.strip()


def test_a_bad_timeline_exits_2_with_one_line_and_starts_no_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, '[[fault]]\nat_s = 1\nduration_s = 0\nnemesis = "bridge"\n')
    out = tmp_path / "run"
    status, err = chaos_cli(capsys, "--timeline", str(bad), "--dir", str(out))
    assert status == 2
    assert err == (
        f"paramstore chaos: timeline {bad}: fault 1: duration_s: expected a number from 0.1 to 3600, got 0"
    )
    assert not out.exists()


def test_the_command_line_refuses_a_timeline_that_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD)
    status, err = chaos_cli(capsys, "--timeline", str(path), "--duration", "5")
    assert status == 2 and "fault 1 ends at 8 s, after --duration 5" in err
    status, err = chaos_cli(capsys, "--timeline", str(path), "--nemesis", "pause")
    assert status == 2 and "give the nemeses in the file, not --nemesis" in err
    status, err = chaos_cli(capsys, "--timeline", str(path), "--groups", "1")
    assert status == 2 and "fault 2: target: store:2: the cluster has store groups 1..1" in err


def cluster_file(tmp_path: Path, pid: int | None = None) -> Path:
    processes = [
        {"role": "coordinator", "id": i, "address": f"127.0.0.1:{5000 + i}", "pid": pid} for i in (1, 2, 3)
    ] + [
        {"role": "store", "group": 1, "id": i, "address": f"127.0.0.1:{6000 + i}", "pid": pid}
        for i in (1, 2, 3)
    ]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"cluster_id": "t", "processes": processes}))
    return path


def test_an_attached_run_refuses_nemeses_that_kill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster_file(tmp_path)
    status, err = chaos_cli(capsys, "--cluster", str(tmp_path), "--nemesis", "pause,kill")
    assert status == 2
    assert err.startswith("paramstore chaos: --nemesis kill: kills processes, which an attached run cannot")
    assert "attached runs allow pause, partition, isolate-leader, links, bridge, majorities-ring, skew" in err
    status, err = chaos_cli(capsys, "--cluster", str(tmp_path), "--groups", "2")
    assert status == 2 and "do not apply with --cluster" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not JSON"),
        ("[]", "expected an object with a 'processes' list"),
        ('{"processes": [{"role": "worker"}]}', "processes[0].role: expected 'coordinator' or 'store'"),
        (
            '{"processes": [{"role": "store", "group": 1, "id": 0}]}',
            "processes[0].id: expected an integer >= 1",
        ),
        ('{"processes": [{"role": "coordinator", "id": 1, "address": "x"}]}', "processes[0].address"),
        ('{"processes": []}', "lists no coordinator"),
    ],
)
def test_a_bad_cluster_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(content)
    with pytest.raises(ClusterFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_cluster_file(path)


def test_a_stale_cluster_file_is_refused_before_any_fault(tmp_path: Path) -> None:
    # Our own pid is alive but is no paramstore node on that address: never signalled.
    path = cluster_file(tmp_path, pid=os.getpid())
    attached = load_cluster_file(tmp_path)
    assert attached.path == path and len(attached.not_running()) == 6
    assert not ClusterProcess("store", 1, 1, "127.0.0.1:1", os.getpid(), Path(), Path()).is_running()
    config = ChaosConfig(tmp_path / "run", attach=tmp_path, nemeses=("pause",))
    with pytest.raises(
        RuntimeError, match=r"not running: coordinator 1 \(pid \d+\).*is `paramstore up` still up"
    ):
        asyncio.run(run_chaos(config))
