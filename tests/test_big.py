"""Arrays of more than 2**31 elements: every offset must be computed in 64 bits.

Each test builds float32 logits of just over 2**31 elements (8 GiB) that are
0 everywhere except in a few planted rows of distinct values: the first two
rows, the rows that hold elements 2**30 and 2**31 (bytes 2**32 and 2**33),
the row after the latter, and the last three rows. A zero row's results are
known exactly (its loss and log-sum-exp are log(C)), and a planted row's
follow in float64 from its few values, so a row read or written at a wrong
offset shows. Every other row is checked too (in chunks, through its minimum
and maximum), so a write that lands in the wrong place shows as well.

Shapes: many rows of 30 classes (the kernels' tiles of short rows), many rows
of 1000 classes, and one row of more than 2**31 classes (planted columns
on both sides of column 2**31, its target beyond it). For the backends "cython", "numba" and
"cuda" (each skipped where it cannot run), checked: cross_entropy with
reduction "none" and "mean", evaluate, logsumexp, the gradient of
cross_entropy, log_softmax and softmax written in place (out= the input), and
binary_cross_entropy_with_logits of a flat array of more than 2**31 elements.
Batches of more than 2**31 rows are out of reach here: their per-row float64
buffers alone would take 16 GiB.

Opt-in: python -m pytest tests/test_big.py --run-big

A test needs at most about 11 GiB of memory (pages of np.zeros that are only
read are never allocated: the read-only tests need far less), the file a few
minutes on two cores. The cuda backend copies its results to the host through
buffers of their size, so on a GPU machine it needs up to twice that.
"""

import gc
import itertools
import math
import sys
import traceback

import numpy as np
import pytest

import fastxent

pytestmark = pytest.mark.big

BIG = 2**31
CHUNK = 1 << 18  # elements per read when checking a large array: min and max hit the cache


@pytest.fixture(params=("cython", "numba", "cuda"))
def backend(request):
    status = fastxent.available_backends()[request.param]
    if not status.available:
        pytest.skip(f"backend {request.param!r} unavailable: {status.detail}")
    return request.param


@pytest.fixture(autouse=True)
def _release_memory():
    """A failed test's frames stay referenced from sys.last_traceback, and with
    them its arrays of 8 GiB: let them go before the next test allocates its own."""
    yield
    tb = getattr(sys, "last_traceback", None)
    if tb is not None:
        traceback.clear_frames(tb)
    gc.collect()


# ----------------------------------------------------------------- exact rows

class Row:
    """A row of n classes holding ``base`` everywhere except at ``entries``
    ({column: value}), with its softmax statistics computed exactly in float64
    from those few values."""

    def __init__(self, n, base, entries, unit=None, base_unit=None):
        self.n = n
        self.base = float(base)
        self.entries = {int(c): float(v) for c, v in entries.items()}
        n_base = n - len(self.entries)
        self.m = max([self.base] * (n_base > 0) + list(self.entries.values()))
        s = n_base * math.exp(self.base - self.m) + sum(
            math.exp(v - self.m) for v in self.entries.values())
        self.lse = self.m + math.log(s)
        # The magnitudes that rounding errors are measured against, at the
        # entries and at the base.
        self.unit = unit or max([abs(self.base)] + [abs(v) for v in self.entries.values()])
        self.base_unit = self.unit if base_unit is None else base_unit

    def value(self, c):
        return self.entries.get(c, self.base)

    def loss(self, y):
        return self.lse - self.value(y)

    def log_softmax(self):
        return Row(self.n, self.base - self.lse,
                   {c: v - self.lse for c, v in self.entries.items()})

    def softmax(self):
        return Row(self.n, math.exp(self.base - self.lse),
                   {c: math.exp(v - self.lse) for c, v in self.entries.items()})

    def grad(self, y):
        """d loss(y) / d z = softmax(z) - onehot(y): its base is a probability,
        as accurate as one, and its entries are within rounding of 1."""
        p = self.softmax()
        return Row(self.n, p.base, p.entries | {y: p.value(y) - 1.0}, unit=1.0,
                   base_unit=p.base)

    def entropy(self):
        p = self.softmax()
        n_base = self.n - len(self.entries)
        return self.lse - (n_base * p.base * self.base
                           + sum(p.entries[c] * v for c, v in self.entries.items()))

    def argmax(self):
        """The first column holding the maximum, as np.argmax."""
        first = [c for c, v in self.entries.items() if v == self.m]
        if self.base == self.m and self.n > len(self.entries):
            first.append(next(c for c in itertools.count() if c not in self.entries))
        return min(first)

    def rank(self, y):
        """How many classes sort before y in np.argsort(row, kind="stable")[::-1]:
        the greater ones, and the equal ones after it."""
        zy = self.value(y)
        count = sum(v > zy or (v == zy and c > y) for c, v in self.entries.items())
        if self.base > zy:
            count += self.n - len(self.entries)
        elif self.base == zy:  # the base columns after y
            count += (self.n - 1 - y) - sum(c > y for c in self.entries)
        return count


def f32(x):
    return float(np.float32(x))


class Layout:
    """A (n_rows, n_classes) problem: float32 logits that are 0 and labels that
    are 0, except in the planted rows ({row: (Row, label)})."""

    def __init__(self, n_rows, n_classes, planted, label_dtype):
        assert n_rows * n_classes > BIG
        self.n_rows, self.n_classes = n_rows, n_classes
        self.default = Row(n_classes, 0.0, {})
        self.planted = planted
        self.label_dtype = label_dtype

    def logits(self):
        z = np.zeros((self.n_rows, self.n_classes), np.float32)  # pages not written stay free
        for r, (row, _) in self.planted.items():
            for c, v in row.entries.items():
                z[r, c] = v
        return z

    def labels(self):
        y = np.zeros(self.n_rows, self.label_dtype)
        for r, (_, label) in self.planted.items():
            y[r] = label
        return y

    def per_row(self, f):
        """(f(row, label) for the zero rows, {planted row: f(row, label)})."""
        return f(self.default, 0), {r: f(row, y) for r, (row, y) in self.planted.items()}

    def total(self, f):
        """The sum of f(row, label) over every row."""
        default, planted = self.per_row(f)
        return (self.n_rows - len(planted)) * default + sum(planted.values())


# (high value, low value, whether the label is at the high one) of each planted
# row, in row order. The fifth and the seventh, beyond element 2**31, have losses large
# enough to move the mean loss of the whole batch.
PLANTS = [(3.0, -1.0, True), (7.0, -2.0, False), (11.0, -3.0, True), (15.0, -4.0, False),
          (1.9e4, -5.0, False), (23.0, -6.0, True), (2.7e4, -7.0, False), (31.0, -8.0, False)]


def many_rows(n_classes):
    n_rows = BIG // n_classes + 2048

    def holding(element):
        return element // n_classes

    rows = sorted({0, 1, holding(BIG // 2), holding(BIG), holding(BIG) + 1,
                   n_rows - 3, n_rows - 2, n_rows - 1})
    assert len(rows) == len(PLANTS) and holding(BIG) + 1 < n_rows - 3
    planted = {}
    for t, (r, (high, low, at_high)) in enumerate(zip(rows, PLANTS)):
        c_high, c_low = (5 + 3 * t) % n_classes, (n_classes - 1 - 2 * t) % n_classes
        assert c_high != c_low
        planted[r] = (Row(n_classes, 0.0, {c_high: high, c_low: low}),
                      c_high if at_high else c_low)
    return Layout(n_rows, n_classes, planted, np.int32)


def wide_row():
    """One row of 2**31 + 4096 classes: its maximum (1e-30, so that every
    exp(z - max) of the zeros is exactly 1 in float32 and the sums are exact)
    and its target lie beyond column 2**31."""
    n = BIG + 4096
    row = Row(n, 0.0, {3: -5.0, BIG - 1: -2.0, BIG: -4.0, BIG + 100: f32(1e-30), n - 7: -3.0})
    return Layout(1, n, {0: (row, n - 7)}, np.int64)


LAYOUTS = {"rows_of_30": lambda: many_rows(30), "rows_of_1000": lambda: many_rows(1000),
           "one_wide_row": wide_row}
# Rows of 30 classes matter where the kernels have tiles (cross_entropy and
# evaluate); elsewhere they run the row code of the others, at 10 s and more
# a pass over 70 million rows.
UNTILED = ["rows_of_1000", "one_wide_row"]


# ----------------------------------------------------------------- checks
# Each returns a list of problems (empty when all is well), so that a failure
# shows every wrong place at once.

# Tolerances of float32 results: sums of exp in float32 lose a few digits, a
# misplaced row changes values by far more (a zero row's loss is log(C)).
RTOL = 1e-4
VALUE_ATOL = 1e-4  # of per-row values: losses, log-sum-exps, entropies
ROW_ATOL = 1e-5    # of rows' elements, times the row's unit


def close(x, expected, atol):
    return abs(float(x) - expected) <= RTOL * abs(expected) + atol


def extremes(a):
    """(min, max) of a (NaN if a has one), read in chunks along its first axis."""
    step = max(1, CHUNK // max(1, a.size // a.shape[0]))
    lo, hi = np.inf, -np.inf
    for start in range(0, a.shape[0], step):
        part = a[start:start + step]
        lo, hi = np.minimum(lo, part.min()), np.maximum(hi, part.max())
    return float(lo), float(hi)


def uniform_problems(a, expected, atol, what, exact=False):
    if a.size == 0:
        return []
    lo, hi = extremes(a)
    ok = (lo == hi == expected) if exact else (close(lo, expected, atol)
                                               and close(hi, expected, atol))
    return [] if ok else [f"{what}: values in [{lo!r}, {hi!r}], expected {expected!r}"]


def segments(n, cuts):
    """The ranges [a, b) of [0, n) between the positions in cuts."""
    edges = [-1] + sorted(cuts) + [n]
    return [(a + 1, b) for a, b in zip(edges, edges[1:]) if b > a + 1]


def row_problems(a, row, what):
    """a (one row) holds row's values."""
    problems = [f"{what}, column {c}: {a[c]!r}, expected {v!r}"
                for c, v in row.entries.items() if not close(a[c], v, ROW_ATOL * row.unit)]
    for start, stop in segments(row.n, row.entries):
        problems += uniform_problems(a[start:stop], row.base, ROW_ATOL * row.base_unit,
                                     f"{what}, columns {start}:{stop}")
    return problems


def rows_problems(a, default, planted, what):
    """a (n_rows, n_classes) holds the Row planted[r] in row r, default in the others."""
    problems = []
    for r, row in planted.items():
        problems += row_problems(a[r], row, f"{what}, row {r}")
    if len(planted) == a.shape[0]:
        return problems
    # The other rows: the minimum and maximum of each column over a cache-sized
    # chunk of whole rows, against the default row written out (short: only
    # layouts of many rows have other rows).
    dense = np.array([default.value(c) for c in range(default.n)])
    units = np.array([default.unit if c in default.entries else default.base_unit
                      for c in range(default.n)])
    tol = RTOL * np.abs(dense) + ROW_ATOL * units
    step = max(1, CHUNK // default.n)
    for first, stop in segments(a.shape[0], planted):
        for start in range(first, stop, step):
            chunk = a[start:min(stop, start + step)]
            lo, hi = chunk.min(axis=0), chunk.max(axis=0)
            bad = ~((np.abs(lo - dense) <= tol) & (np.abs(hi - dense) <= tol))  # NaN too
            if bad.any():
                c = int(np.argmax(bad))
                problems.append(f"{what}, rows {start}:{start + len(chunk)}, column {c}: "
                                f"values in [{lo[c]!r}, {hi[c]!r}], expected {dense[c]!r}")
                break
    return problems


def values_problems(a, default, planted, what, exact=False):
    """a (n_rows,) holds planted[r] at r and default elsewhere."""
    problems = [f"{what}, row {r}: {a[r]!r}, expected {v!r}" for r, v in planted.items()
                if not (a[r] == v if exact else close(a[r], v, VALUE_ATOL))]
    for first, stop in segments(a.shape[0], planted):
        problems += uniform_problems(a[first:stop], default, VALUE_ATOL,
                                     f"{what}, rows {first}:{stop}", exact)
    return problems


def report(problems):
    return "\n".join(problems[:40])


# ----------------------------------------------------------------- tests

@pytest.mark.parametrize("layout", LAYOUTS)
def test_cross_entropy(backend, layout):
    p = LAYOUTS[layout]()
    z, y = p.logits(), p.labels()
    loss = fastxent.cross_entropy(z, y, reduction="none", backend=backend)
    default, planted = p.per_row(Row.loss)
    problems = values_problems(loss, default, planted, "loss")
    del loss
    mean = fastxent.cross_entropy(z, y, backend=backend)
    expected = p.total(Row.loss) / p.n_rows
    # Misreading the fifth or the seventh planted row moves the mean by more than 1e-5.
    if not math.isclose(mean, expected, rel_tol=1e-6):
        problems.append(f"mean loss {mean!r}, expected {expected!r}")
    assert not problems, report(problems)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_evaluate(backend, layout):
    p = LAYOUTS[layout]()
    # Per-sample values of every row only where they fit in memory.
    per_sample = p.n_rows < 10**7
    result = fastxent.evaluate(p.logits(), p.labels(), topk=(1, 5), per_sample=per_sample,
                               backend=backend)
    n = p.n_rows
    problems = []
    # Sums of 0/1 over the rows are exact: so are accuracy and top-k accuracy.
    expected = {"accuracy": p.total(lambda row, y: row.argmax() == y) / n,
                "top_k_accuracy": {k: p.total(lambda row, y: row.rank(y) < k) / n
                                   for k in (1, 5)},
                "n_samples": n}
    for name, value in expected.items():
        if result[name] != value:
            problems.append(f"{name} {result[name]!r}, expected {value!r}")
    # The means: a misread row moves them by about 1 / n. A backend may round
    # the zero rows' values to float32 precision: they are taken as it computes
    # them for a few zero rows (and checked), so that only the planted rows'
    # rounding (1e-6 relative + 1e-4 each) is left to allow for.
    n_zero = n - len(p.planted)
    zero = fastxent.evaluate(np.zeros((16, p.n_classes), np.float32), np.zeros(16, np.int32),
                             per_sample=True, backend=backend)["per_sample"] if n_zero else None
    for name, f in (("loss", Row.loss), ("entropy", lambda row, y: row.entropy()),
                    ("logsumexp", lambda row, y: row.lse)):
        default, planted = p.per_row(f)
        ours = float(zero[name][0]) if n_zero else default
        if not math.isclose(ours, default, rel_tol=2e-7):
            problems.append(f"{name} of a zero row {ours!r}, expected {default!r}")
        value = (n_zero * ours + sum(planted.values())) / n
        slack = sum(1e-6 * abs(v) + 1e-4 for v in planted.values()) / n
        if not math.isclose(result[name], value, rel_tol=1e-12, abs_tol=slack):
            problems.append(f"{name} {result[name]!r}, expected {value!r}")
    if per_sample:
        rows = result["per_sample"]
        for name, f, exact in (
                ("loss", Row.loss, False), ("entropy", lambda row, y: row.entropy(), False),
                ("logsumexp", lambda row, y: row.lse, False),
                ("argmax", lambda row, y: row.argmax(), True),
                ("rank", Row.rank, True),
                ("correct", lambda row, y: row.argmax() == y, True)):
            problems += values_problems(rows[name], *p.per_row(f), f"per-sample {name}", exact)
    assert not problems, report(problems)


@pytest.mark.parametrize("layout", UNTILED)
def test_logsumexp(backend, layout):
    p = LAYOUTS[layout]()
    if layout == "one_wide_row":
        # Its log-sum-exp is log(C) within 1e-10 whatever its few values: a
        # dominant one beyond column 2**31 makes reading that one what counts.
        row, label = p.planted[0]
        p.planted[0] = (Row(row.n, 0.0, row.entries | {BIG + 200: 40.0}), label)
    lse = fastxent.logsumexp(p.logits(), axis=1, backend=backend)
    assert lse.shape == (p.n_rows,) and lse.dtype == np.float32
    problems = values_problems(lse, *p.per_row(lambda row, y: row.lse), "logsumexp")
    assert not problems, report(problems)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_in_place(backend, layout):
    """The gradient written over the logits (out=), then log_softmax in place
    of it, then softmax in place of that (not for the tiled layout): each step
    writes every element (a row left unwritten, or written elsewhere, holds
    the previous step's values)."""
    p = LAYOUTS[layout]()
    z = p.logits()
    loss, grad = fastxent.cross_entropy(z, p.labels(), reduction="sum", return_grad=True,
                                        out=z, backend=backend)
    assert grad is z
    del grad
    problems = []
    expected = p.total(Row.loss)
    if not math.isclose(loss, expected, rel_tol=1e-6):
        problems.append(f"summed loss {loss!r}, expected {expected!r}")
    default, planted = p.per_row(Row.grad)
    problems += rows_problems(z, default, planted, "gradient")
    if layout not in UNTILED:
        assert not problems, report(problems)
        return
    assert fastxent.log_softmax(z, axis=1, out=z, backend=backend) is z
    default, planted = default.log_softmax(), {r: row.log_softmax() for r, row in planted.items()}
    problems += rows_problems(z, default, planted, "log_softmax of the gradient")
    assert fastxent.softmax(z, axis=1, out=z, backend=backend) is z
    default, planted = default.softmax(), {r: row.softmax() for r, row in planted.items()}
    problems += rows_problems(z, default, planted, "softmax of that")
    assert not problems, report(problems)


def test_bce_with_logits_flat(backend):
    n = BIG + 12345
    # {position: (logit, target)}; the largest losses lie beyond element 2**31.
    planted = {0: (2.5, 1.0), 1: (-3.0, 1.0), BIG // 2: (4.0, 0.0), BIG - 1: (-1.5, 0.0),
               BIG: (1e5, 0.0), BIG + 1: (-2e5, 1.0), n - 2: (7.0, 1.0), n - 1: (3e5, 0.0)}
    x, t = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for j, (xj, tj) in planted.items():
        x[j], t[j] = xj, tj
    expected = {j: float(np.logaddexp(0.0, xj) - tj * xj) for j, (xj, tj) in planted.items()}
    default = math.log(2.0)  # of x = 0, t = 0
    problems = []
    mean = fastxent.binary_cross_entropy_with_logits(x, t, backend=backend)
    value = ((n - len(planted)) * default + sum(expected.values())) / n
    if not math.isclose(mean, value, rel_tol=1e-6):
        problems.append(f"mean loss {mean!r}, expected {value!r}")
    loss = fastxent.binary_cross_entropy_with_logits(x, t, reduction="none", backend=backend)
    assert loss.shape == (n,) and loss.dtype == np.float32
    problems += values_problems(loss, default, expected, "loss")
    assert not problems, report(problems)
