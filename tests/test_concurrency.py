"""Calls from many Python threads at once.

Every function, on every CPU backend and with one and two kernel threads,
called from 8 Python threads at the same time gives the same bits as the same
call made alone; and the compiled kernels run without the GIL, so that Python
threads overlap.
"""
import sys
import threading
import time

import numpy as np
import pytest

import fastxent
import fastxent._api as api
from conftest import make_logits, make_probs, make_targets, make_weight

COMPILED = [name for name in ("cython", "numba") if fastxent.available_backends()[name].available]
CPU = ["numpy"] + COMPILED


def _calls(rng):
    """(label, backend, function of no arguments): every public function and kernel."""
    x = make_logits(rng, (600, 300), np.float32)       # 180,000 logits: parallel kernels run
    x64 = make_logits(rng, (300, 257), np.float64)
    t = make_targets(rng, x.shape, n_ignore=30)
    p = make_probs(rng, x64.shape)
    w = make_weight(rng, 300, np.float32)
    sw = rng.random(600)
    b = rng.standard_normal(200_000).astype(np.float32)
    bt = rng.random(200_000).astype(np.float32)
    bp = 1 / (1 + np.exp(-b))
    calls = []
    for backend in CPU:
        for threads in (1, 2):
            kw = dict(backend=backend, num_threads=threads)
            calls += [(label, backend, call) for label, call in [
                ("xent", lambda kw=kw: fastxent.cross_entropy(x, t, w, label_smoothing=0.1,
                                                              sample_weight=sw, **kw)),
                ("xent_grad", lambda kw=kw: fastxent.cross_entropy(
                    x, t, return_grad=True, z_loss=1e-3, reduction="none", **kw)),
                ("xent_probs", lambda kw=kw: fastxent.cross_entropy(x64, p, return_grad=True,
                                                                    **kw)),
                ("log_softmax", lambda kw=kw: fastxent.log_softmax(x, **kw)),
                ("softmax", lambda kw=kw: fastxent.softmax(x64, **kw)),
                ("logsumexp", lambda kw=kw: fastxent.logsumexp(x, axis=1, **kw)),
                ("bce", lambda kw=kw: fastxent.binary_cross_entropy(bp, bt, return_grad=True,
                                                                    **kw)),
                ("bce_logits", lambda kw=kw: fastxent.binary_cross_entropy_with_logits(
                    b, bt, reduction="none", **kw)),
                ("evaluate", lambda kw=kw: fastxent.evaluate(x, t, topk=(1, 5),
                                                             per_sample=True, **kw)),
            ]]
    return calls


def _bits(result):
    """Every number of a result, as bytes: equal bits, not merely close values."""
    if isinstance(result, dict):
        return tuple((key, _bits(value)) for key, value in sorted(result.items(), key=str))
    if isinstance(result, tuple):
        return tuple(_bits(part) for part in result)
    a = np.asarray(result)
    return (a.dtype.str, a.shape, a.tobytes())


def test_eight_threads_give_the_bits_of_serial_calls(rng):
    calls = _calls(rng)
    expected = [_bits(call()) for _, _, call in calls]
    # Each thread runs every call, starting at a different place in the list,
    # so that different functions and backends run side by side.
    n_threads = 8
    results = [[None] * len(calls) for _ in range(n_threads)]
    start = threading.Barrier(n_threads)
    errors = []

    def work(k):
        try:
            start.wait()
            for step in range(len(calls)):
                i = (k * len(calls) // n_threads + step) % len(calls)
                results[k][i] = _bits(calls[i][2]())
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for k in range(n_threads):
        for i, (label, backend, _) in enumerate(calls):
            assert results[k][i] == expected[i], f"thread {k}: {label} on {backend} differs"


def _kernel_spy(monkeypatch, state):
    """Wrap every kernel that the API fetches: state["in_kernel"] is True while
    one runs (set and cleared with no Python code between it and the kernel)."""
    real = api.get_kernel

    def get_kernel(op, backend, num_threads):
        kernel = real(op, backend, num_threads)

        def spied(*args):
            state["ops"].add(op)
            state["in_kernel"] = True
            try:
                return kernel(*args)
            finally:
                state["in_kernel"] = False

        return spied

    monkeypatch.setattr(api, "get_kernel", get_kernel)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("backend", COMPILED)
def test_kernels_release_the_gil(backend, threads, monkeypatch, rng):
    # With a switch interval of minutes, a thread holding the GIL keeps it
    # until it blocks or releases it. A second Python thread that sees a kernel
    # running has therefore run while that kernel did: the kernel released the
    # GIL. A kernel that held it would let the watcher run only after it ended.
    state = {"in_kernel": False, "ops": set(), "seen": 0, "done": False}
    _kernel_spy(monkeypatch, state)
    x = make_logits(rng, (4000, 1000), np.float64)     # milliseconds per kernel
    t = make_targets(rng, x.shape)
    p = make_probs(rng, (4000, 1000))
    b = rng.standard_normal(4_000_000)
    bt = rng.random(4_000_000)
    kw = dict(backend=backend, num_threads=threads)
    work = [lambda: fastxent.cross_entropy(x, t, return_grad=True, **kw),
            lambda: fastxent.cross_entropy(p, p, **kw),
            lambda: fastxent.log_softmax(x, **kw),
            lambda: fastxent.softmax(x, **kw),
            lambda: fastxent.logsumexp(x, axis=1, **kw),
            lambda: fastxent.binary_cross_entropy_with_logits(b, bt, **kw),
            lambda: fastxent.evaluate(x, t, **kw)]
    for call in work:
        call()  # compiled and loaded before the measurement

    seen_by_op = {}

    def watch():
        while not state["done"]:
            if state["in_kernel"]:
                state["seen"] += 1
            time.sleep(1e-5)  # releases the GIL, so the kernel's thread can return

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        for call in work:
            # A kernel that keeps the GIL is never seen. One that releases it
            # can still be missed when every core runs its threads and the OS
            # wakes the watcher only after it ends, hence a few tries.
            for _ in range(5):
                state.update(seen=0, done=False, ops=set())
                watcher = threading.Thread(target=watch)
                watcher.start()
                time.sleep(1e-3)  # the watcher waits for the GIL now
                call()
                state["done"] = True
                watcher.join()
                (op,) = state["ops"]
                seen_by_op[op] = state["seen"]
                if state["seen"]:
                    break
    finally:
        sys.setswitchinterval(old)
    blocked = [op for op, seen in seen_by_op.items() if seen == 0]
    assert not blocked, f"{backend} kernels that kept the GIL: {blocked} ({seen_by_op})"
    assert len(seen_by_op) == len(work)
