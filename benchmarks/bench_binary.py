"""Binary cross-entropy (from logits, and from probabilities), loss + gradient,
against PyTorch, NumPy and a memory roofline.

    python -m pytest benchmarks --benchmark-only

Each group (``op|n elements|dtype``) times, on the same data and thread
count: fastxent writing into a preallocated gradient (``out=``), the same
with ``backend="numba"``, fastxent allocating a fresh one, fastxent loss only, PyTorch forward + backward, plain
NumPy, and as the roofline an elementwise add with the kernels' traffic
(read input and target, write the gradient).
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastxent
from conftest import THREADS, parallel_add
from fastxent.bench.implementations import numpy_bce_logits

SHAPES = [(1024, 1024), (4096, 4096)]
OPS = ["bce_with_logits", "bce"]


@pytest.fixture(scope="module", params=[(op, shape) for op in OPS for shape in SHAPES],
                ids=lambda p: f"{p[0]}-{p[1][0]}x{p[1][1]}")
def problem(request):
    op, shape = request.param
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape, dtype=np.float32)
    target = (rng.random(shape) < 0.5).astype(np.float32)
    if op == "bce":
        return op, (1 / (1 + np.exp(-logits))).astype(np.float32), target
    return op, logits, target


def _group(benchmark, op, x):
    benchmark.group = f"{op}|{x.size} elements|{x.dtype}|{THREADS} threads"
    benchmark.extra_info["bytes"] = 3 * x.nbytes


def _fastxent(op):
    return (fastxent.binary_cross_entropy_with_logits if op == "bce_with_logits"
            else fastxent.binary_cross_entropy)


def numpy_loss_grad(op, x, y):
    """The mean loss and its gradient as a NumPy user writes them (the stable
    log-sigmoid form for logits)."""
    if op == "bce_with_logits":
        return numpy_bce_logits(x, y)
    else:
        loss = -np.mean(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log1p(-x), -100))
        grad = (x - y) / np.maximum(x * (1 - x), 1e-12) / x.size
    return loss, grad


def test_fastxent_out(benchmark, problem):
    op, x, y = problem
    _group(benchmark, op, x)
    grad = np.empty_like(x)
    benchmark(_fastxent(op), x, y, return_grad=True, out=grad, num_threads=THREADS)


def test_fastxent_numba_out(benchmark, problem):
    op, x, y = problem
    _group(benchmark, op, x)
    grad = np.empty_like(x)
    _fastxent(op)(x, y, return_grad=True, out=grad, num_threads=THREADS, backend="numba")  # compile
    benchmark(_fastxent(op), x, y, return_grad=True, out=grad, num_threads=THREADS,
              backend="numba")


def test_fastxent_fresh_grad(benchmark, problem):
    op, x, y = problem
    _group(benchmark, op, x)
    benchmark(_fastxent(op), x, y, return_grad=True, num_threads=THREADS)


def test_fastxent_loss_only(benchmark, problem):
    op, x, y = problem
    _group(benchmark, op, x)
    benchmark(_fastxent(op), x, y, num_threads=THREADS)


def test_torch_forward_backward(benchmark, problem):
    torch = pytest.importorskip("torch")
    op, x, y = problem
    _group(benchmark, op, x)
    torch.set_num_threads(THREADS)
    target = torch.from_numpy(y)
    loss_fn = (torch.nn.functional.binary_cross_entropy_with_logits if op == "bce_with_logits"
               else torch.nn.functional.binary_cross_entropy)

    def forward_backward():
        z = torch.from_numpy(x).requires_grad_()
        loss = loss_fn(z, target)
        loss.backward()
        return loss, z.grad

    benchmark(forward_backward)


def test_numpy(benchmark, problem):
    op, x, y = problem
    _group(benchmark, op, x)
    benchmark.pedantic(numpy_loss_grad, (op, x, y), rounds=3, warmup_rounds=1)


def test_memory_roofline(benchmark, problem):
    op, x, y = problem
    _group(benchmark, op, x)
    dst = np.empty_like(x)
    with ThreadPoolExecutor(THREADS) as pool:
        benchmark(parallel_add, dst, x, y, pool)
