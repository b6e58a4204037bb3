"""What only the Numba backend has: Numba's thread count, set per call and
restored, and its builds. (Its results go through the common matrix in
test_backends.py.)"""

import concurrent.futures

import numpy as np
import pytest

import fastxent

numba = pytest.importorskip("numba")
from fastxent._numba import _cpu  # noqa: E402  (after the skip)


def _call(num_threads, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((300, 40)).astype(np.float32)
    t = rng.integers(0, 40, 300)
    return fastxent.cross_entropy(x, t, return_grad=True, backend="numba",
                                  num_threads=num_threads)


def test_thread_count_restored_after_each_call():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        for num_threads in (2, 3, None, 1):
            _call(num_threads)
            assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_thread_count_set_for_the_call_and_restored_after_an_error(monkeypatch):
    seen = []

    def failing_kernel(*args):
        seen.append(numba.get_num_threads())
        raise RuntimeError("kernel failed")

    monkeypatch.setitem(_cpu._COMPILED, ("xent_index", True), failing_kernel)
    before = numba.get_num_threads()
    with pytest.raises(RuntimeError, match="kernel failed"):
        _call(2)
    assert seen == [min(2, numba.config.NUMBA_NUM_THREADS)]
    assert numba.get_num_threads() == before


def test_callers_with_different_thread_counts_at_once():
    expected = {seed: _call(1, seed) for seed in range(6)}
    jobs = [(num_threads, seed) for num_threads in (1, 2, 3) for seed in range(6)] * 2
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda job: _call(*job), jobs))
    for (_, seed), (loss, grad) in zip(jobs, got):
        assert loss == expected[seed][0]
        assert grad.tobytes() == expected[seed][1].tobytes()


@pytest.mark.parametrize("op", sorted({op for op, _ in _cpu._COMPILED}))
def test_serial_and_parallel_builds_cached_apart(op):
    # Numba's cache keys a function by name, signature and bytecode, not by
    # parallel=True: under one name each build would load the other.
    serial, parallel = _cpu._COMPILED[op, False], _cpu._COMPILED[op, True]
    assert not serial.targetoptions.get("parallel")
    assert parallel.targetoptions.get("parallel")
    assert serial.py_func.__qualname__ != parallel.py_func.__qualname__
