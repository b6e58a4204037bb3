"""Fused cross-entropy loss + gradient against PyTorch, NumPy and a memcpy roofline.

    python -m pytest benchmarks --benchmark-only

Each group (``op|shape|dtype``) times, on the same data and thread count:
fastxent writing into a preallocated gradient (``out=``), the same with
``backend="numba"``, fastxent allocating a fresh one, fastxent loss only, PyTorch forward + backward, plain NumPy, and
a copy of the same bytes (read N x C, write N x C) as the memory roofline.
FASTXENT_BENCH_THREADS sets the thread count (default 2, the figures in the
README).
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastxent
from conftest import THREADS, parallel_copy
from fastxent.bench.implementations import numpy_loss_grad

SHAPES = [(65536, 10), (16384, 1000), (4096, 32000), (512, 128256)]
DTYPES = [np.float32]


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def problem(request):
    n_rows, n_classes = request.param
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((n_rows, n_classes), dtype=np.float32)
    labels = rng.integers(0, n_classes, n_rows)
    return logits, labels


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    """Start the thread pools and touch the code once before anything is timed:
    otherwise the first benchmark of the run pays for it."""
    logits = np.zeros((4096, 100), np.float32)
    labels = np.zeros(4096, np.int64)
    for _ in range(20):
        for backend in ("auto", "numba"):
            fastxent.cross_entropy(logits, labels, return_grad=True, num_threads=THREADS,
                                   backend=backend)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(THREADS)
    z = torch.from_numpy(logits).requires_grad_()
    torch.nn.functional.cross_entropy(z, torch.from_numpy(labels)).backward()


def _group(benchmark, op, logits):
    n_rows, n_classes = logits.shape
    benchmark.group = f"{op}|{n_rows}x{n_classes}|{logits.dtype}|{THREADS} threads"
    benchmark.extra_info["bytes"] = 2 * logits.nbytes


def test_fastxent_out(benchmark, problem):
    logits, labels = problem
    _group(benchmark, "loss+grad", logits)
    grad = np.empty_like(logits)
    benchmark(fastxent.cross_entropy, logits, labels, return_grad=True, out=grad,
              num_threads=THREADS)


def test_fastxent_numba_out(benchmark, problem):
    logits, labels = problem
    _group(benchmark, "loss+grad", logits)
    grad = np.empty_like(logits)
    benchmark(fastxent.cross_entropy, logits, labels, return_grad=True, out=grad,
              num_threads=THREADS, backend="numba")


def test_fastxent_fresh_grad(benchmark, problem):
    logits, labels = problem
    _group(benchmark, "loss+grad", logits)
    benchmark(fastxent.cross_entropy, logits, labels, return_grad=True, num_threads=THREADS)


def test_fastxent_loss_only(benchmark, problem):
    logits, labels = problem
    _group(benchmark, "loss+grad", logits)
    benchmark(fastxent.cross_entropy, logits, labels, num_threads=THREADS)


def test_torch_forward_backward(benchmark, problem):
    torch = pytest.importorskip("torch")
    logits, labels = problem
    _group(benchmark, "loss+grad", logits)
    torch.set_num_threads(THREADS)
    target = torch.from_numpy(labels)

    def forward_backward():
        z = torch.from_numpy(logits).requires_grad_()
        loss = torch.nn.functional.cross_entropy(z, target)
        loss.backward()
        return loss, z.grad

    benchmark(forward_backward)


def test_numpy(benchmark, problem):
    logits, labels = problem
    _group(benchmark, "loss+grad", logits)
    benchmark.pedantic(numpy_loss_grad, (logits, labels), rounds=3, warmup_rounds=1)


def test_memcpy_roofline(benchmark, problem):
    logits, _ = problem
    _group(benchmark, "loss+grad", logits)
    dst = np.empty_like(logits)
    with ThreadPoolExecutor(THREADS) as pool:
        benchmark(parallel_copy, dst, logits, pool)
