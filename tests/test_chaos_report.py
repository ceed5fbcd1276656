"""The chaos harness's report writer (paramstore.chaos._report)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from paramstore.chaos._report import (
    CheckerVerdict,
    FaultWindow,
    Violation,
    _downsample,
    latency_series,
    summarize,
    throughput_series,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rec(index: int, process: int, kind: str, f: str, time: float, **fields: Any) -> dict[str, Any]:
    return {"index": index, "process": process, "type": kind, "f": f, "time": time, **fields}


def _small_history() -> list[dict[str, Any]]:
    # Times are exact binary fractions, so latencies compare exactly.
    return [
        _rec(0, 0, "invoke", "push", 0.25),
        _rec(1, 1, "invoke", "pull", 0.5),
        _rec(2, 0, "ok", "push", 0.75),
        _rec(3, 0, "invoke", "push", 1.25),
        _rec(4, 1, "fail", "pull", 1.5, error="timeout"),
        _rec(5, 2, "invoke", "read", 1.75),  # never completes
        _rec(6, 0, "ok", "push", 2.5),
        _rec(7, 1, "invoke", "pull", 2.75),
        _rec(8, 1, "info", "pull", 3.0),
        _rec(9, 3, "invoke", "write", 3.25),  # never completes
        _rec(10, 4, "ok", "read", 3.5),  # a completion with no invoke: ignored
    ]


def test_latency_series_exact() -> None:
    assert latency_series(_small_history()) == {
        "push": [(0.25, 0.5, "ok"), (1.25, 1.25, "ok")],
        "pull": [(0.5, 1.0, "fail"), (2.75, 0.25, "info")],
    }
    assert latency_series([]) == {}


def test_throughput_series_exact() -> None:
    # Every invoked f gets every bucket from 0 to the last record's (3.5 s), zeros included.
    zeros = [(0.0, 0), (1.0, 0), (2.0, 0), (3.0, 0)]
    assert throughput_series(_small_history()) == {
        "push": [(0.0, 1), (1.0, 0), (2.0, 1), (3.0, 0)],
        "pull": zeros,
        "read": zeros,
        "write": zeros,
    }
    half = throughput_series(_small_history(), bucket_s=0.5)
    assert half["push"] == [(i * 0.5, int(i in (1, 5))) for i in range(8)]
    assert throughput_series([]) == {}
    with pytest.raises(ValueError):
        throughput_series(_small_history(), bucket_s=0.0)


def test_summarize_counts_outcomes_and_verdicts() -> None:
    verdicts = [
        CheckerVerdict("a", True, "", []),
        CheckerVerdict("b", None, "", []),
        CheckerVerdict("c", False, "", [Violation("x", (1,))]),
    ]
    summary = summarize(_small_history(), verdicts)
    assert summary["events"] == 11
    assert summary["ops"] == 6
    assert summary["outcomes"] == {"ok": 2, "fail": 1, "info": 1, "unknown": 2}
    assert summary["by_f"]["pull"] == {"ok": 0, "fail": 1, "info": 1, "unknown": 0, "total": 2}
    assert summary["by_f"]["read"]["unknown"] == 1
    assert summary["ok_latency_ms"] == {"push": {"p50": 500.0, "p99": 1250.0, "max": 1250.0}}
    assert summary["verdicts"] == {"total": 3, "pass": 1, "fail": 1, "unknown": 1}
    assert summary["valid"] is False
    assert summarize([], verdicts[:2])["valid"] is None
    assert summarize([], verdicts[:1])["valid"] is True


def test_pairs_by_process_when_processes_interleave() -> None:
    history = [
        _rec(0, 0, "invoke", "write", 1.0),
        _rec(1, 1, "invoke", "read", 2.0),
        _rec(2, 2, "invoke", "cas", 3.0),
        _rec(3, 2, "ok", "cas", 3.5),
        _rec(4, 0, "fail", "write", 6.0),
        _rec(5, 3, "invoke", "read", 6.5),  # never completes
        _rec(6, 1, "ok", "read", 10.0),
        _rec(7, 4, "invoke", "write", 11.0),  # superseded by the next invoke on process 4: unknown
        _rec(8, 4, "invoke", "write", 12.0),
        _rec(9, 4, "ok", "write", 12.5),
    ]
    assert latency_series(history) == {
        "write": [(1.0, 5.0, "fail"), (12.0, 0.5, "ok")],
        "read": [(2.0, 8.0, "ok")],
        "cas": [(3.0, 0.5, "ok")],
    }
    assert summarize(history, [])["outcomes"] == {"ok": 3, "fail": 1, "info": 0, "unknown": 2}


def test_downsample_is_bounded_deterministic_and_keeps_spikes() -> None:
    points = [(float(i), 1.0 + (i % 7) / 100, "ok") for i in range(1000)]
    points[537] = (537.0, 99.0, "fail")
    kept = _downsample(points, limit=10)
    assert len(kept) <= 10
    assert (537.0, 99.0, "fail") in kept
    assert kept == _downsample(points, limit=10)
    assert [p[0] for p in kept] == sorted(p[0] for p in kept)
    assert _downsample(points[:5], limit=10) == points[:5]


def _synthetic_history(ops: int, seed: int = 7) -> list[dict[str, Any]]:
    """``ops`` operations by 8 processes over about 30 s, with fails, infos and two unknowns."""
    rng = random.Random(seed)
    events: list[tuple[float, int, str, str, dict[str, Any]]] = []
    per_process = ops // 8
    for process in range(8):
        t = rng.uniform(0.0, 0.1)
        for n in range(per_process):
            f = rng.choice(["push", "pull", "read", "write", "cas"])
            latency = rng.lognormvariate(-5.0, 1.0)
            events.append((t, process, "invoke", f, {"value": n}))
            last = process < 2 and n == per_process - 1
            if not last:  # each of processes 0 and 1 leaves its last op unknown
                kind = rng.choices(["ok", "fail", "info"], weights=[90, 7, 3])[0]
                events.append((t + latency, process, kind, f, {}))
            t += latency + rng.uniform(0.0, 0.2)
    events.sort(key=lambda e: (e[0], e[2] != "invoke"))
    return [_rec(i, p, kind, f, t, **fields) for i, (t, p, kind, f, fields) in enumerate(events)]


def test_write_report(tmp_path: Path) -> None:
    history = _synthetic_history(2000)
    # The violation's second op carries a hostile value and a marker to find its rendering by.
    invoke = next(r for r in history if r["type"] == "invoke" and r["f"] == "read")
    completion = next(
        r
        for r in history[invoke["index"] + 1 :]
        if r["process"] == invoke["process"] and r["type"] != "invoke"
    )
    completion["value"] = '"<script>alert(1)</script>'
    completion["marker"] = "marker-5e1f"
    first = history[0]
    faults = [
        FaultWindow("partition", 5.0, 12.0, "n1 | n2 n3"),
        FaultWindow("kill <n2>", 20.0, None, "SIGKILL n2"),
    ]
    many = tuple(r["index"] for r in history if r["type"] == "invoke")[:30]
    verdicts = [
        CheckerVerdict(
            "linearizable",
            False,
            "1 stale read",
            [Violation("stale read of <x>", (first["index"], invoke["index"], completion["index"]))],
        ),
        CheckerVerdict("convergence", True, "replicas agree", []),
        CheckerVerdict("exactly-once", None, "gave up", [Violation(f"v{i}", many) for i in range(60)]),
    ]
    metadata = {"seed": 7, "duration": 30.0, "nemeses": ["partition", "kill"], "command": "chaos --seed 7"}

    page_path = write_report(
        tmp_path / "report", history=history, faults=faults, verdicts=verdicts, metadata=metadata
    )

    directory = tmp_path / "report"
    assert page_path == directory / "report.html"
    for name in ("history.jsonl", "verdicts.json", "faults.json", "latency.png", "throughput.png"):
        assert (directory / name).is_file(), name
    for name in ("latency.png", "throughput.png"):
        assert (directory / name).read_bytes()[:8] == PNG_MAGIC
    lines = (directory / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    saved = json.loads((directory / "verdicts.json").read_text())
    assert saved[0]["violations"][0]["op_indexes"] == [first["index"], invoke["index"], completion["index"]]
    assert json.loads((directory / "faults.json").read_text())[1]["end"] is None

    page = page_path.read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "marker-5e1f" in page
    assert "FAIL" in page and "PASS" in page and "UNKNOWN" in page
    assert "partition" in page and "kill &lt;n2&gt;" in page and "active at end" in page
    assert "stale read of &lt;x&gt;" in page
    assert "chaos --seed 7" in page
    assert 'src="latency.png"' in page and 'src="throughput.png"' in page
    assert "http" not in page  # self-contained: nothing fetched from elsewhere
    # The violation's ops: both of the op's records, and the first op's invoke.
    assert f"<td>{invoke['index']}</td>" in page
    assert f"<td>{completion['index']}</td>" in page
    assert f"<td>{first['index']}</td>" in page
    # Bounds: 50 of 60 violations, 20 of 30 ops each.
    assert "10 more violation(s) left out" in page
    assert page.count("10 more operation(s) left out") == 50
    assert len(page) < 2_000_000


def test_logs_are_copied_and_truncated_to_their_tail(tmp_path: Path) -> None:
    big = tmp_path / "n1.log"
    big.write_bytes(bytes(range(256)) * 4)
    small = tmp_path / "n2.log"
    small.write_bytes(b"short log\n")
    logs = {"n1.log": big, "n2.log": small, "../evil": small, "missing.log": tmp_path / "nope.log"}

    page_path = write_report(
        tmp_path / "report", history=[], faults=[], verdicts=[], metadata={}, logs=logs, log_bytes_max=100
    )

    logs_dir = tmp_path / "report" / "logs"
    assert (logs_dir / "n1.log").read_bytes() == big.read_bytes()[-100:]
    assert (logs_dir / "n2.log").read_bytes() == b"short log\n"
    assert sorted(p.name for p in logs_dir.iterdir()) == ["_evil", "n1.log", "n2.log"]
    assert not (tmp_path / "evil").exists()
    page = page_path.read_text()
    assert 'href="logs/n1.log"' in page and "last 100 of 1024 bytes" in page
    assert 'href="logs/n2.log"' in page
    assert "missing.log" in page and "not copied" in page
    assert (tmp_path / "report" / "latency.png").read_bytes()[:8] == PNG_MAGIC
