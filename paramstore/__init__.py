"""paramstore: a Raft-replicated, hash-sharded parameter server for JAX training.

The coordinator's state machine is in ``paramstore.coordinator``, the store groups' in
``paramstore.shard``, the gRPC services and daemons in ``paramstore.server``, and the
command line in ``paramstore.cli``; the worker client is the separate ``workers`` package.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
