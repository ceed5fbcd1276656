"""``paramstore coordinator`` settings: flags, a TOML file, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.storage import FsyncPolicy
from paramstore import cli
from paramstore.commands._coordinator import ConfigError, options_from, parse_peers

NODE_1 = ["--id", "1", "--listen", "h:1", "--peers", "1=h:1", "--data-dir", "d"]


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return cli._build_parser().parse_args(["coordinator", *argv])


def test_flags_make_the_options() -> None:
    options, level = options_from(
        parse(
            "--id", "2", "--listen", "127.0.0.1:7002", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002",
            "--data-dir", "/tmp/x", "--fsync", "always",
        )
    )  # fmt: skip
    assert options.node_id == 2 and options.listen == "127.0.0.1:7002"
    assert dict(options.peers) == {1: "127.0.0.1:7001", 2: "127.0.0.1:7002"}
    assert options.fsync is FsyncPolicy.ALWAYS and options.data_dir == Path("/tmp/x")
    assert level == "info" and options.cluster_id == "paramstore"
    # The RaftAdmin fault service is off unless asked for.
    assert not options.fault_injection and not options.transport_config().admin_service
    # Many small writes: one proposal batch in flight, the next one gathers behind it.
    assert options.proposal_batches_in_flight_max == 1


def test_fault_injection_is_opt_in_by_flag_or_file(tmp_path: Path) -> None:
    base = ("--id", "1", "--listen", "127.0.0.1:7001", "--peers", "1=127.0.0.1:7001", "--data-dir", "/tmp/x")
    options, _ = options_from(parse(*base, "--fault-injection"))
    assert options.fault_injection and options.transport_config().admin_service
    config = tmp_path / "node.toml"
    config.write_text("fault_injection = true\n")
    options, _ = options_from(parse(*base, "--config", str(config)))
    assert options.transport_config().admin_service
    config.write_text('fault_injection = "yes"\n')
    with pytest.raises(ConfigError, match="fault_injection must be true or false"):
        options_from(parse(*base, "--config", str(config)))


def test_a_toml_file_sets_everything_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'id = 3\nlisten = "127.0.0.1:7003"\ndata-dir = "/data/c3"\ncluster_id = "prod"\n'
        'fsync = "never"\ntick-ms = 10\nelection_ticks = 20\nheartbeat-ticks = 4\n'
        '[peers]\n1 = "127.0.0.1:7001"\n2 = "127.0.0.1:7002"\n3 = "127.0.0.1:7003"\n'
    )
    options, _ = options_from(parse("--config", str(config), "--fsync", "batch"))
    assert options.node_id == 3 and options.cluster_id == "prod"
    assert sorted(options.peers) == [1, 2, 3]
    assert options.fsync is FsyncPolicy.BATCH  # the flag wins over the file
    assert options.tick_interval_ms == 10.0 and options.election_timeout_ticks == 20
    assert options.heartbeat_interval_ticks == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "127.0.0.1:1", "--peers", "1=127.0.0.1:1", "--data-dir", "d"], "--id is required"),
        (["--id", "1", "--listen", "h:1", "--peers", "x=h:1", "--data-dir", "d"], "node id 'x'"),
        (["--id", "1", "--listen", "h:1", "--peers", "1=nohost", "--data-dir", "d"], "is not HOST:PORT"),
        (["--id", "0", "--listen", "h:1", "--peers", "1=h:1", "--data-dir", "d"], "--id must be a positive"),
        (
            ["--id", "1", "--listen", "h:1", "--peers", "1=h:1", "--data-dir", "d", "--tick-ms", "0"],
            "--tick-ms",
        ),
        ([*NODE_1, "--heartbeat-ticks", "0"], "--heartbeat-ticks must be a number >= 1"),
        (
            [*NODE_1, "--heartbeat-ticks", "10", "--election-ticks", "9"],
            r"--heartbeat-ticks \(10\) must be below --election-ticks \(9\)",
        ),
    ],
)
def test_bad_settings_name_what_is_wrong(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options_from(parse(*argv))


def test_bad_toml_files_are_reported_by_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("id = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        options_from(parse("--config", str(broken)))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        options_from(parse("--config", str(unknown)))
    with pytest.raises(ConfigError, match="cannot read"):
        options_from(parse("--config", str(tmp_path / "missing.toml")))


def test_peers_parse_and_refuse_duplicates() -> None:
    assert parse_peers("1=a:1, 2=b:2") == {1: "a:1", 2: "b:2"}
    with pytest.raises(ConfigError, match="listed twice"):
        parse_peers("1=a:1,1=b:2")
    with pytest.raises(ConfigError, match="no member"):
        parse_peers(" , ")


def test_the_cli_turns_bad_settings_into_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(
        ["coordinator", "--listen", "127.0.0.1:1", "--peers", "1=127.0.0.1:1", "--data-dir", "d"]
    )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["paramstore coordinator: --id is required (or set it in --config)"]
