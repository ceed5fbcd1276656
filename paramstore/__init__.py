"""paramstore: a Raft-replicated, hash-sharded parameter server for JAX training.

So far this package holds only the command-line entry point (``paramstore.cli``); the
sharding, state machines, optimizers, services and daemons arrive in later issues.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
