"""The chaos harness's report: one directory per run that a person can open after the fact.

A chaos run is only useful if its failure can be understood later, by someone who did not
watch it: which checker failed, on which operations, while which faults were active, and
what the cluster logged meanwhile. ``write_report`` gathers that into one directory:

- the raw material, machine-readable: ``history.jsonl`` (the records exactly as given),
  ``verdicts.json``, ``faults.json``, ``metadata.json``, ``summary.json``;
- ``latency.png`` and ``throughput.png``, with the fault windows shaded, so a latency spike
  or a throughput gap lines up with the fault that caused it;
- copies of the logs (their tails: a chaos run can log gigabytes);
- ``report.html``, a self-contained page (no external CSS or JavaScript, images by relative
  path) that ties these together, so the directory can be archived or served as is.

Everything rendered is bounded (points plotted, rows and characters in the page, bytes of log
copied): a long run, or a checker that reports thousands of violations, must still give a
report that opens. The full data are in the JSON files.

A history record is a dict ``{"index", "process", "type", "f", "time", ...}``; an operation
is an ``"invoke"`` followed by the same process's next completion (``"ok"``, ``"fail"`` or
``"info"``); an invoke that never completes is an operation of unknown outcome.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

__all__ = [
    "LOG_BYTES_MAX",
    "CheckerVerdict",
    "FaultWindow",
    "Violation",
    "latency_series",
    "summarize",
    "throughput_series",
    "write_report",
]

Record = Mapping[str, Any]
Outcome = Literal["ok", "fail", "info", "unknown"]

LOG_BYTES_MAX = 5 << 20
"""The most bytes of each log that a report keeps (its tail: the end of a log is where a failure shows)."""

# Bounds on what is plotted and rendered; the JSON files hold everything.
_PLOT_POINTS_MAX = 20_000  # points per f, per plot
_PLOT_SERIES_MAX = 20  # fs plotted (the most frequent ones)
_PLOT_SPANS_MAX = 1_000  # fault windows shaded
_FAULT_COLORS_MAX = 8  # distinct fault names given their own colour; the rest share one
_OPS_PER_VIOLATION_MAX = 20
_VIOLATIONS_PER_CHECKER_MAX = 50
_VERDICTS_MAX = 100
_FAULT_ROWS_MAX = 1_000
_F_ROWS_MAX = 100
_METADATA_ITEMS_MAX = 100
_CELL_CHARS_MAX = 1_000  # a record field, a metadata value, a fault detail
_TEXT_CHARS_MAX = 4_000  # a verdict's summary, a violation's description

_COMPLETIONS: frozenset[str] = frozenset({"ok", "fail", "info"})
_STANDARD_FIELDS = ("index", "process", "type", "f", "time")
_NO_LOGS: Mapping[str, Path] = MappingProxyType({})
_DATA_FILES = ("history.jsonl", "verdicts.json", "faults.json", "metadata.json", "summary.json")


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A span of the run during which a nemesis had a fault in place.

    ``end`` is None when the fault was still in place when the run ended (a nemesis that
    never healed is itself worth seeing): the report shades it to the end of the run.
    Times are seconds since the run started, on the history's clock.
    """

    name: str
    start: float
    end: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class Violation:
    """One thing a checker found wrong, and the history records (by ``index``) that show it."""

    description: str
    op_indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CheckerVerdict:
    """A checker's conclusion: ``ok`` is None when it could not decide (e.g. it gave up on a search)."""

    name: str
    ok: bool | None
    summary: str
    violations: list[Violation]


@dataclass(frozen=True, slots=True)
class _Op:
    """An operation: the positions (in the history list) of its invoke and its completion."""

    f: str
    invoke: int
    completion: int | None
    outcome: Outcome
    invoke_time: float | None
    completion_time: float | None

    @property
    def latency(self) -> float | None:
        if self.invoke_time is None or self.completion_time is None:
            return None
        return self.completion_time - self.invoke_time


# ---- analysis -----------------------------------------------------------------------------


def _time_of(record: Record) -> float | None:
    """The record's time, or None when it has none usable (so one bad record cannot sink a report)."""
    t = record.get("time")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return None
    return float(t)


def _pair_ops(history: Sequence[Record]) -> list[_Op]:
    """Pair each invoke with its process's next completion; the ops come back in invoke order.

    Processes interleave, so pairing goes by process, not by position. A completion with no
    invoke outstanding on its process is ignored, and so is an invoke's f on the completion
    (the invoke says what was asked). A second invoke on a process whose first never
    completed leaves the first unknown: the history is malformed, but the report should
    still show it rather than fail.
    """
    ops: list[_Op | None] = []
    pending: dict[Any, int] = {}  # process -> slot in ops of its outstanding invoke
    invokes: list[int] = []  # slot -> position of the invoke in history
    for position, record in enumerate(history):
        kind = record.get("type")
        process = record.get("process")
        if kind == "invoke":
            pending[process] = len(ops)
            ops.append(None)
            invokes.append(position)
        elif kind in _COMPLETIONS and process in pending:
            slot = pending.pop(process)
            invoke = history[invokes[slot]]
            ops[slot] = _Op(
                f=str(invoke.get("f")),
                invoke=invokes[slot],
                completion=position,
                outcome=kind,
                invoke_time=_time_of(invoke),
                completion_time=_time_of(record),
            )
    paired: list[_Op] = []
    for slot, op in enumerate(ops):
        if op is None:
            invoke = history[invokes[slot]]
            op = _Op(str(invoke.get("f")), invokes[slot], None, "unknown", _time_of(invoke), None)
        paired.append(op)
    return paired


def latency_series(history: Sequence[Record]) -> dict[str, list[tuple[float, float, str]]]:
    """Per f, ``(invoke time, latency in seconds, outcome)`` of each completed op, in invoke order.

    Completed means an ``ok``, ``fail`` or ``info`` came back: an ``info`` op's latency is how
    long the client waited before giving up, which is what a fault does to latency. Ops of
    unknown outcome have no latency and are left out.
    """
    series: dict[str, list[tuple[float, float, str]]] = {}
    for op in _pair_ops(history):
        latency = op.latency
        if op.invoke_time is not None and latency is not None:
            series.setdefault(op.f, []).append((op.invoke_time, latency, op.outcome))
    return series


def throughput_series(history: Sequence[Record], bucket_s: float = 1.0) -> dict[str, list[tuple[float, int]]]:
    """Per f, ``(bucket start, ok completions in that bucket)``, by completion time.

    Every f that was invoked gets every bucket from the one holding time 0 (or the earliest
    record, if earlier) to the one holding the last record, zeros included: a fault shows as
    a run of zeros, and a series that skipped empty buckets would draw a line across it.
    """
    if not bucket_s > 0 or not math.isfinite(bucket_s):
        raise ValueError(f"bucket_s must be a positive number of seconds, not {bucket_s!r}")
    times = [t for t in map(_time_of, history) if t is not None]
    ops = _pair_ops(history)
    if not times or not ops:
        return {}
    first = math.floor(min(0.0, *times) / bucket_s)
    last = math.floor(max(times) / bucket_s)
    counts: dict[str, list[int]] = {op.f: [0] * (last - first + 1) for op in ops}
    for op in ops:
        if op.outcome == "ok" and op.completion_time is not None:
            counts[op.f][math.floor(op.completion_time / bucket_s) - first] += 1
    return {f: [((first + i) * bucket_s, n) for i, n in enumerate(ns)] for f, ns in counts.items()}


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty sequence (no interpolation: a value that occurred)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _verdict_word(ok: bool | None) -> str:
    return "UNKNOWN" if ok is None else "PASS" if ok else "FAIL"


def _overall(verdicts: Iterable[CheckerVerdict]) -> bool | None:
    """The run's verdict: any failure fails it; otherwise any unknown makes it unknown."""
    oks = [v.ok for v in verdicts]
    if False in oks:
        return False
    return None if None in oks else True


def summarize(history: Sequence[Record], verdicts: Sequence[CheckerVerdict]) -> dict[str, Any]:
    """The run in numbers, JSON-able: op counts per f and outcome, latency quantiles, verdict counts.

    ``valid`` is the run's verdict (False if any checker failed, else None if any could not
    decide, else True). Faults are not counted here: the caller has them.
    """
    outcomes: tuple[Outcome, ...] = ("ok", "fail", "info", "unknown")
    by_f: dict[str, dict[str, int]] = {}
    latencies: dict[str, list[float]] = {}
    for op in _pair_ops(history):
        counts = by_f.setdefault(op.f, dict.fromkeys((*outcomes, "total"), 0))
        counts[op.outcome] += 1
        counts["total"] += 1
        latency = op.latency
        if op.outcome == "ok" and latency is not None:
            latencies.setdefault(op.f, []).append(latency)
    latency_ms: dict[str, dict[str, float]] = {}
    for f, values in latencies.items():
        values.sort()
        latency_ms[f] = {
            name: 1000.0 * _quantile(values, q) for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
        }
    times = [t for t in map(_time_of, history) if t is not None]
    return {
        "events": len(history),
        "ops": sum(c["total"] for c in by_f.values()),
        "outcomes": {o: sum(c[o] for c in by_f.values()) for o in outcomes},
        "by_f": dict(sorted(by_f.items())),
        "ok_latency_ms": dict(sorted(latency_ms.items())),
        "first_time": min(times) if times else None,
        "last_time": max(times) if times else None,
        "verdicts": {
            "total": len(verdicts),
            "pass": sum(v.ok is True for v in verdicts),
            "fail": sum(v.ok is False for v in verdicts),
            "unknown": sum(v.ok is None for v in verdicts),
        },
        "valid": _overall(verdicts),
    }


def _downsample(
    points: Sequence[tuple[float, float, str]], limit: int = _PLOT_POINTS_MAX
) -> list[tuple[float, float, str]]:
    """At most ``limit`` of the points, deterministically, keeping each stretch's extremes.

    The points are cut into ``limit // 2`` consecutive stretches and each keeps its lowest
    and highest latency: striding would keep the typical points and drop the spikes, and
    the spikes are what a chaos report is for.
    """
    if len(points) <= limit:
        return list(points)
    stretches = max(1, limit // 2)
    kept: list[tuple[float, float, str]] = []
    for i in range(stretches):
        lo, hi = i * len(points) // stretches, (i + 1) * len(points) // stretches
        stretch = range(lo, hi)
        low = min(stretch, key=lambda j: points[j][1])
        high = max(stretch, key=lambda j: points[j][1])
        kept.extend(points[j] for j in sorted({low, high}))
    return kept


# ---- files --------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    """What json writes for a value it cannot encode: a set as a sorted list, anything else as its str.

    The records are meant to be JSON-able; one that is not should still leave a report at the
    end of a long run rather than an exception.
    """
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _write_history(path: Path, history: Iterable[Record]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for record in history:
            out.write(json.dumps(record if isinstance(record, dict) else dict(record), default=_json_default))
            out.write("\n")


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _log_file_name(name: str, taken: set[str]) -> str:
    """A file name for log ``name`` that stays inside ``logs/`` and collides with no other.

    The names come from the caller (a node id, a process name); "../x" or "a/b" must not
    write outside the report.
    """
    base = _UNSAFE_NAME.sub("_", name)[:100].lstrip(".") or "log"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}.{n}"
    taken.add(candidate)
    return candidate


@dataclass(frozen=True, slots=True)
class _LogCopy:
    name: str
    file_name: str | None  # None: the log could not be read
    size: int
    copied: int
    error: str = ""


def _copy_tail(source: Path, target: Path, limit: int) -> tuple[int, int]:
    """Copy the last ``limit`` bytes of ``source``; returns (its size, bytes copied).

    A byte-exact tail: the first line may be cut, which the report says.
    """
    with source.open("rb") as src, target.open("wb") as dst:
        size = src.seek(0, 2)
        src.seek(max(0, size - limit))
        copied = 0
        while copied < limit:
            chunk = src.read(min(1 << 20, limit - copied))
            if not chunk:
                break
            dst.write(chunk)
            copied += len(chunk)
    return size, copied


def _copy_logs(directory: Path, logs: Mapping[str, Path], limit: int) -> list[_LogCopy]:
    if not logs:
        return []
    logs_dir = directory / "logs"
    logs_dir.mkdir(exist_ok=True)
    taken: set[str] = set()
    copies: list[_LogCopy] = []
    for name, source in logs.items():
        file_name = _log_file_name(name, taken)
        try:
            size, copied = _copy_tail(Path(source), logs_dir / file_name, limit)
        except OSError as e:
            # A node that never started has no log; the report should say so, not stop.
            copies.append(_LogCopy(name, None, 0, 0, f"{type(e).__name__}: {e}"))
        else:
            copies.append(_LogCopy(name, file_name, size, copied))
    return copies


# ---- plots --------------------------------------------------------------------------------


def _run_span(history: Sequence[Record], faults: Sequence[FaultWindow]) -> tuple[float, float]:
    """When the run started (0, unless a record is earlier) and ended: its last record or fault time."""
    times = [t for t in map(_time_of, history) if t is not None]
    times += [w.start for w in faults] + [w.end for w in faults if w.end is not None]
    finite = [t for t in times if math.isfinite(t)]
    return min([0.0, *finite]), max([0.0, *finite])


def _plot_fs(series: Mapping[str, Sequence[object]]) -> list[str]:
    """The fs to plot: at most ``_PLOT_SERIES_MAX``, the ones with the most points, in name order."""
    busiest = sorted(series, key=lambda f: (-len(series[f]), f))[:_PLOT_SERIES_MAX]
    return sorted(busiest)


def _label(text: str) -> str:
    """``text`` as a legend label: bounded, and with ``$`` escaped (an f or fault name is not mathtext)."""
    return _clip(text, 60).replace("$", r"\$")


def _save_plots(
    directory: Path,
    history: Sequence[Record],
    faults: Sequence[FaultWindow],
    run_start: float,
    run_end: float,
) -> None:
    """Write latency.png and throughput.png.

    pyplot is imported here, after selecting Agg, so that importing this module neither costs
    matplotlib's import time nor picks a backend for a process that never writes a report;
    and Agg needs no display (chaos runs are headless).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    fault_colors: dict[str, Any] = {}
    palette = matplotlib.colormaps["Pastel2"]

    def shade(ax: Axes) -> None:
        """Shade the fault windows, one legend entry per fault name."""
        labelled: set[str] = set()
        for window in faults[:_PLOT_SPANS_MAX]:
            known = window.name in fault_colors or len(fault_colors) < _FAULT_COLORS_MAX
            key = window.name if known else "other faults"
            color = fault_colors.setdefault(key, palette(len(fault_colors) % palette.N))
            end = run_end if window.end is None else window.end
            label = _label(f"fault: {key}") if key not in labelled else None
            labelled.add(key)
            ax.axvspan(window.start, max(end, window.start), color=color, alpha=0.6, label=label, zorder=0)

    def finish(ax: Axes, title: str, empty: bool) -> None:
        if empty:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel("seconds since start")
        ax.set_title(title)
        ax.set_xlim(run_start, max(run_end, run_start + 1e-9))
        ax.grid(True, alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")

    # Latency: a scatter per f; fails and infos on top as crosses of the same colour.
    latencies = latency_series(history)
    fs = _plot_fs(latencies)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    try:
        shade(ax)
        left_out = len(latencies) - len(fs)
        for i, f in enumerate(fs):
            points = _downsample(latencies[f])
            color = f"C{i % 10}"
            # Log axis: a zero latency (coarse clock) is drawn at 1 µs rather than not at all.
            ok = [(t, max(lat * 1000.0, 1e-3)) for t, lat, outcome in points if outcome == "ok"]
            bad = [(t, max(lat * 1000.0, 1e-3)) for t, lat, outcome in points if outcome != "ok"]
            if ok:
                ax.scatter(
                    [p[0] for p in ok], [p[1] for p in ok], s=4, color=color, label=_label(f), zorder=2
                )
            if bad:
                xs, ys = [p[0] for p in bad], [p[1] for p in bad]
                ax.scatter(xs, ys, s=16, marker="x", color=color, label=_label(f"{f} (fail/info)"), zorder=3)
        if fs:
            ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log)")
        title = "Latency of completed operations, by invoke time"
        if left_out:
            title += f" ({left_out} fs not shown)"
        finish(ax, title, empty=not fs)
        fig.savefig(directory / "latency.png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)

    # Throughput: ok completions per second, in buckets wide enough to stay under the point cap.
    bucket_s = max(1.0, math.ceil((run_end - run_start) / _PLOT_POINTS_MAX))
    throughput = throughput_series(history, bucket_s)
    fs = _plot_fs(throughput)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    try:
        shade(ax)
        for i, f in enumerate(fs):
            buckets = throughput[f][-_PLOT_POINTS_MAX:]
            # The last bucket's step runs to its end, not just to its start.
            buckets.append((buckets[-1][0] + bucket_s, buckets[-1][1]))
            ax.step(
                [b[0] for b in buckets],
                [b[1] / bucket_s for b in buckets],
                where="post",
                color=f"C{i % 10}",
                label=_label(f),
                zorder=2,
            )
        ax.set_ylabel("ok completions / s")
        title = f"Throughput ({bucket_s:g} s buckets)"
        if len(throughput) > len(fs):
            title += f" ({len(throughput) - len(fs)} fs not shown)"
        finish(ax, title, empty=not fs)
        fig.savefig(directory / "throughput.png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


# ---- HTML ---------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def _text(value: object, limit: int = _CELL_CHARS_MAX) -> str:
    """``value`` as escaped, bounded HTML text: strings as they are, anything else as JSON."""
    raw = value if isinstance(value, str) else json.dumps(value, default=_json_default, sort_keys=True)
    return html.escape(_clip(raw, limit))


def _seconds(t: float | None) -> str:
    return "" if t is None else f"{t:.3f}"


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; font-size: 13px; }
th { background: #f0f0f0; }
td.mono, pre { font-family: monospace; white-space: pre-wrap; word-break: break-all; }
.PASS { background: #d4f4d4; } .FAIL { background: #f8d0d0; } .UNKNOWN { background: #f4ecc4; }
.banner { display: inline-block; padding: 4px 12px; font-weight: bold; font-size: 20px; }
.note { color: #666; font-style: italic; }
img { max-width: 100%; }
"""


def _verdict_cell(ok: bool | None) -> str:
    word = _verdict_word(ok)
    return f'<td class="{word}">{word}</td>'


def _metadata_html(metadata: Mapping[str, Any]) -> list[str]:
    out = ["<h2>Run</h2>", "<table>"]
    items = list(metadata.items())
    for key, value in items[:_METADATA_ITEMS_MAX]:
        out.append(f'<tr><th>{_text(str(key), 200)}</th><td class="mono">{_text(value)}</td></tr>')
    out.append("</table>")
    if len(items) > _METADATA_ITEMS_MAX:
        out.append(f'<p class="note">{len(items) - _METADATA_ITEMS_MAX} more items in metadata.json</p>')
    return out


def _verdicts_html(verdicts: Sequence[CheckerVerdict]) -> list[str]:
    out = ["<h2>Verdicts</h2>"]
    if not verdicts:
        return [*out, '<p class="note">No checker ran.</p>']
    out.append("<table><tr><th>checker</th><th>verdict</th><th>violations</th><th>summary</th></tr>")
    for i, v in enumerate(verdicts[:_VERDICTS_MAX]):
        name = _text(v.name, 200)
        link = f'<a href="#checker-{i}">{name}</a>' if v.violations else name
        out.append(
            f"<tr><td>{link}</td>{_verdict_cell(v.ok)}<td>{len(v.violations)}</td>"
            f'<td class="mono">{_text(v.summary, _TEXT_CHARS_MAX)}</td></tr>'
        )
    out.append("</table>")
    if len(verdicts) > _VERDICTS_MAX:
        out.append(f'<p class="note">{len(verdicts) - _VERDICTS_MAX} more verdicts in verdicts.json</p>')
    return out


def _record_row(role: str, record: Record | None, latency: float | None = None) -> str:
    if record is None:
        return f'<tr><td>{role}</td><td colspan="6" class="note">none: outcome unknown</td></tr>'
    cells = "".join(f"<td>{_text(record.get(k), 100)}</td>" for k in _STANDARD_FIELDS)
    rest = {k: v for k, v in record.items() if k not in _STANDARD_FIELDS}
    extra = _text(rest) if rest else ""
    if latency is not None:
        extra = f"latency {latency * 1000.0:.3f} ms" + (f"<br>{extra}" if extra else "")
    return f'<tr><td>{role}</td>{cells}<td class="mono">{extra}</td></tr>'


class _OpIndex:
    """Finds the operation that a history record's ``index`` belongs to (its invoke or completion)."""

    def __init__(self, history: Sequence[Record]) -> None:
        self._position: dict[object, int] = {}
        for position, record in enumerate(history):
            self._position.setdefault(record.get("index"), position)
        self._op: dict[int, _Op] = {}
        for op in _pair_ops(history):
            self._op[op.invoke] = op
            if op.completion is not None:
                self._op[op.completion] = op

    def find(self, index: int) -> tuple[int | None, _Op | None]:
        """(position of the record with this index, its op); an unpaired completion has no op."""
        position = self._position.get(index)
        return position, None if position is None else self._op.get(position)


def _violations_html(
    history: Sequence[Record], verdicts: Sequence[CheckerVerdict], ops: _OpIndex
) -> list[str]:
    out: list[str] = []
    header = (
        "<tr><th></th><th>index</th><th>process</th><th>type</th><th>f</th><th>time</th><th>other</th></tr>"
    )
    for i, verdict in enumerate(verdicts[:_VERDICTS_MAX]):
        if not verdict.violations:
            continue
        out.append(
            f'<h3 id="checker-{i}">{_text(verdict.name, 200)}: {len(verdict.violations)} violation(s)</h3>'
        )
        for n, violation in enumerate(verdict.violations[:_VIOLATIONS_PER_CHECKER_MAX], start=1):
            description = _text(violation.description, _TEXT_CHARS_MAX)
            out.append(f'<p><b>#{n}</b> <span class="mono">{description}</span></p>')
            # One entry per operation: a violation may name both an op's invoke and its completion.
            seen: set[tuple[str, object]] = set()
            entries: list[tuple[int, int | None, _Op | None]] = []
            for index in violation.op_indexes:
                position, op = ops.find(index)
                key = ("op", op.invoke) if op is not None else ("index", index)
                if key not in seen:
                    seen.add(key)
                    entries.append((index, position, op))
            rows: list[str] = []
            for index, position, op in entries[:_OPS_PER_VIOLATION_MAX]:
                if position is None:
                    rows.append(
                        f'<tr><td colspan="7" class="note">index {_text(index)}: not in the history</td></tr>'
                    )
                elif op is None:
                    rows.append(_record_row("record", history[position]))
                else:
                    completion = None if op.completion is None else history[op.completion]
                    rows.append(_record_row("invoke", history[op.invoke]))
                    rows.append(_record_row("completion", completion, op.latency))
            if rows:
                out.append(f"<table>{header}{''.join(rows)}</table>")
            if len(entries) > _OPS_PER_VIOLATION_MAX:
                left = len(entries) - _OPS_PER_VIOLATION_MAX
                out.append(f'<p class="note">{left} more operation(s) left out (see verdicts.json)</p>')
        if len(verdict.violations) > _VIOLATIONS_PER_CHECKER_MAX:
            left = len(verdict.violations) - _VIOLATIONS_PER_CHECKER_MAX
            out.append(f'<p class="note">{left} more violation(s) left out (see verdicts.json)</p>')
    return ["<h2>Violations</h2>", *out] if out else []


def _faults_html(faults: Sequence[FaultWindow], run_end: float) -> list[str]:
    out = ["<h2>Faults</h2>"]
    if not faults:
        return [*out, '<p class="note">No faults were injected.</p>']
    out.append(
        "<table><tr><th>fault</th><th>start (s)</th><th>end (s)</th><th>for (s)</th><th>detail</th></tr>"
    )
    for w in faults[:_FAULT_ROWS_MAX]:
        end = f"active at end ({run_end:.3f})" if w.end is None else _seconds(w.end)
        lasted = (run_end if w.end is None else w.end) - w.start
        out.append(
            f"<tr><td>{_text(w.name, 200)}</td><td>{_seconds(w.start)}</td><td>{end}</td>"
            f'<td>{lasted:.3f}</td><td class="mono">{_text(w.detail)}</td></tr>'
        )
    out.append("</table>")
    if len(faults) > _FAULT_ROWS_MAX:
        out.append(f'<p class="note">{len(faults) - _FAULT_ROWS_MAX} more faults in faults.json</p>')
    return out


def _counts_html(summary: Mapping[str, Any]) -> list[str]:
    by_f: Mapping[str, Mapping[str, int]] = summary["by_f"]
    latency: Mapping[str, Mapping[str, float]] = summary["ok_latency_ms"]
    out = [
        "<h2>Operations</h2>",
        f"<p>{summary['events']} records, {summary['ops']} operations.</p>",
        "<table><tr><th>f</th><th>ok</th><th>fail</th><th>info</th><th>unknown</th><th>total</th>"
        "<th>ok p50 (ms)</th><th>ok p99 (ms)</th><th>ok max (ms)</th></tr>",
    ]
    for f in list(by_f)[:_F_ROWS_MAX]:
        c, lat = by_f[f], latency.get(f, {})
        cells = [c["ok"], c["fail"], c["info"], c["unknown"], c["total"]]
        cells_html = "".join(f"<td>{n}</td>" for n in cells)
        lat_html = "".join(
            f"<td>{lat[k]:.3f}</td>" if k in lat else "<td></td>" for k in ("p50", "p99", "max")
        )
        out.append(f"<tr><td>{_text(f, 200)}</td>{cells_html}{lat_html}</tr>")
    out.append("</table>")
    if len(by_f) > _F_ROWS_MAX:
        out.append(f'<p class="note">{len(by_f) - _F_ROWS_MAX} more fs in summary.json</p>')
    return out


def _logs_html(copies: Sequence[_LogCopy]) -> list[str]:
    if not copies:
        return []
    out = ["<h2>Logs</h2>", "<ul>"]
    for c in copies:
        name = _text(c.name, 200)
        if c.file_name is None:
            out.append(f'<li>{name}: <span class="note">not copied ({_text(c.error, 500)})</span></li>')
            continue
        href = html.escape("logs/" + quote(c.file_name))
        note = f"{c.size} bytes"
        if c.copied < c.size:
            note = f"last {c.copied} of {c.size} bytes (the first line may be cut)"
        out.append(f'<li><a href="{href}">{name}</a> <span class="note">{note}</span></li>')
    out.append("</ul>")
    return out


def _page(
    *,
    history: Sequence[Record],
    faults: Sequence[FaultWindow],
    verdicts: Sequence[CheckerVerdict],
    metadata: Mapping[str, Any],
    summary: Mapping[str, Any],
    copies: Sequence[_LogCopy],
    run_end: float,
) -> str:
    word = _verdict_word(summary["valid"])
    body = [
        f'<h1>Chaos run report <span class="banner {word}">{word}</span></h1>',
        *_metadata_html(metadata),
        *_verdicts_html(verdicts),
        *_violations_html(history, verdicts, _OpIndex(history)),
        *_faults_html(faults, run_end),
        "<h2>Latency</h2>",
        '<img src="latency.png" alt="latency of each operation over time, with fault windows shaded">',
        "<h2>Throughput</h2>",
        '<img src="throughput.png" alt="ok completions per second over time, with fault windows shaded">',
        *_counts_html(summary),
        *_logs_html(copies),
        '<p class="note">Data: '
        + ", ".join(f'<a href="{name}">{name}</a>' for name in _DATA_FILES)
        + ".</p>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Chaos run report: {word}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(
    directory: Path,
    *,
    history: Sequence[Record],
    faults: Sequence[FaultWindow],
    verdicts: Sequence[CheckerVerdict],
    metadata: Mapping[str, Any],
    logs: Mapping[str, Path] = _NO_LOGS,
    log_bytes_max: int = LOG_BYTES_MAX,
) -> Path:
    """Write the run's report into ``directory`` (created if need be); returns the path of report.html.

    The raw data go first and the page last, so that if plotting fails the history and the
    verdicts are still on disk. Files of an earlier report in the same directory are
    overwritten. ``log_bytes_max`` bounds each log's copy (its tail is kept).
    """
    if log_bytes_max < 0:
        raise ValueError(f"log_bytes_max must be >= 0, not {log_bytes_max}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    summary = summarize(history, verdicts)
    summary["faults"] = len(faults)
    _write_history(directory / "history.jsonl", history)
    _write_json(directory / "verdicts.json", [dataclasses.asdict(v) for v in verdicts])
    _write_json(directory / "faults.json", [dataclasses.asdict(w) for w in faults])
    _write_json(directory / "metadata.json", dict(metadata))
    _write_json(directory / "summary.json", summary)
    copies = _copy_logs(directory, logs, log_bytes_max)
    run_start, run_end = _run_span(history, faults)
    _save_plots(directory, history, faults, run_start, run_end)
    page = _page(
        history=history,
        faults=faults,
        verdicts=verdicts,
        metadata=metadata,
        summary=summary,
        copies=copies,
        run_end=run_end,
    )
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
