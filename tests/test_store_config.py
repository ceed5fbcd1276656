"""``paramstore store`` settings: the options its flags make, and the errors for bad ones."""

from __future__ import annotations

import pytest

from paramstore import cli
from paramstore.commands._coordinator import ConfigError
from paramstore.commands._store import options_from
from paramstore.server import HEARTBEAT_TICKS_DEFAULT

BASE = (
    "--group",
    "1",
    "--id",
    "1",
    "--listen",
    "127.0.0.1:7001",
    "--peers",
    "1=127.0.0.1:7001",
    "--data-dir",
    "d",
)


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return cli._build_parser().parse_args(["store", *BASE, "--data-dir", "d", *argv])


def test_timing_flags_reach_the_replica_options() -> None:
    options, _ = options_from(parse())
    assert options.heartbeat_interval_ticks == HEARTBEAT_TICKS_DEFAULT
    options, _ = options_from(parse("--tick-ms", "10", "--election-ticks", "20", "--heartbeat-ticks", "5"))
    assert (options.tick_interval_ms, options.election_timeout_ticks, options.heartbeat_interval_ticks) == (
        10.0,
        20,
        5,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--heartbeat-ticks", "0"],
            r"--heartbeat-ticks must be >= 1 and below --election-ticks \(10\), got 0",
        ),
        (["--heartbeat-ticks", "10"], r"below --election-ticks \(10\), got 10"),
        (["--election-ticks", "4", "--heartbeat-ticks", "5"], r"below --election-ticks \(4\), got 5"),
    ],
)
def test_bad_heartbeat_ticks_name_the_bound(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options_from(parse(*argv))


def test_wal_writes_are_direct_unless_asked_for_buffered(capsys: pytest.CaptureFixture[str]) -> None:
    assert options_from(parse())[0].storage_config().direct_writes
    assert not options_from(parse("--wal-writes", "buffered"))[0].storage_config().direct_writes
    with pytest.raises(SystemExit):
        parse("--wal-writes", "mmap")
    assert "invalid choice: 'mmap' (choose from 'direct', 'buffered')" in capsys.readouterr().err
