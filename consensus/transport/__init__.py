"""The gRPC transport between the nodes of a Raft group (no Raft rules inside).

    transport = Transport(1, "127.0.0.1:0", peers={2: "10.0.0.2:7000"}, on_message=node.deliver)
    await transport.start()          # serves RaftTransport and RaftAdmin on transport.port
    transport.send(msg)              # never blocks; best effort, like any network
    transport.inject_fault(FaultRule(peers=frozenset({2}), drop_probability=0.1))
    print(transport.counters())
    await transport.close()

Wire schema: ``proto/raft_service.proto``. Each node keeps one client-streaming
``RaftTransport.Stream`` call open to each peer and writes ``RaftBatch`` messages on it.
``AdminClient`` drives another node's fault rules through ``RaftAdmin``, and its tick rate
(``SetTickRate``: the ``RaftNode`` sending through ``transport.send`` ticks faster or slower).
"""

from consensus.transport._admin import AdminClient, fault_rule_from_proto, fault_rule_to_proto
from consensus.transport._config import TransportConfig
from consensus.transport._errors import FaultRuleError, MessageTooLargeError, TransportError
from consensus.transport._faults import FaultDirection, FaultInjector, FaultRule
from consensus.transport._framing import batch_header, encode_batch
from consensus.transport._transport import Transport

__all__ = [
    "AdminClient",
    "FaultDirection",
    "FaultInjector",
    "FaultRule",
    "FaultRuleError",
    "MessageTooLargeError",
    "Transport",
    "TransportConfig",
    "TransportError",
    "batch_header",
    "encode_batch",
    "fault_rule_from_proto",
    "fault_rule_to_proto",
]
