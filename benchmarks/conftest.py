"""What the benchmark files share: the thread count, a pause between
benchmarks, and the roofline helpers."""

import os
import time

import numpy as np
import pytest

# FASTXENT_BENCH_THREADS sets every competitor's thread count (default 2,
# the figures in the README).
THREADS = int(os.environ.get("FASTXENT_BENCH_THREADS", "2"))


@pytest.fixture(autouse=True)
def settle():
    # OpenMP workers (PyTorch's, ours) spin for a while after a call and would
    # steal the cores from whichever competitor runs next.
    time.sleep(0.05)
    yield


def parallel_copy(dst, src, pool):
    """memcpy on THREADS threads (NumPy releases the GIL while copying)."""
    parts = list(zip(np.array_split(dst, THREADS), np.array_split(src, THREADS)))
    list(pool.map(lambda pair: np.copyto(*pair), parts))


def parallel_add(dst, a, b, pool):
    """dst = a + b on THREADS threads: the traffic of an elementwise kernel
    that reads two arrays and writes one, with next to no arithmetic."""
    parts = zip(*(np.array_split(arr.reshape(-1), THREADS) for arr in (dst, a, b)))
    list(pool.map(lambda part: np.add(part[1], part[2], out=part[0]), parts))
