"""What ``fastxent.evaluate`` costs over the loss alone, kernel by kernel and
through the public API.

    python benchmarks/evaluate_overhead.py [--threads 1,2] [--backends cython,numba]

For each shape: the evaluate kernel against the loss-only kernel (the same
rows, labels and thread count, called directly), then ``fastxent.evaluate``
against ``fastxent.cross_entropy`` (validation, chunks and the host's means
included), and ``evaluate(per_sample=True)`` (each sample's values written,
the argmax of every row found) against the same. Calls are interleaved and
timed in rounds; each figure is the median over the rounds of the median of
a round.
"""

import argparse
import time

import numpy as np

import fastxent
from fastxent._backends import get_kernel
from fastxent._evaluate import _block_rows, _block_sums

SHAPES = [(65536, 10), (16384, 100), (8192, 1000), (512, 32000)]


def median_ms(fn, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def timed(calls_by_name, rounds=7, calls=9):
    """Median ms of each call, in interleaved rounds."""
    for fn in calls_by_name.values():
        fn()  # compiled and in cache
    figures = {name: [] for name in calls_by_name}
    for _ in range(rounds):
        for name, fn in calls_by_name.items():
            figures[name].append(median_ms(fn, calls))
    return {name: float(np.median(values)) for name, values in figures.items()}


def calls_for(backend, threads, z, y):
    n_rows = z.shape[0]
    no_weight = np.empty(0, z.dtype)
    scale, loss = np.zeros(n_rows), np.empty(n_rows)
    no_grad = np.empty((0, 0), z.dtype)
    topk = np.array([1, 5], np.int64)
    block_rows = _block_rows(z.shape[1])
    sums = _block_sums(n_rows, block_rows, (1, 5))
    no_rows = [np.empty(0)] * 3 + [np.empty(0, np.int64)] * 2
    loss_kernel = get_kernel("xent_index", backend, threads)
    evaluate_kernel = get_kernel("evaluate", backend, threads)
    kw = dict(backend=backend, num_threads=threads)
    return {
        "kernel loss": lambda: loss_kernel(z, y, no_weight, 0.0, -100, 0.0, 0.0, scale, loss,
                                           no_grad, threads),
        "kernel evaluate": lambda: evaluate_kernel(z, y, no_weight, np.empty(0), -100, topk,
                                                   block_rows, sums, *no_rows, threads),
        "api loss": lambda: fastxent.cross_entropy(z, y, **kw),
        "api evaluate": lambda: fastxent.evaluate(z, y, **kw),
        "api per-sample": lambda: fastxent.evaluate(z, y, per_sample=True, **kw),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--backends", default="cython,numba")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'backend':8} {'shape':>10} {'threads':>7}  {'kernel: loss  evaluate  ratio':>30}"
          f"  {'API: loss  evaluate  ratio':>27}  {'per-sample  ratio':>17}")
    for n_rows, n_classes in SHAPES:
        z = rng.standard_normal((n_rows, n_classes)).astype(np.float32)
        y = rng.integers(0, n_classes, n_rows)
        for backend in args.backends.split(","):
            for threads in map(int, args.threads.split(",")):
                t = timed(calls_for(backend, threads, z, y))
                kernel = t["kernel evaluate"] / t["kernel loss"]
                api = t["api evaluate"] / t["api loss"]
                each = t["api per-sample"] / t["api loss"]
                print(f"{backend:8} {n_rows:>5}x{n_classes:<5} {threads:>6}  "
                      f"{t['kernel loss']:13.3f} {t['kernel evaluate']:9.3f} {kernel:6.2f}"
                      f"  {t['api loss']:10.3f} {t['api evaluate']:9.3f} {api:6.2f}"
                      f"  {t['api per-sample']:10.3f} {each:6.2f}")
    print("times in ms; ratio: evaluate over loss only; per-sample: evaluate(per_sample=True)")


if __name__ == "__main__":
    main()
