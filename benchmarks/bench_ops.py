"""The operations and shapes of ``python -m fastxent bench``, as
pytest-benchmark groups (``op|shape|dtype|threads``): every implementation
the command times (fastxent's compiled backends and each installed
competitor, from ``fastxent.bench.implementations``), and the memcpy roofline.

    python -m pytest benchmarks/bench_ops.py --benchmark-only

Each implementation is checked against the float64 reference before it is
timed, as the command does. FASTXENT_BENCH_THREADS sets the thread count.
"""

import numpy as np
import pytest

import fastxent
from conftest import THREADS
from fastxent.bench.cli import COMPETITORS, DEFAULT_SHAPES
from fastxent.bench.implementations import OPS, implementations, load_competitors, \
    make_problem, reference
from fastxent.bench.run import TOLERANCE, check
from fastxent.bench.timing import Copy

DTYPES = ["float32"]
BACKENDS = [name for name, status in fastxent.available_backends().items()
            if status.available and name != "numpy"]
COMPETING, _ = load_competitors(COMPETITORS)
if "torch" in COMPETING:
    COMPETING["torch"].set_num_threads(THREADS)

CASES = [(op, shape, dtype) for op in OPS for shape in DEFAULT_SHAPES for dtype in DTYPES]
PARAMS = [(case, impl.name) for case in CASES
          for impl in implementations(case[0], BACKENDS, COMPETING, case[2])]
_PROBLEMS = {}


def _problem(case):
    """The case's problem and its float64 reference, made once."""
    if case not in _PROBLEMS:
        _PROBLEMS.clear()  # cases come in order: keep one in memory
        problem = make_problem(*case)
        _PROBLEMS[case] = problem, reference(problem)
    return _PROBLEMS[case]


def _id(case):
    op, shape, dtype = case
    return f"{op}-{shape[0]}x{shape[1]}-{dtype}"


def _group(benchmark, problem):
    benchmark.group = f"{problem.op}|{problem.label}|{problem.dtype}|{THREADS} threads"
    benchmark.extra_info["bytes"] = problem.bytes_moved


@pytest.mark.parametrize("case, name", PARAMS, ids=[f"{_id(c)}-{n}" for c, n in PARAMS])
def test_implementation(benchmark, case, name):
    problem, expected = _problem(case)
    impl = next(i for i in implementations(problem.op, BACKENDS, COMPETING, problem.dtype)
                if i.name == name)
    _group(benchmark, problem)
    call, collect = impl.prepare(problem, THREADS)
    assert check(collect(call()), expected) <= TOLERANCE[problem.dtype]
    benchmark(call)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_memcpy_roofline(benchmark, case):
    problem, _ = _problem(case)
    _group(benchmark, problem)
    benchmark.extra_info["bytes"] = 2 * problem.x.nbytes
    copy = Copy(problem.x, THREADS)
    try:
        benchmark(copy)
    finally:
        copy.close()
