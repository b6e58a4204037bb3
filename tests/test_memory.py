"""Memory: nothing grows over many calls, and loss + gradient with out= needs
no memory of the logits' size beyond the inputs and out itself.

Allocations are counted twice: by tracemalloc (every NumPy and Python
allocation) and by the process's resident memory (what C code allocates too).
"""
import gc
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import fastxent
from conftest import make_logits, make_probs, make_targets

CPU = [name for name in ("numpy", "cython", "numba") if fastxent.available_backends()[name].available]
COMPILED = [name for name in CPU if name != "numpy"]


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _functions(rng, backend):
    x = make_logits(rng, (64, 100), np.float32)
    t = make_targets(rng, x.shape, n_ignore=3)
    p = make_probs(rng, x.shape, np.float32)
    out = np.empty_like(x)
    b = rng.standard_normal(4096).astype(np.float32)
    bt = rng.random(4096).astype(np.float32)
    bp = 1 / (1 + np.exp(-b))
    kw = dict(backend=backend)
    return {
        "cross_entropy": lambda: fastxent.cross_entropy(x, t, label_smoothing=0.1, **kw),
        "cross_entropy_grad": lambda: fastxent.cross_entropy(x, t, return_grad=True, **kw),
        "cross_entropy_out": lambda: fastxent.cross_entropy(x, p, return_grad=True, out=out,
                                                            **kw),
        "log_softmax": lambda: fastxent.log_softmax(x, **kw),
        "softmax": lambda: fastxent.softmax(x, out=out, **kw),
        "logsumexp": lambda: fastxent.logsumexp(x, axis=1, **kw),
        "binary_cross_entropy": lambda: fastxent.binary_cross_entropy(bp, bt, return_grad=True,
                                                                      **kw),
        "binary_cross_entropy_with_logits": lambda: fastxent.binary_cross_entropy_with_logits(
            b, bt, reduction="none", **kw),
        "evaluate": lambda: fastxent.evaluate(x, t, per_sample=True, **kw),
        "bad_labels": lambda: _raises(IndexError, fastxent.cross_entropy, x, t + 100, **kw),
    }


def _raises(error, func, *args, **kwargs):
    with pytest.raises(error):
        func(*args, **kwargs)


@pytest.mark.parametrize("backend, n_calls", [(name, 2_000) for name in COMPILED] + [
    pytest.param(name, 100_000, marks=pytest.mark.slow) for name in CPU])
def test_no_growth_over_many_calls(backend, n_calls, rng):
    # A leak of one output (25 KiB here) per call would grow the process by
    # 50 MiB over 2,000 calls; of one small Python object, by 200 KB of
    # traced memory.
    # Both counts are taken after a warm-up, which fills the caches that
    # are meant to stay (compiled kernels, NumPy's).
    functions = _functions(rng, backend)
    growth = {}
    for name, call in functions.items():
        for _ in range(200):
            call()
        gc.collect()
        tracemalloc.start()
        try:
            traced_before, rss_before = tracemalloc.get_traced_memory()[0], _rss_bytes()
            for _ in range(n_calls):
                call()
            gc.collect()
            traced_after, rss_after = tracemalloc.get_traced_memory()[0], _rss_bytes()
        finally:
            tracemalloc.stop()
        growth[name] = (traced_after - traced_before, rss_after - rss_before)
    grown = {name: g for name, g in growth.items() if g[0] > 64 * 1024 or g[1] > 4 << 20}
    assert not grown, f"(traced, resident) bytes grown over {n_calls} calls: {grown}"


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("n_classes", [10, 1000])
@pytest.mark.parametrize("mode", ["out", "in_place", "loss_only"])
def test_loss_and_grad_allocate_o_of_n(backend, n_classes, mode, rng):
    # Traced peak: the per-row values (a few float64 per row) and nothing of
    # the logits' size, with a gradient written into out= or into the logits.
    n = 2000
    x = rng.standard_normal((n, n_classes)).astype(np.float32)
    t = rng.integers(0, n_classes, n)
    out = {"out": np.empty_like(x), "in_place": x, "loss_only": None}[mode]
    kw = {} if out is None else {"return_grad": True, "out": out}
    # Compiled and loaded first: Numba loads each build on its first call.
    fastxent.cross_entropy(x, t, backend=backend, num_threads=2, **kw)
    tracemalloc.start()
    try:
        fastxent.cross_entropy(x, t, backend=backend, num_threads=2, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * n + 64 * 1024, f"peak {peak} bytes for logits of {x.nbytes} bytes"


_PEAK_RSS = textwrap.dedent("""
    import resource, sys
    import numpy as np, fastxent
    backend = sys.argv[1]
    rng = np.random.default_rng(0)
    n, c = 20000, 1000
    x = rng.standard_normal((n, c), dtype=np.float32)
    t = rng.integers(0, c, n)
    out = np.ones_like(x)                          # its pages touched now
    small = np.ones((64, c), np.float32)
    fastxent.cross_entropy(small, t[:64], return_grad=True, out=np.empty_like(small), backend=backend,
                           num_threads=2)          # kernels loaded, threads started
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fastxent.cross_entropy(x, t, return_grad=True, out=out, backend=backend, num_threads=2)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024, x.nbytes)
""")


@pytest.mark.parametrize("backend", COMPILED)
def test_peak_resident_memory_of_loss_and_grad_with_out(backend):
    # In a fresh process, the peak resident memory (which counts what C and
    # Numba allocate, unlike tracemalloc) rises by O(N) over the inputs and out.
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS, backend], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rise, logits_bytes = map(int, run.stdout.split())
    assert rise < 4 << 20, f"peak rose by {rise} bytes; the logits are {logits_bytes} bytes"
