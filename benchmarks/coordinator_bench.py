"""Coordinator ``put`` throughput, latency and leader failover, side by side with etcd and
PySyncObj, in one run.

What it measures, for each ``--fsync`` policy (default ``batch`` and ``always``), on a fresh
3-process coordinator cluster on 127.0.0.1 (``LocalCluster``, fresh temporary data dirs,
default Raft timing: tick 25 ms, election timeout 10 ticks):

* ``1 client``: one ``CoordinatorClient`` doing sequential ``put`` calls of ``--value-size``
  byte values (keys cycle over 1000 per client);
* ``N clients``: ``--clients`` (16) concurrent clients in this process, one coroutine and one
  client (own channels, own session) each, every one doing sequential puts;
* ``failover``: ``kill -9`` of the leader's PID, then the time until the first put issued
  after the kill is acknowledged (4 probing clients that retry every 5-20 ms, so the
  resolution is about 10 ms). The killed node is restarted and the cluster is healthy again
  (all 3 answer, one leader, the restarted node caught up) before the next repetition.

The run is ``--reps`` rounds. Each round runs one repetition of every put case of every
system, one system after the other (paramstore on a fresh cluster per fsync policy, then
etcd, then PySyncObj, each on fresh servers): this host's speed drifts by up to 2x over
minutes, so a system measured in one block and its peer in the next would be compared
across different hosts. A ratio to a peer is taken within each round and reported as the
median [min-max] over the rounds; the targets are judged on those. Each throughput
repetition is bounded by ``--duration`` seconds and ``MAX_OPS`` puts, after 20 unreported
warm-up puts per client; a figure is the median [min-max] of the rounds (of
``--failover-reps`` for failover, which runs after the rounds). While the clients run, the CPU time of
every coordinator process and of this process (the clients) is read from /proc, to show
where the 2 cores go.

The peers come from ``../shared/peers`` (``--peers-dir``), run as subprocesses with the
interpreter of ``$PEERS_VENV`` (``bash ../shared/peers/setup.sh`` installs them), and their
output is parsed: ``etcd_bench.py`` (3 etcd members, grpcio clients; it also measures a
follower and 64 clients, shown but not compared) and ``pysyncobj_bench.py`` (3 processes,
configs ``default`` and ``nobatch``; values are 64 B and the caller lives inside a node
process, since PySyncObj has no client protocol). Each round runs each script with
``--reps 1``; their failover figures come from one more run of each script with
``--reps FAILOVER_REPS``.

At the end it prints a Markdown table with the ratios to etcd and PySyncObj and the
targets of the issue. Every process it starts is stopped by PID when it finishes, also on
Ctrl-C or an error.

    .venv/bin/python benchmarks/coordinator_bench.py
    .venv/bin/python benchmarks/coordinator_bench.py --reps 3 --duration 3 --failover-reps 5
    .venv/bin/python benchmarks/coordinator_bench.py --skip-peers --fsync always
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from paramstore.client import ClientError, CoordinatorClient  # noqa: E402
from paramstore.commands._up import LocalCluster  # noqa: E402

MAX_OPS = 200_000
WARMUP_PUTS = 20
KEYS_PER_CLIENT = 1000
PUT_DEADLINE_S = 5.0
FAILOVER_PROBERS = 4
FAILOVER_LIMIT_S = 20.0
HEALTHY_TIMEOUT_S = 60.0
PEER_TIMEOUT_S = 900.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Set by the first SIGINT/SIGTERM: every loop checks it, so that an interrupt that the gRPC
# client turns into an error (a cancelled call) still ends the run.
STOP = threading.Event()
# Per part of the run, summed over its rounds: (wall seconds, CPU seconds of this run, CPU
# seconds of every other process), from /proc/stat and os.times() (each part reaps every
# process it started before it ends, so their CPU time is in our children's times by then).
PART_CPU: dict[str, tuple[float, float, float]] = {}


def cpu_snapshot() -> tuple[float, float, float]:
    """(monotonic time, CPU seconds busy on the whole machine, CPU seconds of this run)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields)
    times = os.times()
    ours = times.user + times.system + times.children_user + times.children_system
    return time.monotonic(), (user + nice + system + irq + softirq + steal) / CLK_TCK, ours


@contextlib.contextmanager
def part(name: str) -> Iterator[None]:
    """Account the CPU of one part of the run: ours, and other processes' (noise)."""
    t0, busy0, ours0 = cpu_snapshot()
    try:
        yield
    finally:
        t1, busy1, ours1 = cpu_snapshot()
        wall, mine, others = PART_CPU.get(name, (0.0, 0.0, 0.0))
        PART_CPU[name] = (
            wall + (t1 - t0),
            mine + (ours1 - ours0),
            others + max(0.0, (busy1 - busy0) - (ours1 - ours0)),
        )


# ---- figures ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """A median [min-max] over repetitions (None while not measured)."""

    median: float
    low: float
    high: float
    reps: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Figure | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, digits: int = 0) -> str:
        return f"{self.median:,.{digits}f} [{self.low:,.{digits}f}-{self.high:,.{digits}f}]"


def fig_text(value: Figure | None, digits: int = 0) -> str:
    return "-" if value is None else value.text(digits)


@dataclass
class System:
    """What one system got: put cases by name (one value per round, in round order, and
    their figure), and failover."""

    name: str
    note: str = ""
    puts_s: dict[str, Figure] = field(default_factory=dict)
    p50_ms: dict[str, Figure] = field(default_factory=dict)
    p99_ms: dict[str, Figure] = field(default_factory=dict)
    failover_s: Figure | None = None
    failover_reps: list[float] = field(default_factory=list)
    rounds: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def record(self, metric: str, case: str, value: float) -> None:
        """One round's ``metric`` ("puts_s", "p50_ms" or "p99_ms") for ``case``."""
        values = self.rounds.setdefault((metric, case), [])
        values.append(value)
        figure = Figure.of(values)
        assert figure is not None
        getattr(self, metric)[case] = figure


def paired(ours: System, theirs: System | None, metric: str, case: str) -> Figure | None:
    """Ours divided by theirs round by round (both ran in the same round, minutes apart at
    most, so a host that speeds up or slows down between rounds moves both alike): the
    median [min-max] of those ratios. None unless both have a value in every round."""
    if theirs is None:
        return None
    a = ours.rounds.get((metric, case), [])
    b = theirs.rounds.get((metric, case), [])
    if not a or len(a) != len(b) or not all(b):
        return None
    return Figure.of([x / y for x, y in zip(a, b, strict=True)])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


# ---- processes this benchmark started ----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def check_stop() -> None:
    if STOP.is_set():
        raise KeyboardInterrupt("interrupted")


def on_signal(signum: int, frame: object) -> None:
    """First SIGINT/SIGTERM: stop (cleanup runs in ``finally``); later ones are ignored so
    that they cannot interrupt that cleanup."""
    if STOP.is_set():
        return
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


def cleanup(step: Callable[[], None]) -> None:
    """Run one cleanup step to the end even if an interrupt lands in it (it is run again)."""
    try:
        step()
    except KeyboardInterrupt:
        step()
        raise


def session_members(session_id: int) -> list[int]:
    """Live processes (not zombies) of one session, its leader excluded."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == session_id:
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session_id:
            pids.append(int(entry))
    return pids


def stop_session_leftovers(session_id: int, label: str) -> None:
    """Processes a peer script started but did not stop (it was interrupted before its own
    ``try``): SIGTERM, then SIGKILL, each by PID; etcd data dirs they used are removed."""
    pids = session_members(session_id)
    if not pids:
        return
    print(f"[{label}] stopping processes it left behind: {pids}", flush=True)
    data_dirs = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--data-dir" in argv[:-1]:
            data_dirs.append(Path(os.fsdecode(argv[argv.index(b"--data-dir") + 1])).parent)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and session_members(session_id):
            time.sleep(0.1)
        pids = session_members(session_id)
        if not pids:
            break
    for directory in set(data_dirs):
        if directory.name.startswith("peers-etcd-") and directory.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(directory, ignore_errors=True)


def stop_child(process: subprocess.Popen[str], label: str) -> None:
    """Stop one peer script by its PID: SIGINT first (its ``finally`` stops its servers),
    SIGKILL if it is still there after a grace period; then whatever it left behind in its
    session (it runs in a session of its own)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    stop_session_leftovers(process.pid, label)


# ---- paramstore ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    puts_s: float
    latencies: list[float]
    errors: int
    retries: int
    cpu_s: dict[str, float]
    seconds: float


async def put_load(
    cluster: LocalCluster, leader: int, clients: int, duration_s: float, value: bytes, tag: str
) -> LoadResult:
    addresses = cluster.client_addresses
    pool = [CoordinatorClient(addresses, deadline_s=PUT_DEADLINE_S) for _ in range(clients)]
    latencies: list[float] = []
    errors = 0
    try:

        async def warm(j: int, client: CoordinatorClient) -> None:
            for n in range(WARMUP_PUTS):
                await client.put(f"bench/{tag}/warm/{j}/{n}", value)

        await asyncio.gather(*(warm(j, c) for j, c in enumerate(pool)))
        for client in pool:
            client.retries = 0
        pids = {
            f"node {i}" + (" (leader)" if i == leader else ""): p.pid for i, p in cluster.processes.items()
        }
        pids["clients (this process)"] = os.getpid()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        per_client = MAX_OPS // clients
        t0 = time.perf_counter()
        stop = t0 + duration_s

        async def worker(j: int, client: CoordinatorClient) -> None:
            nonlocal errors
            for n in range(per_client):
                start = time.perf_counter()
                if start >= stop or STOP.is_set():
                    break
                try:
                    await client.put(f"bench/{tag}/{j}/{n % KEYS_PER_CLIENT}", value)
                except ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker(j, c) for j, c in enumerate(pool)))
        check_stop()
        seconds = time.perf_counter() - t0
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        retries = sum(c.retries for c in pool)
    finally:
        await asyncio.gather(*(c.close() for c in pool), return_exceptions=True)
    latencies.sort()
    return LoadResult(len(latencies) / seconds, latencies, errors, retries, cpu, seconds)


async def cluster_state(cluster: LocalCluster, need: int) -> tuple[int, list[object]] | None:
    """(leader id, statuses) when ``need`` nodes answer and all name the same leader."""
    async with CoordinatorClient(cluster.client_addresses) as client:
        statuses = [s.response for s in await client.status_all(1.0) if s.response is not None]
    leaders = {s.leader_id for s in statuses}
    if len(statuses) < need or len(leaders) != 1 or 0 in leaders:
        return None
    if not any(s.role == "leader" for s in statuses):
        return None
    return leaders.pop(), list(statuses)


async def wait_healthy(cluster: LocalCluster, need: int = 3, timeout_s: float = HEALTHY_TIMEOUT_S) -> int:
    """Until ``need`` nodes agree on a leader and every answering node has applied what the
    leader had committed; returns the leader id."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_stop()
        state = await cluster_state(cluster, need)
        if state is not None:
            leader, statuses = state
            commit = max(s.commit_index for s in statuses)  # type: ignore[attr-defined]
            if all(s.applied_index + 2 >= commit for s in statuses):  # type: ignore[attr-defined]
                return leader
        await asyncio.sleep(0.1)
    raise TimeoutError(f"coordinator cluster not healthy within {timeout_s:.0f} s")


async def failover_once(cluster: LocalCluster, rep: int) -> tuple[float | None, int, int | None]:
    old = await wait_healthy(cluster)
    probers = [
        CoordinatorClient(
            cluster.client_addresses,
            deadline_s=PUT_DEADLINE_S,
            attempt_timeout_s=0.5,
            attempts_max=10_000,
            backoff_initial_s=0.005,
            backoff_max_s=0.02,
        )
        for _ in range(FAILOVER_PROBERS)
    ]
    first_ok: list[float] = []
    try:
        # Probers know the leader and hold open channels to every node before the kill.
        for j, client in enumerate(probers):
            await client.put(f"bench/failover/{j}", b"warm")
            await client.status_all(1.0)
        await asyncio.sleep(0.3)
        t_kill = time.perf_counter()
        cluster.kill(old, signal.SIGKILL)

        async def probe(j: int, client: CoordinatorClient) -> None:
            await asyncio.sleep(j * 0.0025)  # stagger the probers
            for k in range(10_000):
                if first_ok or STOP.is_set() or time.perf_counter() - t_kill > FAILOVER_LIMIT_S:
                    return
                try:
                    await client.put(f"bench/failover/{j}", b"%d-%d" % (rep, k))
                except ClientError:
                    continue
                first_ok.append(time.perf_counter())
                return

        await asyncio.gather(*(probe(j, c) for j, c in enumerate(probers)))
        check_stop()
    finally:
        await asyncio.gather(*(c.close() for c in probers), return_exceptions=True)
    dt = min(first_ok) - t_kill if first_ok else None
    state = await cluster_state(cluster, 2)
    new = state[0] if state is not None else None
    cluster.start_node(old)
    await wait_healthy(cluster)
    return dt, old, new


def case_line(label: str, runs: list[LoadResult]) -> str:
    ops = Figure.of([r.puts_s for r in runs])
    p50 = Figure.of([percentile(r.latencies, 0.50) * 1e3 for r in runs])
    p99 = Figure.of([percentile(r.latencies, 0.99) * 1e3 for r in runs])
    errors = sum(r.errors for r in runs)
    retries = sum(r.retries for r in runs)
    return (
        f"{label:<34} puts/s {fig_text(ops):<24} p50 ms {fig_text(p50, 2):<20} "
        f"p99 ms {fig_text(p99, 2):<20} errors {errors} retries {retries}"
    )


def cpu_line(runs: list[LoadResult]) -> str:
    """CPU use of each process during the load: % of one core, and us per acknowledged put."""
    parts = []
    total_puts = sum(len(r.latencies) for r in runs)
    total_s = sum(r.seconds for r in runs)
    for name in runs[0].cpu_s:
        cpu = sum(r.cpu_s.get(name, 0.0) for r in runs)
        per_put = cpu / total_puts * 1e6 if total_puts else float("nan")
        parts.append(f"{name} {100 * cpu / total_s:.0f}% ({per_put:.0f} us/put)")
    return "    CPU: " + ", ".join(parts)


async def bench_paramstore(
    system: System, fsync: str, args: argparse.Namespace, value: bytes, *, puts: bool, failover_reps: int
) -> None:
    """One fresh cluster: one repetition of every put case (``puts``), then ``failover_reps``
    failovers."""
    directory = Path(tempfile.mkdtemp(prefix=f"paramstore-bench-{fsync}-", dir="/tmp"))
    cluster = LocalCluster(directory, coordinators=3, fsync=fsync, cluster_id="bench")
    try:
        cluster.start()
        await cluster.wait_for_leader()
        leader = await wait_healthy(cluster)
        pids = ", ".join(f"{i}:{p.pid}" for i, p in cluster.processes.items())
        print(f"[paramstore fsync={fsync}] 3 coordinators up (pids {pids}), leader {leader}", flush=True)
        for clients in (1, args.clients) if puts else ():
            case = "1 client" if clients == 1 else f"{clients} clients"
            leader = await wait_healthy(cluster)
            rnd = len(system.rounds.get(("puts_s", case), []))
            run = await put_load(cluster, leader, clients, args.duration, value, f"{fsync}-{clients}-{rnd}")
            print(f"[paramstore fsync={fsync}] round {rnd + 1}: " + case_line(case, [run]), flush=True)
            print(cpu_line([run]), flush=True)
            system.record("puts_s", case, run.puts_s)
            system.record("p50_ms", case, percentile(run.latencies, 0.5) * 1e3)
            system.record("p99_ms", case, percentile(run.latencies, 0.99) * 1e3)
        if failover_reps > 0:
            for rep in range(failover_reps):
                dt, old, new = await failover_once(cluster, rep)
                shown = "timeout" if dt is None else f"{dt:.3f} s"
                print(
                    f"[paramstore fsync={fsync}] failover rep {rep}: killed node {old} (kill -9), "
                    f"new leader {new if new is not None else '?'}, first acknowledged put after {shown}",
                    flush=True,
                )
                if dt is not None:
                    system.failover_reps.append(dt)
            system.failover_s = Figure.of(system.failover_reps)
            print(
                f"[paramstore fsync={fsync}] failover (kill -9 leader -> first acknowledged put) s: "
                f"{fig_text(system.failover_s, 3)}",
                flush=True,
            )
    finally:
        cleanup(cluster.stop)
        cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))


# ---- peers -----------------------------------------------------------------------------------

_FIG = r"([\d.]+) \[([\d.]+)-([\d.]+)\]"
_ETCD_CASE = re.compile(rf"^(?P<label>\S.*?)\s+puts/s {_FIG}\s+p50 ms {_FIG}\s+p99 ms {_FIG}")
_ETCD_FAILOVER = re.compile(rf"^failover \(kill -9 leader -> first put OK\) s: median {_FIG}")
_PSO_CASE = re.compile(
    rf"^\[(?P<config>\w+)\] caller on (?P<where>\w+)\s+(?P<label>.+?)\s+ops/s {_FIG}"
    rf"(?:\s+p50 ms {_FIG}\s+p99 ms {_FIG})?"
)
_PSO_FAILOVER = re.compile(
    rf"^\[(?P<config>\w+)\] failover \(kill -9 leader -> first committed write\) s: median {_FIG}"
)
_REP_SECONDS = re.compile(r"failover rep \d+: .* after ([\d.]+) s")


def _figure(groups: Sequence[str], reps: int) -> Figure:
    median, low, high = (float(g) for g in groups)
    return Figure(median, low, high, reps)


def run_peer(label: str, argv: list[str], cwd: Path) -> list[str]:
    """Run one peer script, echo its output (prefixed) and return its lines."""
    print(f"[{label}] $ {' '.join(argv)}", flush=True)
    lines: list[str] = []
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        # Its own session: a Ctrl-C here reaches it once, from stop_child, not twice.
        start_new_session=True,
    )

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            print(f"[{label}]   {line}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process.wait(timeout=PEER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"[{label}] still running after {PEER_TIMEOUT_S:.0f} s: stopping it", flush=True)
    finally:
        cleanup(lambda: stop_child(process, label))
        reader.join(timeout=10)
    if process.returncode != 0:
        print(f"[{label}] exited with {process.returncode}", flush=True)
    return lines


def etcd_round(system: System, args: argparse.Namespace, python: str) -> None:
    """One repetition of etcd's put cases on a fresh 3-member cluster: one value per case."""
    argv = [
        python, str(args.peers_dir / "etcd_bench.py"), "--value-size", str(args.value_size),
        "--clients", str(args.clients), "--reps", "1", "--duration", str(args.duration), "--skip-failover",
    ]  # fmt: skip
    cases = {"1 client -> leader": "1 client", f"{args.clients} clients -> leader": f"{args.clients} clients"}
    for line in run_peer("etcd", argv, args.peers_dir):
        if line.startswith("etcd Version"):
            system.note = line.split(";")[0].replace("etcd Version: ", "etcd ") + ", 3 members, grpcio client"
        m = _ETCD_CASE.match(line)
        if m:
            label = m.group("label").strip()
            name = cases.get(label, label)
            system.record("puts_s", name, float(m.group(2)))
            system.record("p50_ms", name, float(m.group(5)))
            system.record("p99_ms", name, float(m.group(8)))


def etcd_failover(system: System, args: argparse.Namespace, python: str) -> None:
    argv = [
        python, str(args.peers_dir / "etcd_bench.py"), "--value-size", str(args.value_size),
        "--clients", str(args.clients), "--reps", str(args.failover_reps), "--duration", "0.1",
    ]  # fmt: skip
    for line in run_peer("etcd", argv, args.peers_dir):
        r = _REP_SECONDS.search(line)
        if r and line.startswith("failover rep"):
            system.failover_reps.append(float(r.group(1)))
        m = _ETCD_FAILOVER.match(line)
        if m:
            system.failover_s = _figure(m.groups(), len(system.failover_reps))


def pysyncobj_systems() -> dict[str, System]:
    return {
        "default": System("PySyncObj default", "3 processes, SyncObjConf(), in-memory journal, 64 B values"),
        "nobatch": System(
            "PySyncObj nobatch", "3 processes, appendEntriesUseBatch=False, in-memory journal, 64 B values"
        ),
    }


def pysyncobj_round(systems: dict[str, System], args: argparse.Namespace, python: str) -> None:
    """One repetition of PySyncObj's cases (both configs): one value per case."""
    argv = [
        python, str(args.peers_dir / "pysyncobj_bench.py"), "--reps", "1", "--duration", str(args.duration),
        "--configs", "default,nobatch", "--skip-failover",
    ]  # fmt: skip
    cases = {"1 caller sync": "1 client", "16 threads sync": "16 clients"}  # 16 is fixed there
    for line in run_peer("pysyncobj", argv, args.peers_dir):
        m = _PSO_CASE.match(line)
        if m and m.group("where") == "leader":
            system = systems[m.group("config")]
            name = cases.get(m.group("label").strip(), m.group("label").strip())
            groups = m.groups()
            system.record("puts_s", name, float(groups[3]))
            if groups[6] is not None:
                system.record("p50_ms", name, float(groups[6]))
                system.record("p99_ms", name, float(groups[9]))


def pysyncobj_failover(systems: dict[str, System], args: argparse.Namespace, python: str) -> None:
    argv = [
        python, str(args.peers_dir / "pysyncobj_bench.py"), "--reps", str(args.failover_reps),
        "--duration", "0.1", "--configs", "default",
    ]  # fmt: skip
    for line in run_peer("pysyncobj", argv, args.peers_dir):
        r = _REP_SECONDS.search(line)
        c = re.match(r"^\[(\w+)\] failover rep", line)
        if r and c:
            systems[c.group(1)].failover_reps.append(float(r.group(1)))
        m = _PSO_FAILOVER.match(line)
        if m:
            system = systems[m.group("config")]
            system.failover_s = _figure(m.groups()[1:4], len(system.failover_reps))


# ---- report ----------------------------------------------------------------------------------


def machine_line() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"nproc {nproc}, CPU {model}{mem}, Linux {platform.release()}, Python {platform.python_version()} "
        f"(grpcio {grpc.__version__})"
    )


def ratio_text(ours: System, theirs: System | None, metric: str, case: str) -> str:
    """The round-by-round ratio (see ``paired``), else the ratio of the medians."""
    within = paired(ours, theirs, metric, case)
    if within is not None:
        return f"{within.median:.2f}x [{within.low:.2f}-{within.high:.2f}]"
    if theirs is None:
        return "-"
    return ratio(getattr(ours, metric).get(case), getattr(theirs, metric).get(case))


def ratio(ours: Figure | None, theirs: Figure | None, digits: int = 2) -> str:
    if ours is None or theirs is None or theirs.median == 0:
        return "-"
    return f"{ours.median / theirs.median:.{digits}f}x"


def report(
    ours: dict[str, System], etcd: System | None, pso: dict[str, System], args: argparse.Namespace
) -> None:
    many = f"{args.clients} clients"
    columns: list[System] = [ours[f] for f in args.fsync]
    if etcd is not None:
        columns.append(etcd)
    columns.extend(pso.values())
    durable = ours.get("always") or next(iter(ours.values()))
    pso_default = pso.get("default")
    pso_nobatch = pso.get("nobatch")
    candidates = [("etcd", etcd), ("PySyncObj default", pso_default), ("PySyncObj nobatch", pso_nobatch)]
    compare: list[tuple[str, System]] = [(n, s) for n, s in candidates if s is not None]
    rows: list[tuple[str, list[str], list[str]]] = []

    def row(label: str, metric: str, case: str, digits: int) -> None:
        cells = [fig_text(getattr(s, metric).get(case), digits) for s in columns]
        ratios = [ratio_text(durable, s, metric, case) for _, s in compare]
        rows.append((label, cells, ratios))

    row("puts/s, 1 client", "puts_s", "1 client", 0)
    row(f"puts/s, {many}", "puts_s", many, 0)
    row("p50 ms, 1 client", "p50_ms", "1 client", 2)
    row("p99 ms, 1 client", "p99_ms", "1 client", 2)
    row(f"p50 ms, {many}", "p50_ms", many, 2)
    row(f"p99 ms, {many}", "p99_ms", many, 2)
    failover_ratios = [ratio(durable.failover_s, s.failover_s) for _, s in compare]
    rows.append(
        (
            "failover s (kill -9 leader -> write ack)",
            [fig_text(s.failover_s, 3) for s in columns],
            failover_ratios,
        )
    )

    names = [("paramstore " + f"fsync={f}") for f in args.fsync] + [
        s.name for s in columns[len(args.fsync) :]
    ]
    head = ["case", *names, *(f"{durable.name.split()[-1]} / {n}" for n, _ in compare)]
    print()
    print(
        f"## Coordinator puts vs etcd and PySyncObj ({args.value_size} B values; median [min-max] of "
        f"{args.reps} rounds x {args.duration:g} s; failover: {args.failover_reps} reps)"
    )
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for label, cells, ratios in rows:
        print("| " + " | ".join([label, *cells, *ratios]) + " |")
    print()
    print(
        f"Ratios: paramstore {durable.name.split()[-1]} divided by the peer within each round, median "
        "[min-max] over the rounds (failover: ratio of the medians); puts/s: higher is better; ms and s: "
        "lower is better. Each round runs every system once, one after the other."
    )
    for s in columns[len(args.fsync) :]:
        print(f"- {s.name}: {s.note}" + (f"; failover reps {s.failover_reps}" if s.failover_reps else ""))
    for f in args.fsync:
        reps = ", ".join(f"{x:.3f}" for x in ours[f].failover_reps)
        print(f"- paramstore fsync={f}: failover reps [{reps}] s")
    print(f"Machine: {machine_line()}")
    noise = ", ".join(
        f"{name} {others / wall:.2f} (ours {mine / wall:.2f})"
        for name, (wall, mine, others) in PART_CPU.items()
    )
    print(f"CPU cores used by other processes on the machine during each part: {noise}")
    print("Command: " + " ".join([Path(sys.executable).name, *sys.argv]))

    print()
    policy = durable.name.split()[-1]
    why = (
        "every write synced before it is acknowledged, as etcd does"
        if policy == "fsync=always"
        else "NOT like etcd: acknowledged writes may be unsynced; add --fsync always"
    )
    print(f"Targets (paramstore {policy}: {why}):")

    def target(label: str, ok: bool | None, detail: str) -> None:
        verdict = "n/a (not measured)" if ok is None else ("MET" if ok else "NOT MET")
        print(f"- {label}: {verdict} ({detail})")

    ours_many = durable.puts_s.get(many)
    etcd_many = etcd.puts_s.get(many) if etcd else None
    many_ratio = paired(durable, etcd, "puts_s", many)
    target(
        f"{many} puts/s >= etcd's",
        None if many_ratio is None else many_ratio.median >= 1.0,
        f"{ratio_text(durable, etcd, 'puts_s', many)} of etcd's, round by round; "
        f"{fig_text(ours_many)} vs etcd {fig_text(etcd_many)}",
    )
    pso_many = pso_default.puts_s.get(many) if pso_default else None
    target(
        f"{many} puts/s ahead of PySyncObj default",
        None if ours_many is None or pso_many is None else ours_many.median > pso_many.median,
        f"{fig_text(ours_many)} vs {fig_text(pso_many)}",
    )
    ours_p50 = durable.p50_ms.get("1 client")
    etcd_p50 = etcd.p50_ms.get("1 client") if etcd else None
    p50_ratio = paired(durable, etcd, "p50_ms", "1 client")
    target(
        "1-client p50 within 2x of etcd's",
        None if p50_ratio is None else p50_ratio.median <= 2.0,
        f"{ratio_text(durable, etcd, 'p50_ms', '1 client')} of etcd's, round by round; "
        f"{fig_text(ours_p50, 2)} ms vs etcd {fig_text(etcd_p50, 2)} ms",
    )
    fo = durable.failover_s
    target(
        "failover median < 0.6 s (default timeouts)",
        None if fo is None else fo.median < 0.6,
        f"{fig_text(fo, 3)} s",
    )


# ---- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reps", type=int, default=3, help="rounds: repetitions per put case and system (default 3)"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per repetition (default 3)")
    parser.add_argument(
        "--failover-reps", type=int, default=5, help="failover repetitions (default 5; 0 skips)"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--value-size", type=int, default=256, help="value bytes (default 256)")
    parser.add_argument(
        "--fsync",
        default="batch,always",
        help="comma list of paramstore fsync policies (default batch,always)",
    )
    parser.add_argument("--skip-peers", action="store_true", help="do not run etcd and PySyncObj")
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=Path(os.environ.get("PEERS_DIR", ROOT.parent / "shared" / "peers")),
        help="where etcd_bench.py and pysyncobj_bench.py are (default ../shared/peers)",
    )
    parser.add_argument(
        "--peers-venv",
        type=Path,
        default=Path(os.environ.get("PEERS_VENV", Path.home() / "peers-venv")),
        help="virtualenv with the peers' packages (default $PEERS_VENV or ~/peers-venv)",
    )
    args = parser.parse_args()
    args.fsync = [f.strip() for f in args.fsync.split(",") if f.strip()]
    for f in args.fsync:
        if f not in ("batch", "always", "never"):
            parser.error(f"--fsync: unknown policy {f!r}")
    if args.reps < 1 or args.duration <= 0 or args.clients < 1 or args.failover_reps < 0:
        parser.error("--reps and --clients must be >= 1, --duration > 0, --failover-reps >= 0")
    return args


def main() -> int:
    args = parse_args()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted: every process this run started has been stopped", flush=True)
        return 130


def run(args: argparse.Namespace) -> int:
    print(f"Machine: {machine_line()}")
    print(
        f"paramstore coordinator: 3 processes on 127.0.0.1, {args.value_size} B values, keys cycle over "
        f"{KEYS_PER_CLIENT} per client; median [min-max] of {args.reps} rounds x {args.duration:g} s; "
        f"failover {args.failover_reps} reps; default Raft timing (tick 25 ms, election 10 ticks)",
        flush=True,
    )
    value = os.urandom(args.value_size)
    ours = {f: System(f"paramstore fsync={f}") for f in args.fsync}
    python = str(args.peers_venv / "bin" / "python")
    with_peers = not args.skip_peers
    if with_peers and (not Path(python).exists() or shutil.which("etcd") is None):
        print(
            f"peers skipped: {python} or etcd missing (run: bash {args.peers_dir / 'setup.sh'})", flush=True
        )
        with_peers = False
    etcd = System("etcd", "3 members, grpcio client") if with_peers else None
    pso = pysyncobj_systems() if with_peers else {}

    def every_system(failover: bool) -> None:
        """One repetition of every put case of every system, or (``failover``) the failovers."""
        for f in args.fsync:
            with part(f"paramstore fsync={f}"):
                reps = args.failover_reps if failover else 0
                asyncio.run(bench_paramstore(ours[f], f, args, value, puts=not failover, failover_reps=reps))
            check_stop()
        if etcd is not None:
            with part("etcd"):
                (etcd_failover if failover else etcd_round)(etcd, args, python)
            check_stop()
            with part("pysyncobj"):
                (pysyncobj_failover if failover else pysyncobj_round)(pso, args, python)
            check_stop()

    # Round-robin: each round runs every system once, so that every system sees the same
    # host (whose speed drifts by up to 2x over minutes here), and ratios are taken within
    # a round.
    for rnd in range(args.reps):
        print(f"--- round {rnd + 1} of {args.reps}", flush=True)
        every_system(failover=False)
    if args.failover_reps > 0:
        print("--- failover", flush=True)
        every_system(failover=True)
    report(ours, etcd, pso, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
