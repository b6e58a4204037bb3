"""Interleaved timing: every round runs each implementation once, so that
machine noise (other processes, frequency changes) hits them all alike; and
the memory roofline, a copy of the same bytes on the same threads, timed in
the same rounds."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MIN_ROUNDS = 3
SETTLE_S = 0.005  # OpenMP workers spin after a call; let them sleep before the next one


class Copy:
    """memcpy of an array on ``threads`` threads (NumPy releases the GIL
    while copying): the bandwidth bound that a kernel reading an array and
    writing one as large can reach."""

    def __init__(self, src, threads):
        self.src = src.reshape(-1)
        self.dst = np.empty_like(self.src)
        self.parts = list(zip(np.array_split(self.dst, threads),
                              np.array_split(self.src, threads)))
        self.pool = ThreadPoolExecutor(threads)

    def __call__(self):
        list(self.pool.map(lambda pair: np.copyto(*pair), self.parts))

    def close(self):
        self.pool.shutdown()


def interleaved(calls, repeat, budget_s):
    """{name: [seconds, ...]}: up to ``repeat`` rounds of every call, and at
    least MIN_ROUNDS; no round starts once ``budget_s`` has passed."""
    times = {name: [] for name in calls}
    start = time.perf_counter()
    for done in range(max(repeat, MIN_ROUNDS)):
        if done >= MIN_ROUNDS and time.perf_counter() - start > budget_s:
            break
        for name, call in calls.items():
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(seconds):
    """median, and spread as the interquartile range over the median."""
    seconds = np.asarray(seconds)
    median = float(np.median(seconds))
    q1, q3 = np.percentile(seconds, [25, 75])
    return median, float((q3 - q1) / median) if median > 0 else 0.0
