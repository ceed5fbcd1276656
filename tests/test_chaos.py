"""The chaos harness end to end: a short seeded run over real processes passes, and runs
against clusters with planted bugs (tests/bugs/sitecustomize.py) are caught."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paramstore.chaos import ChaosConfig, ChaosOutcome, run_chaos
from tests.cluster_util import REPO_ROOT

BUGS_DIR = REPO_ROOT / "tests" / "bugs"


def test_a_short_seeded_chaos_run_passes_and_writes_its_report(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "paramstore.cli",
            "chaos",
            "--duration",
            "20",
            "--seed",
            "1",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO_ROOT,
    )
    last = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0, run.stderr[-3000:]
    match = re.fullmatch(r"operations=(\d+) faults=(\d+) violations=0 result=OK report=(\S+)", last)
    assert match, last
    assert int(match.group(1)) > 500 and int(match.group(2)) >= 3
    report = Path(match.group(3))
    for name in (
        "report.html",
        "history.jsonl",
        "latency.png",
        "throughput.png",
        "verdicts.json",
        "faults.json",
    ):
        assert (report.parent / name).is_file(), name
    assert (report.parent / "logs").is_dir()
    assert "PASS" in run.stderr and "FAIL " not in run.stderr


def _run_with_bug(tmp_path: Path, bug: str, nemeses: tuple[str, ...], duration_s: float) -> ChaosOutcome:
    env = {"PYTHONPATH": str(BUGS_DIR), "PARAMSTORE_TEST_BUG": bug}
    config = ChaosConfig(tmp_path, duration_s=duration_s, seed=1, nemeses=nemeses, gap_s=1.0, cluster_env=env)
    return asyncio.run(run_chaos(config))


@pytest.mark.parametrize(
    ("bug", "nemeses", "expected"),
    [
        # Acknowledged before committed: pulls right after the ack miss it, a leader kill loses it.
        ("ack-before-commit", ("leader",), "acked before it began"),
        # Retries after a paused or killed leader are applied again.
        ("skip-dedup", ("leader", "pause"), "applied twice"),
    ],
)
def test_the_checkers_catch_a_planted_bug(
    tmp_path: Path, bug: str, nemeses: tuple[str, ...], expected: str
) -> None:
    outcome = _run_with_bug(tmp_path, bug, nemeses, 16.0)
    assert not outcome.ok
    params = outcome.verdicts[0]
    assert params.ok is False and params.violations
    assert any(expected in v.description for v in params.violations), [
        v.description for v in params.violations[:5]
    ]
    assert all(v.op_indexes for v in params.violations if "final" not in v.description)
