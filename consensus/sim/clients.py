"""What the simulated clients did and were told: the history reads are checked against.

A proposal is *acknowledged* when the node that accepted it applies its entry (the same
index and term) and so can tell the client; that is the moment a later read must reflect
it. A read is *invoked* when the client calls ``read_index`` and *completes* when the node
serves it from its state machine. Linearizability of reads then comes down to: a completed
read reflects every proposal acknowledged before it was invoked, and nothing proposed after
it completed. Both reduce to O(1) checks per read because the register is a prefix of one
global sequence (which State Machine Safety, checked separately, guarantees).
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.messages import Entry
from consensus.sim.invariants import LINEARIZABLE_READ, InvariantViolation
from consensus.sim.state_machine import RegisterStateMachine


@dataclass(slots=True)
class Proposal:
    payload: bytes
    node_id: int
    incarnation: int
    index: int
    term: int
    proposed_at_ms: int
    acked_at_ms: int | None = None
    lost: bool = False


@dataclass(slots=True)
class PendingRead:
    request_id: bytes
    node_id: int
    incarnation: int
    invoked_at_ms: int
    # The highest log index of a proposal acknowledged before the read was invoked.
    required_index: int
    required_payload: bytes | None


@dataclass(slots=True)
class ClientStats:
    proposals: int = 0
    acked: int = 0
    lost: int = 0
    not_leader: int = 0
    dropped: int = 0
    unavailable: int = 0
    reads_started: int = 0
    reads_completed: int = 0
    reads_refused: int = 0


class ClientHistory:
    """Proposals, acknowledgements and reads of all clients of one schedule."""

    def __init__(self, clients: int) -> None:
        self._next_seq = [0] * clients
        self.leader_guess = [0] * clients
        # Each client's latest proposal and read, to notice when it waits too long.
        self.last_proposal: list[Proposal | None] = [None] * clients
        self.last_read: list[PendingRead | None] = [None] * clients
        self._read_seq = 0
        self.proposals: dict[bytes, Proposal] = {}
        # (node, incarnation, index) -> payload the client waits to hear about.
        self._waiting: dict[tuple[int, int, int], bytes] = {}
        self.reads: dict[bytes, PendingRead] = {}
        self.completed_reads: set[bytes] = set()
        self._acked_max_index = 0
        self._acked_max_payload: bytes | None = None
        self.stats = ClientStats()

    @property
    def clients(self) -> int:
        return len(self._next_seq)

    def next_payload(self, client: int) -> bytes:
        """A payload no client ever used before: ``c{client}-{n}``."""
        self._next_seq[client] += 1
        return b"c%d-%d" % (client, self._next_seq[client])

    def next_read_id(self) -> bytes:
        self._read_seq += 1
        return b"r%d" % self._read_seq

    # ---- proposals ------------------------------------------------------------------------

    def on_proposed(
        self, payloads: list[bytes], node_id: int, incarnation: int, last_index: int, term: int, now_ms: int
    ) -> None:
        first = last_index - len(payloads) + 1
        for offset, payload in enumerate(payloads):
            index = first + offset
            self.proposals[payload] = Proposal(payload, node_id, incarnation, index, term, now_ms)
            self._waiting[(node_id, incarnation, index)] = payload
        self.stats.proposals += len(payloads)

    def note_client_request(self, client: int, payload: bytes | None, read_id: bytes | None) -> None:
        if payload is not None:
            self.last_proposal[client] = self.proposals[payload]
        if read_id is not None:
            self.last_read[client] = self.reads[read_id]

    def client_stuck(self, client: int, now_ms: int, timeout_ms: int) -> bool:
        """The client's last request went unanswered for ``timeout_ms``: time to try elsewhere."""
        proposal = self.last_proposal[client]
        if (
            proposal is not None
            and proposal.acked_at_ms is None
            and now_ms - proposal.proposed_at_ms > timeout_ms
        ):
            return True
        read = self.last_read[client]
        return read is not None and read.request_id in self.reads and now_ms - read.invoked_at_ms > timeout_ms

    def on_applied(self, node_id: int, incarnation: int, entry: Entry, now_ms: int) -> None:
        """The node that accepted a proposal applied that index: acknowledge it, or learn it was lost."""
        payload = self._waiting.pop((node_id, incarnation, entry.index), None)
        if payload is None:
            return
        proposal = self.proposals[payload]
        if entry.term == proposal.term and entry.data == payload:
            proposal.acked_at_ms = now_ms
            self.stats.acked += 1
            if entry.index > self._acked_max_index:
                self._acked_max_index = entry.index
                self._acked_max_payload = payload
        else:
            proposal.lost = True
            self.stats.lost += 1

    def forget_node(self, node_id: int, incarnation: int) -> None:
        """The node crashed: nobody will tell the clients about what it accepted."""
        stale = [key for key in self._waiting if key[0] == node_id and key[1] == incarnation]
        for key in stale:
            del self._waiting[key]
        for request_id in [r for r, read in self.reads.items() if read.node_id == node_id]:
            del self.reads[request_id]

    def max_proposed_at_ms(self, payloads: list[bytes]) -> int:
        return max((self.proposals[p].proposed_at_ms for p in payloads if p in self.proposals), default=-1)

    # ---- reads ----------------------------------------------------------------------------

    def on_read_started(self, request_id: bytes, node_id: int, incarnation: int, now_ms: int) -> None:
        self.reads[request_id] = PendingRead(
            request_id, node_id, incarnation, now_ms, self._acked_max_index, self._acked_max_payload
        )
        self.stats.reads_started += 1

    def on_read_state(self, node_id: int, request_id: bytes, index: int) -> PendingRead | None:
        """The core says the read is safe at ``index``: that index must cover every earlier ack."""
        read = self.reads.get(request_id)
        if read is None or read.node_id != node_id:
            raise InvariantViolation(
                LINEARIZABLE_READ, f"node {node_id} released read {request_id!r} that it was never asked for"
            )
        if index < read.required_index:
            raise InvariantViolation(
                LINEARIZABLE_READ,
                f"node {node_id} releases read {request_id!r} at index {index}, but index "
                f"{read.required_index} was acknowledged before the read was invoked "
                f"at {read.invoked_at_ms}ms",
            )
        return read

    def on_read_served(
        self, read: PendingRead, machine: RegisterStateMachine, max_proposed_at_ms: int, now_ms: int
    ) -> None:
        """The read returns ``machine``'s state now: check it against real-time order."""
        del self.reads[read.request_id]
        if machine.applied_index < read.required_index or (
            read.required_payload is not None and read.required_payload not in machine.members
        ):
            raise InvariantViolation(
                LINEARIZABLE_READ,
                f"read {read.request_id!r} on node {read.node_id} returned state at index "
                f"{machine.applied_index} without {read.required_payload!r} (index {read.required_index}), "
                f"acknowledged before the read was invoked at {read.invoked_at_ms}ms",
            )
        if max_proposed_at_ms > now_ms:
            raise InvariantViolation(
                LINEARIZABLE_READ,
                f"read {read.request_id!r} completed at {now_ms}ms with a payload proposed "
                f"at {max_proposed_at_ms}ms",
            )
        self.stats.reads_completed += 1
        self.completed_reads.add(read.request_id)
