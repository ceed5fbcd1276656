"""A bounded trace of what the simulation did, for explaining a violation.

Recording has to be cheap because it happens for every event of thousands of schedules,
while reading it back happens only when something broke. So a record is a tuple of the raw
objects, and turning it into text waits until ``tail()`` is asked for.
"""

from __future__ import annotations

from collections import deque

from consensus.messages import Message, MessageType

TRACE_LINES_MAX = 200

_SHORT_TYPE = {
    MessageType.VOTE: "Vote",
    MessageType.VOTE_RESPONSE: "VoteResp",
    MessageType.PRE_VOTE: "PreVote",
    MessageType.PRE_VOTE_RESPONSE: "PreVoteResp",
    MessageType.APPEND: "App",
    MessageType.APPEND_RESPONSE: "AppResp",
    MessageType.HEARTBEAT: "HB",
    MessageType.HEARTBEAT_RESPONSE: "HBResp",
    MessageType.SNAPSHOT: "Snap",
    MessageType.SNAPSHOT_RESPONSE: "SnapResp",
    MessageType.TIMEOUT_NOW: "TimeoutNow",
}


def describe_message(msg: Message) -> str:
    """One short line: ``App 1->2 t3 prev=(7,2) n=3 c=6``."""
    text = f"{_SHORT_TYPE.get(msg.type, str(msg.type))} {msg.sender}->{msg.recipient} t{msg.term}"
    t = msg.type
    if t == MessageType.APPEND:
        text += f" prev=({msg.index},{msg.log_term}) n={len(msg.entries)} c={msg.commit}"
        if msg.entries:
            text += f" [{msg.entries[0].index}..{msg.entries[-1].index}]"
    elif t in (MessageType.VOTE, MessageType.PRE_VOTE):
        text += f" last=({msg.index},{msg.log_term})" + (" force" if msg.force else "")
    elif t == MessageType.APPEND_RESPONSE:
        text += f" idx={msg.index}" + (f" REJECT hint={msg.reject_hint}/{msg.log_term}" if msg.reject else "")
    elif t == MessageType.HEARTBEAT:
        text += f" c={msg.commit} round={msg.context}"
    elif t == MessageType.HEARTBEAT_RESPONSE:
        text += f" round={msg.context}"
    elif t in (MessageType.SNAPSHOT, MessageType.SNAPSHOT_RESPONSE):
        meta = msg.snapshot_meta
        if meta is not None:
            text += f" snap=({meta.index},{meta.term}) off={msg.chunk_offset}"
        if t == MessageType.SNAPSHOT_RESPONSE:
            text += f" idx={msg.index}"
    if msg.reject and t != MessageType.APPEND_RESPONSE:
        text += " REJECT"
    return text


class Trace:
    """The last ``lines_max`` events, each as ``(time_ms, what, detail)``."""

    def __init__(self, lines_max: int = TRACE_LINES_MAX) -> None:
        self._records: deque[tuple[int, str, object]] = deque(maxlen=lines_max)

    def add(self, time_ms: int, what: str, detail: object = "") -> None:
        self._records.append((time_ms, what, detail))

    def tail(self, lines: int | None = None) -> list[str]:
        records = list(self._records)
        if lines is not None:
            records = records[-lines:]
        out = []
        for time_ms, what, detail in records:
            text = describe_message(detail) if isinstance(detail, Message) else str(detail)
            out.append(f"{time_ms:>7}ms {what:<10} {text}".rstrip())
        return out
