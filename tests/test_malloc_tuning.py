"""The daemons' malloc tuning: freed big buffers are reused, not faulted in afresh.

Counted, not timed: each process allocates and fills 32 buffers of 1 MiB (as a store's
entries of one append), frees them all, 20 times over, and reports its minor page faults.
Without the tuning glibc gives the freed heap back each time and faults it in again (256
faults per MiB); with it the pages of the first round are reused.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from paramstore._malloc_tuning import keep_freed_buffers_for_reuse

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 20
BUFFERS = 32
BUFFER_BYTES = 1 << 20
PAGES_PER_ROUND = BUFFERS * BUFFER_BYTES // 4096

_PROGRAM = f"""
import resource, sys
from paramstore._malloc_tuning import keep_freed_buffers_for_reuse
applied = keep_freed_buffers_for_reuse() if sys.argv[1] == "tuned" else None
def one_round():
    buffers = [bytearray({BUFFER_BYTES}) for _ in range({BUFFERS})]  # zero-filled: pages written
    del buffers
one_round()  # the first round faults in either case
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({ROUNDS}):
    one_round()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(applied, after - before)
"""

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="mallopt's thresholds are glibc's",
)


def _faults(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    applied, faults = done.stdout.split()
    return applied, int(faults)


@glibc_only
def test_with_the_tuning_freed_buffers_are_reused_without_page_faults() -> None:
    _, plain = _faults("plain")
    applied, tuned = _faults("tuned")

    assert plain > ROUNDS * PAGES_PER_ROUND // 2, plain
    assert applied == "True"
    assert tuned < PAGES_PER_ROUND, tuned


@glibc_only
def test_a_threshold_the_user_set_is_left_as_it_is() -> None:
    applied, faults = _faults("tuned", {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)})

    assert applied == "False"
    assert faults > ROUNDS * PAGES_PER_ROUND // 2, faults


def test_it_runs_in_this_process_without_error() -> None:
    assert keep_freed_buffers_for_reuse() in (True, False)
