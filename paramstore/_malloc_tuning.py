"""Keep freed big buffers in the process for reuse, instead of handing them back to the OS.

A store replica copies every gradient a few times (the bytes grpc hands over, the entries
parsed out of them, the log record, the apply), each copy a fresh buffer of up to several
MiB. glibc's malloc serves such a buffer with its own ``mmap`` and gives it back with
``munmap`` when it is freed (or trims it off the top of its heap), so every copy lands on
pages the kernel has to fault in one by one: on the 2-core VM the README's figures come
from, writing fresh pages ran at ~1.8 GB/s against ~12 GB/s for pages malloc had kept
(copying 16 MiB of 1 MiB entries out of a parsed batch: ~9.5 ms against ~1.4 ms).

Raising the mmap threshold (to 1 GiB; a glibc that refuses that much gets 32 MiB, the
limit some versions keep on 64-bit) makes malloc carve such buffers from its heap, and
raising the trim threshold keeps what was freed there, so the next push reuses warm pages.
The store daemon does this at start; before it did, users got the push throughput that
``benchmarks/store_bench.py --malloc default`` measured, a fraction of ``--malloc tuned``'s
(see the README).

A worker process meets the same cost on the other side: every pull of a big model lands in
fresh buffers. Changing the malloc of a process the user owns is theirs to decide, so the
client library never does it by itself; ``paramstore.client.keep_freed_buffers_for_reuse``
(also ``workers.keep_freed_buffers_for_reuse``) is the one call that opts in, and the demo's
workers make it.

The cost is memory the process holds after a burst: up to ``TRIM_THRESHOLD_BYTES`` of
freed heap stays mapped. A daemon that holds a model's parameters already holds far more,
and so does a worker that pulls them.

Only glibc has ``mallopt`` with these meanings; elsewhere this does nothing. A user who
set glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` keeps their values.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = [
    "MMAP_THRESHOLD_BYTES",
    "MMAP_THRESHOLD_FALLBACK_BYTES",
    "TRIM_THRESHOLD_BYTES",
    "keep_freed_buffers_for_reuse",
]

MMAP_THRESHOLD_BYTES = 1 << 30
# The most some glibc versions accept on 64-bit (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD_FALLBACK_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30

# mallopt parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_ENV_OVERRIDES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_log = logging.getLogger(__name__)


def keep_freed_buffers_for_reuse() -> bool:
    """Set glibc's mmap and trim thresholds as the module docstring says; True when both
    took effect, False where there is no glibc or the user set either threshold."""
    if any(name in os.environ for name in _ENV_OVERRIDES):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it: the check that this is glibc
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mmap_set = int(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) == 1
    mmap_set = mmap_set or int(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_FALLBACK_BYTES)) == 1
    trim_set = int(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) == 1
    applied = mmap_set and trim_set
    if not applied:
        _log.warning("glibc refused the malloc thresholds; big buffers stay mmap-backed")
    return applied
