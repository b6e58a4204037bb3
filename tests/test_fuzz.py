"""Property-based tests (hypothesis) of every public function on every backend.

The tests draw calls: shapes (N = 0, C = 1, 1-D and (N, C, d1, ...) inputs, a
few rows longer than 1024 classes), dtypes (float16/32/64, bfloat16 where
ml_dtypes is present, integer logits, every integer target dtype), memory
layouts (Fortran order, transposed, strided, negative strides, big-endian,
read-only, lists, DLPack-only objects), labels (valid, ignored, custom
ignore_index), class and sample weights, reductions and options, logits with
extreme values (huge, tiny, -inf, +inf, NaN). On every CPU backend, each with
fresh arguments:

- a valid call returns what a float64 NumPy/SciPy reference computes, within
  the error API.md allows the compute dtype (NaN and inf where the reference
  has them), gradients included, ``out=`` being the result;
- a call with one invalid argument (``*_raises_documented_error``, one test
  per kind of error) raises the exception type API.md documents, the same on
  every backend, and an IndexError names the bad label and where it is;
- no array the caller passed is modified: on error not even ``out=``, on
  success nothing but ``out=``;
- results are bit-identical for any thread count and layout, and NaN or inf
  in the data is never turned into FloatingPointError by a caller's
  ``np.errstate`` (``*_whatever_the_errstate``).

The tests named ``test_cuda_*`` check the same on CUDA device arrays (a GPU, or
``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_fuzz.py -k cuda``).
"""

import math
import operator
import types

import numpy as np
import pytest
from hypothesis import Phase, given, note, settings
from hypothesis import strategies as st

import fastxent
from conftest import (assert_same_nonfinite, assert_unchanged, batch_shape, class_axis,
                      oracle_xent, snapshot)

special = pytest.importorskip("scipy.special")

# NumPy's RuntimeWarnings about inf and NaN in the data are noise here; the
# *_whatever_the_errstate properties check what the API does with them.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

try:
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # bfloat16 is optional
    ml_dtypes = None
    BF16 = None

STATUS = fastxent.available_backends()
CPU_BACKENDS = tuple(b for b in ("numpy", "cython", "numba") if STATUS[b].available)
CUDA = STATUS["cuda"]


def fuzz(max_examples, **kwargs):
    """Reproducible settings: a fixed sequence of draws, no example database."""
    return settings(max_examples=max_examples, deadline=None, database=None,
                    derandomize=True, **kwargs)


# --------------------------------------------------------------------------
# dtypes, tolerances
# --------------------------------------------------------------------------

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
FLOAT_DTYPES = (F64, F32, F16) + ((BF16,) if BF16 is not None else ())
LOGIT_DTYPES = FLOAT_DTYPES + (np.dtype(np.int16),)  # integers are computed in float64
INT_DTYPES = tuple(np.dtype(d) for d in (np.int64, np.int32, np.int16, np.int8,
                                         np.uint64, np.uint32, np.uint16, np.uint8))
# Magnitude of the "huge" logits of each dtype: differences still fit.
HUGE = {F64: 1e300, F32: 1e30, F16: 1e4, np.dtype(np.int16): 1e4}
if BF16 is not None:
    HUGE[BF16] = 1e30

# (relative, absolute per unit of 1 + max|z| + log C) error allowed in the compute
# dtype: API.md's 1e-12 relative or a few ulps for float64, a few dozen
# float32 ulps (PyTorch's own float32 error) for float32.
ACC = {F64: (1e-12, 16 * float(np.finfo(F64).eps)),
       F32: (64 * float(np.finfo(F32).eps), 64 * float(np.finfo(F32).eps))}


def finfo(dtype):
    dtype = np.dtype(dtype)
    return ml_dtypes.finfo(dtype) if dtype == BF16 else np.finfo(dtype)


def is_float(dtype):
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype == BF16


def compute_of(dtype):
    """API.md: float32 and float64 in their own precision, 16-bit floats in
    float32, integers in float64."""
    dtype = np.dtype(dtype)
    return F32 if is_float(dtype) and dtype.itemsize <= 4 else F64


def result_of(dtype):
    """Gradients and transforms keep a float input's dtype; others give float64."""
    return np.dtype(dtype) if is_float(dtype) else F64


def same_dtype(a, b):
    a, b = np.dtype(a), np.dtype(b)
    if a == b:
        return True
    return a.kind == b.kind and a.kind in "fiu" and a.itemsize == b.itemsize  # byte order


def to64(a):
    return np.asarray(a).astype(np.float64)


def max_abs_finite(a):
    a = np.abs(to64(a))
    return float(np.max(a[np.isfinite(a)], initial=0.0))


def assert_close(ours, ref, tol, dtype, what):
    """``ours``, of ``dtype``, is the float64 ``ref`` rounded to ``dtype``, to
    within ``tol`` (plus one rounding of ``dtype``); NaN and inf where it has them."""
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"):
        expected = to64(to64(ref).astype(dtype))  # a result out of range must overflow
        got = to64(ours)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    assert_same_nonfinite(got, expected, what)
    fi = finfo(dtype)
    bound = (np.broadcast_to(to64(tol), expected.shape) + float(fi.eps) * np.abs(expected)
             + float(fi.tiny))
    fin = np.isfinite(expected)
    assert not np.isnan(bound[fin]).any(), f"{what}: no tolerance (test bug)"
    with np.errstate(invalid="ignore"):
        bad = fin & ~(np.abs(got - expected) <= bound)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {np.count_nonzero(bad)} value(s) off; at {i}: got "
                             f"{got[i]!r}, expected {expected[i]!r} +- {bound[i]:.3g}")


# --------------------------------------------------------------------------
# Drawing arrays: values from a drawn seed, special values at drawn places,
# then a drawn memory layout.
# --------------------------------------------------------------------------

def float_values(rng, shape, dtype, scale):
    dtype = np.dtype(dtype)
    v = scale * rng.standard_normal(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(v), info.min, info.max).astype(dtype)
    big = float(finfo(dtype).max)
    return np.clip(v, -big, big).astype(dtype)


def special_value(name, dtype, big=None):
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return {"-inf": info.min, "-max": info.min, "inf": info.max, "max": info.max}.get(name, 0)
    fi = finfo(dtype)
    big = float(fi.max) if big is None else big
    return {"-inf": -np.inf, "inf": np.inf, "nan": np.nan, "max": big, "-max": -big,
            "tiny": float(fi.smallest_subnormal), "-0": -0.0}[name]


def specials(names, max_size=3):
    """(position, name) pairs: special values to put into an array."""
    return st.lists(st.tuples(st.integers(0, 2**16), st.sampled_from(names)), max_size=max_size)


def sprinkle(a, places, big=None):
    """``a`` with special values at the drawn places; "max" is ``big`` (default:
    the dtype's largest)."""
    a = np.array(a)
    flat = a.reshape(-1)
    for pos, name in places:
        if flat.size:
            flat[pos % flat.size] = special_value(name, a.dtype, big)
    return a


class DLPackOnly:
    """A CPU array that NumPy can only read through DLPack or ``__array__``,
    like a PyTorch CPU tensor."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, *args, **kwargs):
        return self.a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)

    def __repr__(self):
        return f"DLPackOnly({self.a!r})"


LAYOUTS = ("C", "F", "reversed", "strided", "negative", "big-endian", "readonly", "dlpack",
           "list")
OUT_LAYOUTS = ("C", "F", "reversed", "strided", "negative")


def lay_out(values, kind):
    """(an argument holding ``values`` in layout ``kind``, the ndarray that owns
    its memory, or None for a Python list)."""
    a = np.asarray(values)
    nd = a.ndim
    if kind == "list" and a.dtype in (F64, np.dtype(np.int64)) and a.size:
        return a.tolist(), None
    if kind == "big-endian" and a.dtype.itemsize > 1 and a.dtype != BF16:
        b = a.astype(a.dtype.newbyteorder(">"))
        return b, b
    if kind == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b, b
    if nd == 0 or kind not in ("F", "reversed", "strided", "negative", "dlpack"):
        b = a.copy()
        return b, b
    if kind == "F":
        b = np.array(a, order="F")
        return b, b
    if kind == "reversed":  # every axis reversed in memory: a transposed view
        b = a.T.copy(order="C")  # (always a copy: the caller's values stay apart)
        return b.T, b
    if kind == "negative":
        every = (slice(None, None, -1),) * nd
        b = a[every].copy(order="C")
        return b[every], b
    # strided (and dlpack): every other element of a buffer whose gaps hold
    # values that would show if read (NaN, or an out-of-range label)
    fill = (np.iinfo(a.dtype).max if a.dtype.kind in "iu" else
            np.nan if is_float(a.dtype) or a.dtype.kind == "c" else 1)
    buf = np.full(tuple(2 * d for d in a.shape), fill, a.dtype)
    view = buf[(slice(None, None, 2),) * nd]
    view[...] = a
    return (DLPackOnly(view) if kind == "dlpack" else view), buf


def freeze(case):
    """Make the drawn values read-only: every call gets copies (``lay_out``)."""
    for value in vars(case).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return case


class Call:
    """Fresh arguments for one call, and a check that the call wrote only where allowed."""

    def __init__(self):
        self.owners = []
        self.owner_of = {}
        self.outputs = []  # owners that a successful call may write
        self.out = None

    def put(self, values, layout):
        obj, owner = lay_out(values, layout)
        if owner is not None:
            self.owners.append(owner)
            self.owner_of[id(obj)] = owner
        return obj

    def may_write(self, obj):
        if id(obj) in self.owner_of:
            self.outputs.append(self.owner_of[id(obj)])

    def put_upstream(self, case, kw):
        """``case``'s return_grad and grad_output into ``kw``."""
        if case.return_grad:
            kw["return_grad"] = True
        if case.grad_output is not None:
            kw["grad_output"] = (self.put(case.grad_output, case.go_layout)
                                 if isinstance(case.grad_output, np.ndarray)
                                 else case.grad_output)

    def put_out(self, kind, shape, dtype, layout, wrong_shape):
        """An ``out`` of the kind a case draws: ``shape`` and ``dtype`` in
        ``layout``, or ``wrong_shape``, the other float dtype, read-only, a list."""
        if kind == "out_shape":
            shape = wrong_shape
        elif kind == "out_dtype":
            dtype = F32 if dtype == F64 else F64
        elif kind == "out_readonly":
            layout = "readonly"
        if kind == "out_list":
            return np.full(shape, 7.0).tolist()
        return self.put(np.full(shape, 7.0).astype(dtype), layout)

    def use_out(self, kw):
        """``kw``'s out, if any, is the one array a successful call may write."""
        self.out = kw.get("out")
        if self.out is not None:
            self.may_write(self.out)

    def snap(self):
        self.snaps = snapshot(*self.owners)

    def assert_unchanged(self, success):
        keep = [(o, s) for o, s in zip(self.owners, self.snaps)
                if not (success and any(o is w for w in self.outputs))]
        assert_unchanged([o for o, _ in keep], [s for _, s in keep])


def on_every_backend(build, expect):
    """Run ``build()`` (a (Call, function of backend) pair, fresh each time)
    on every CPU backend.

    Every backend must raise ``expect`` (an exception type), or none may
    raise when it is None; they must all agree; and the caller's arrays must be
    unchanged (except outputs, on success). Returns {backend: (call, result)}.
    """
    results, errors = {}, {}
    for backend in CPU_BACKENDS:
        call, fn = build()
        call.snap()
        try:
            results[backend] = (call, fn(backend))
        except Exception as exc:  # noqa: BLE001 - compared across backends below
            errors[backend] = exc
            call.assert_unchanged(success=False)
        else:
            call.assert_unchanged(success=True)
    outcome = {b: type(e).__name__ for b, e in errors.items()}
    outcome.update({b: "no error" for b in results})
    assert len(set(outcome.values())) == 1, (
        f"backends disagree: {outcome}; errors: { {b: str(e) for b, e in errors.items()} }")
    if expect is None and errors:
        raise next(iter(errors.values()))
    if expect is not None:
        assert not results, f"expected {expect.__name__}, got a result"
        for exc in errors.values():
            assert isinstance(exc, expect), f"expected {expect.__name__}, got {exc!r}"
    return results, errors


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------

@st.composite
def class_shapes(draw):
    """Logits of cross_entropy and evaluate: (C,), (N, C), (N, C, d1[, d2]),
    a few with C above 1024 (rows swept in several blocks)."""
    kind = draw(st.sampled_from(["(N, C)", "(N, C)", "(N, C)", "(C,)", "(N, C, d)", "(N, C, d)",
                                 "wide"]))
    if kind == "wide":
        c = draw(st.sampled_from([1025, 1537, 2049]))
        return draw(st.sampled_from([(c,), (0, c), (1, c), (2, c)]))
    c = draw(st.integers(1, 9) | st.sampled_from([16, 17, 31, 32, 33, 64, 65, 129]))
    if kind == "(C,)":
        return (c,)
    n = draw(st.integers(0, 5) | st.integers(6, 40))
    if kind == "(N, C)":
        return (min(n, max(1, 600 // c)), c)
    extra = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=2)))
    return (min(n, 3), min(c, 9)) + extra


@st.composite
def any_shapes(draw, min_dims=1):
    if draw(st.integers(0, 7)) == 0:
        return (draw(st.integers(1, 2)), draw(st.sampled_from([1025, 2049])))
    return tuple(draw(st.lists(st.integers(0, 5), min_size=min_dims, max_size=3)))


def representable(value, dtype):
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


# --------------------------------------------------------------------------
# cross_entropy
# --------------------------------------------------------------------------

XENT_ERRORS = {
    "label_high": IndexError, "label_negative": IndexError, "label_huge": IndexError,
    "target_shape": ValueError, "target_dtype": TypeError, "input_dtype": TypeError,
    "weight_shape": ValueError, "reduction": ValueError, "label_smoothing": ValueError,
    "z_loss": ValueError, "softcap": ValueError, "ignore_index": TypeError,
    "sample_weight_shape": ValueError, "grad_output_shape": ValueError,
    "grad_without_return": ValueError, "out_without_return": ValueError,
    "out_shape": ValueError, "out_dtype": ValueError, "out_readonly": ValueError,
    "out_list": TypeError, "num_threads": ValueError,
}
LABEL_ERRORS = ("label_high", "label_negative", "label_huge")


def has_targets(shape):
    return math.prod(batch_shape(shape)) > 0


@st.composite
def xent_cases(draw, error=None):
    """A call of cross_entropy: valid, or with the one invalid argument ``error``."""
    c = types.SimpleNamespace(error=error)
    shapes = class_shapes()
    if error in LABEL_ERRORS:  # a label to spoil
        shapes = shapes.filter(has_targets)
    shape = draw(shapes)
    dtype = draw(st.sampled_from(LOGIT_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ax = class_axis(shape)
    n_classes = shape[ax]
    bshape = batch_shape(shape)
    n_targets = math.prod(bshape)
    scale = draw(st.sampled_from([1.0, 4.0, 30.0, HUGE[dtype]]))
    x = float_values(rng, shape, dtype, scale)
    # "max": as large as leaves the loss's sums over C classes finite in the dtype
    # (PyTorch's too overflow beyond)
    big = float(finfo(dtype).max) / (8 * n_classes) if is_float(dtype) else None
    c.x = sprinkle(x, draw(specials(["-inf", "-inf", "inf", "nan", "max", "-max", "tiny"])),
                   big)
    c.x_layout = draw(st.sampled_from(LAYOUTS))
    c.probs = error not in LABEL_ERRORS and draw(st.integers(0, 2)) == 0
    c.kw = {}
    c.bad = None

    # targets
    if c.probs:
        t_dtype = draw(st.sampled_from(FLOAT_DTYPES))
        kind = draw(st.sampled_from(["dist", "raw", "onehot"]))
        if kind == "onehot":
            t = np.moveaxis(np.eye(n_classes)[rng.integers(0, n_classes, bshape)], -1, ax)
        else:
            t = rng.random(shape) + (0.05 if kind == "dist" else 0.0)
            if kind == "dist":
                t /= t.sum(axis=ax, keepdims=True)
            else:
                t *= 1.5
        t = sprinkle(t.astype(t_dtype), draw(specials(["nan", "-0", "tiny"], max_size=1)))
    else:
        # a dtype that holds every class (and, to spoil a label, C + 1 and a negative)
        t_dtype = draw(st.sampled_from(
            [d for d in INT_DTYPES if np.iinfo(d).max >= n_classes - 1
             and (error not in LABEL_ERRORS or np.iinfo(d).max >= n_classes + 1)
             and (error != "label_negative" or d.kind == "i")]))
        ignore_index = draw(st.sampled_from([None, None, -1, 0, 1, 255, 1000, -(2**40)]))
        if ignore_index is not None:
            c.kw["ignore_index"] = ignore_index
        ii = -100 if ignore_index is None else ignore_index
        t = rng.integers(0, n_classes, bshape).astype(t_dtype)
        flat = t.reshape(-1)
        n_ignore = draw(st.sampled_from([0, 1, 2, n_targets]))
        if representable(ii, t_dtype) and n_targets:
            flat[rng.choice(n_targets, size=min(n_ignore, n_targets), replace=False)] = ii
        if error in LABEL_ERRORS:
            info = np.iinfo(t_dtype)
            candidates = {"label_high": [n_classes, n_classes + 1, n_classes + 7],
                          "label_negative": [-1, -3, info.min],
                          "label_huge": [info.max, info.max - 1, info.min]}[error]
            value = draw(st.sampled_from(
                [v for v in candidates if representable(v, t_dtype) and v != ii
                 and not 0 <= v < n_classes]))
            pos = draw(st.integers(0, n_targets - 1))
            flat[pos] = value
            c.bad = (value, tuple(int(i) for i in np.unravel_index(pos, bshape)))
    c.target = t
    c.target_layout = draw(st.sampled_from(LAYOUTS))

    # weights and options
    c.weight = None
    if draw(st.booleans()):
        w = 0.25 + 2 * rng.random(n_classes)
        kind = draw(st.sampled_from(["positive", "positive", "a zero", "mixed signs"]))
        if kind == "a zero":
            w[rng.integers(0, n_classes)] = 0.0
        elif kind == "mixed signs":
            w *= rng.choice([-1.0, 1.0], n_classes)
        c.weight = w.astype(draw(st.sampled_from([F64, F32, F16])))
    c.weight_layout = draw(st.sampled_from(LAYOUTS))
    c.sample_weight = None
    if draw(st.booleans()):
        sw = 2 * rng.random(bshape)
        if n_targets and draw(st.booleans()):
            sw.reshape(-1)[rng.integers(0, n_targets)] = 0.0
        c.sample_weight = sw.astype(draw(st.sampled_from([F64, F32, F16])))
    c.sw_layout = draw(st.sampled_from(LAYOUTS))
    c.kw["reduction"] = draw(st.sampled_from(["mean", "sum", "none"]))
    # (from 1e-6: a smaller one rounds to 0 in float32, where 0 * -inf is NaN)
    smoothing = draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]) | st.floats(1e-6, 1.0))
    if smoothing:
        c.kw["label_smoothing"] = smoothing
    z_loss = draw(st.sampled_from([0.0, 0.0, 1e-3, 0.5]))
    if z_loss:
        c.kw["z_loss"] = z_loss
    softcap = draw(st.sampled_from([None, None, 0.5, 5.0, 50.0]))
    if softcap:
        c.kw["softcap"] = softcap
    c.kw["num_threads"] = draw(st.sampled_from([None, 1, 2]))
    c.return_grad = draw(st.sampled_from([True, True, False]))
    c.grad_output = None
    c.out = None
    if c.return_grad:
        go = draw(st.sampled_from(["default", "scalar", "array"]))
        if go == "scalar":
            c.grad_output = draw(st.sampled_from([0.5, -2.0, 0.0]))
        elif go == "array":
            c.grad_output = (rng.standard_normal(bshape) if c.kw["reduction"] == "none"
                             else np.full(draw(st.sampled_from([(), (1,)])), -1.5))
        c.out = draw(st.sampled_from([None, "new", "new", "input", "input", "target"]))
    c.out_layout = draw(st.sampled_from(OUT_LAYOUTS))
    c.go_layout = draw(st.sampled_from(LAYOUTS))

    e = error
    if e == "target_shape":
        c.target = c.target[..., None]
    elif e == "target_dtype":
        c.target = c.target.astype(np.complex64 if c.probs else bool)
    elif e == "input_dtype":
        c.x = c.x.astype(np.complex128)
        c.out = None
    elif e == "weight_shape":
        c.weight = np.ones(n_classes + 1)
    elif e == "reduction":
        c.kw["reduction"] = draw(st.sampled_from(["avg", "MEAN", None]))
    elif e == "label_smoothing":
        c.kw["label_smoothing"] = draw(st.sampled_from([-0.1, 1.5, math.nan]))
    elif e == "z_loss":
        c.kw["z_loss"] = draw(st.sampled_from([-1.0, math.inf, math.nan]))
    elif e == "softcap":
        c.kw["softcap"] = draw(st.sampled_from([0.0, -1.0, math.inf, math.nan]))
    elif e == "ignore_index":
        c.kw["ignore_index"] = 1.5
    elif e == "sample_weight_shape":
        c.sample_weight = np.ones(bshape + (2,))
    elif e == "grad_output_shape":
        c.return_grad = True
        c.grad_output = np.ones(bshape + (2,) if c.kw["reduction"] == "none" else (2,))
    elif e == "grad_without_return":
        c.return_grad, c.grad_output, c.out = False, 2.0, None
    elif e == "out_without_return":
        c.return_grad, c.grad_output, c.out = False, None, "new"
    elif e in ("out_shape", "out_dtype", "out_readonly", "out_list"):
        c.return_grad, c.out = True, e
    elif e == "num_threads":
        c.kw["num_threads"] = draw(st.sampled_from([0, -1]))
    return c


def xent_builder(case):
    """A function that makes a fresh (Call, function of backend) for ``case``."""
    def build():
        call = Call()
        x = call.put(case.x, case.x_layout)
        target = call.put(case.target, case.target_layout)
        kw = dict(case.kw)
        weight = None if case.weight is None else call.put(case.weight, case.weight_layout)
        if case.sample_weight is not None:
            kw["sample_weight"] = call.put(case.sample_weight, case.sw_layout)
        call.put_upstream(case, kw)
        out = case.out
        gdt = result_of(np.asarray(x).dtype)  # big-endian input: big-endian out
        if out == "input" and not (isinstance(x, np.ndarray) and x.flags.writeable
                                   and is_float(x.dtype)):
            out = "new"
        if out == "target" and not (isinstance(target, np.ndarray) and target.flags.writeable
                                    and target.dtype == gdt and target.shape == case.x.shape):
            out = "new"
        if out == "input":
            kw["out"] = x
        elif out == "target":
            kw["out"] = target
        elif out is not None:
            shape = case.x.shape
            kw["out"] = call.put_out(out, shape, gdt, case.out_layout,
                                     shape[:-1] + (shape[-1] + 1,))
        call.use_out(kw)
        return call, lambda backend: fastxent.cross_entropy(x, target, weight, backend=backend,
                                                            **kw)
    return build


def ref_cross_entropy(x, target, weight=None, *, ignore_index=-100, reduction="mean",
                      label_smoothing=0.0, sample_weight=None, z_loss=0.0, softcap=None,
                      grad_output=None, num_threads=None):
    """float64 (loss, grad, loss tolerance, grad tolerance, degenerate).

    conftest's ``oracle_xent`` (PyTorch's formulas) on the soft-capped logits
    with per-row upstream gradients, plus ``sample_weight`` and ``z_loss`` as
    the docstring defines them: "mean" is sum(sw ce) / sum(sw w_y) +
    z_loss sum(sw lse**2) / sum(sw), over the counted samples. Arguments are
    rounded to the compute dtype first, as the API computes in it.
    ``degenerate``: a mean over samples of zero total weight (its gradient is
    0 * inf in places, and NaN or inf depends on rounding).
    """
    x = np.asarray(x)
    comp = compute_of(x.dtype)
    x64 = to64(x)
    ax = class_axis(x64.shape)
    n_classes = x64.shape[ax]
    bshape = batch_shape(x64.shape)
    expand = (lambda a: np.expand_dims(a, ax))
    with np.errstate(all="ignore"):
        if softcap:
            th = np.tanh(x64 / softcap)
            z, dcap = softcap * th, 1.0 - th * th
        else:
            z, dcap = x64, 1.0
        t = np.asarray(target)
        probs = is_float(t.dtype)
        if probs:
            t = to64(t.astype(comp))
        w = None if weight is None else to64(np.asarray(weight).astype(comp))
        wv = np.ones(n_classes) if w is None else w
        s = np.ones(bshape) if sample_weight is None else to64(sample_weight).reshape(bshape)
        if probs:
            kept = np.ones(bshape, bool)
            d1 = d2 = np.float64(np.sum(s))
        else:
            y = t.astype(np.int64)
            kept = y != ignore_index
            yk = np.where(kept, y, 0)
            d1 = np.float64(np.sum(s[kept] * wv[yk[kept]]))
            d2 = np.float64(np.sum(s[kept]))
        if reduction == "none":
            go = 1.0 if grad_output is None else to64(grad_output)
            r = r2 = s * np.broadcast_to(go, bshape)
        else:
            go = 1.0 if grad_output is None else to64(grad_output).reshape(-1)[0]
            r = r2 = s * go
            if reduction == "mean":
                r, r2 = r / d1, r / d2
        ce, g, _ = oracle_xent(z, t, w, ignore_index=ignore_index, reduction="none",
                               label_smoothing=label_smoothing, grad_output=r)
        ce = np.asarray(ce).reshape(bshape)
        # PyTorch's log-sum-exp: the max subtracted, even an infinite one.
        m = np.max(z, axis=ax, keepdims=True)
        e = np.exp(z - m)
        se = np.sum(e, axis=ax, keepdims=True)
        lse = np.squeeze(m + np.log(se), axis=ax)
        p = e / se
        zt = np.where(kept, z_loss * lse * lse, 0.0) if z_loss else np.zeros(bshape)
        rows = s * (ce + zt)
        if reduction == "none":
            loss = rows
        elif reduction == "sum":
            loss = np.sum(rows)
        else:
            loss = np.sum(s * ce) / d1 + (np.sum(s * zt) / d2 if z_loss else 0.0)
        gz = np.where(expand(kept), expand(2 * z_loss * lse * r2) * p, 0.0) if z_loss else 0.0
        grad = np.where(expand(kept), (g + gz) * dcap, 0.0)

        # tolerances: a few ulps of the compute dtype, per unit of each term
        rel, fac = ACC[comp]
        unit = 1.0 + max_abs_finite(z) + math.log(n_classes)
        big_w = max_abs_finite(wv)
        if probs:
            q = t * (1 - label_smoothing) + label_smoothing / n_classes
            mass = big_w * np.maximum(1.0, np.nan_to_num(np.sum(np.abs(q), axis=ax)))
        else:
            mass = np.full(bshape, big_w)
        zu = (np.where(kept, z_loss * 2 * (np.nan_to_num(np.abs(lse), posinf=0.0) + unit)
                       * unit, 0.0) if z_loss else 0.0)
        ce_u = mass * unit
        a_s = np.abs(s)
        if reduction == "none":
            loss_tol = fac * a_s * (ce_u + zu) + rel * np.abs(rows)
        elif reduction == "sum":
            loss_tol = fac * np.sum(a_s * (ce_u + zu)) + rel * np.sum(np.abs(rows))
        else:
            loss_tol = (fac * np.sum(a_s * ce_u) + rel * np.sum(np.abs(s * ce))) / abs(d1)
            if z_loss:
                loss_tol += (fac * np.sum(a_s * zu) + rel * np.sum(np.abs(s * zt))) / abs(d2)
        row_unit = np.abs(r) * ce_u + (np.abs(r2) * zu if z_loss else 0.0)
        # (ignored rows have no gradient at all: nothing to allow there)
        grad_tol = np.where(expand(kept), fac * expand(row_unit), 0.0) + rel * np.abs(grad)
    degenerate = (reduction == "mean" and bool(kept.any())
                  and (d1 == 0 or (z_loss and d2 == 0)))
    return loss, grad, loss_tol, grad_tol, degenerate


def check_xent_result(case, backend, call, result):
    comp = compute_of(np.asarray(case.x).dtype)
    reduction = case.kw["reduction"]
    bshape = batch_shape(case.x.shape)
    loss, grad = result if case.return_grad else (result, None)
    what = f"{backend}: cross_entropy"
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == bshape, (what, type(loss))
    else:
        assert isinstance(loss, np.floating), (what, type(loss))
    assert loss.dtype == comp, (what, loss.dtype)
    ref_loss, ref_grad, loss_tol, grad_tol, degenerate = ref_cross_entropy(
        case.x, case.target, case.weight, sample_weight=case.sample_weight,
        grad_output=case.grad_output, **case.kw)
    assert_close(loss, ref_loss, loss_tol, comp, what + " loss")
    if case.return_grad:
        assert isinstance(grad, np.ndarray) and grad.shape == case.x.shape, what
        assert same_dtype(grad.dtype, result_of(case.x.dtype)), (what, grad.dtype)
        if call.out is not None:
            assert grad is call.out, f"{what}: the gradient is not out="
        if not degenerate:
            assert_close(grad, ref_grad, grad_tol, grad.dtype, what + " grad")


@fuzz(200)
@given(case=xent_cases())
def test_cross_entropy_matches_reference(case):
    freeze(case)
    results, _ = on_every_backend(xent_builder(case), None)
    for backend, (call, result) in results.items():
        check_xent_result(case, backend, call, result)


def check_error_message(case, errors):
    """IndexError names the bad label's value and where it is; the range errors
    of binary_cross_entropy name where the first bad value is."""
    if case.bad is None:
        return
    value, where = case.bad
    for exc in errors.values():
        assert str(where) in str(exc), str(exc)
        if value is not None:
            assert str(value) in str(exc), str(exc)


@pytest.mark.parametrize("error", sorted(XENT_ERRORS))
@fuzz(8)
@given(data=st.data())
def test_cross_entropy_raises_documented_error(error, data):
    case = freeze(data.draw(xent_cases(error), label="case"))
    _, errors = on_every_backend(xent_builder(case), XENT_ERRORS[error])
    check_error_message(case, errors)


@fuzz(40)
@given(case=xent_cases(), layout=st.sampled_from(LAYOUTS))
def test_cross_entropy_same_bits_for_any_thread_count_and_layout(case, layout):
    # API.md: the same call gives bit-identical results for every num_threads;
    # and the same values, laid out otherwise, are the same call.
    freeze(case)
    for backend in CPU_BACKENDS:
        runs = []
        for num_threads, x_layout in ((1, case.x_layout), (2, case.x_layout), (2, layout)):
            kw = dict(case.kw, num_threads=num_threads)
            if case.sample_weight is not None:
                kw["sample_weight"] = case.sample_weight
            x, _ = lay_out(case.x, x_layout)
            runs.append(fastxent.cross_entropy(
                x, case.target, case.weight, return_grad=True, backend=backend, **kw))
        for loss, grad in runs[1:]:
            assert_same_bits(loss, runs[0][0], f"{backend} loss")
            assert_same_bits(grad, runs[0][1], f"{backend} grad")


def assert_same_bits(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    a = a.astype(a.dtype.newbyteorder("=")) if a.dtype != BF16 else a
    b = b.astype(b.dtype.newbyteorder("=")) if b.dtype != BF16 else b
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what}: different bits"


@fuzz(50)
@given(case=xent_cases(),
       counted=st.sampled_from(["as drawn", "nothing: all ignored", "nothing: zero weights"]))
def test_cross_entropy_nan_and_inf_propagate_whatever_the_errstate(case, counted):
    # API.md: NaN and inf in the data are not errors, and a batch with nothing
    # to count gives NaN; so a caller's np.errstate(invalid="raise",
    # divide="raise") must not turn them into FloatingPointError (the API's own
    # divisions are written to give inf and NaN without a warning). Overflow is
    # left out: a float32 loss beyond its range is inf, and NumPy says so.
    bshape = batch_shape(case.x.shape)
    if counted != "as drawn":
        case.kw["reduction"] = "mean"
        case.return_grad = True
        case.grad_output = None
        if counted == "nothing: all ignored" and not case.probs:
            case.target = np.zeros_like(case.target)
            case.kw["ignore_index"] = 0
        else:
            case.sample_weight = np.zeros(bshape)
    note(f"the call: {case!r}")
    freeze(case)
    build = xent_builder(case)
    for backend in CPU_BACKENDS:
        _, fn = build()
        expected = fn(backend)
        _, fn = build()
        with np.errstate(invalid="raise", divide="raise"):
            got = fn(backend)
        for a, b in zip(expected if case.return_grad else [expected],
                        got if case.return_grad else [got]):
            assert_same_bits(a, b, backend)


# --------------------------------------------------------------------------
# log_softmax, softmax, logsumexp
# --------------------------------------------------------------------------

TRANSFORM_ERRORS = {"axis_range": ValueError, "axis_type": TypeError, "scalar": ValueError,
                    "input_dtype": TypeError, "out_shape": ValueError, "out_dtype": ValueError,
                    "out_readonly": ValueError, "out_list": TypeError}


@st.composite
def transform_cases(draw, op, error=None):
    c = types.SimpleNamespace(op=op, error=error)
    shape = draw(any_shapes())
    dtype = draw(st.sampled_from(LOGIT_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = float_values(rng, shape, dtype, draw(st.sampled_from([1.0, 10.0, HUGE[dtype]])))
    if draw(st.booleans()):  # ties
        x = np.round(x / 4).astype(dtype)
    c.x = sprinkle(x, draw(specials(["-inf", "-inf", "inf", "nan", "max", "-max", "tiny"])))
    c.x_layout = draw(st.sampled_from(LAYOUTS))
    c.axis = draw(st.integers(-len(shape), len(shape) - 1))
    c.pass_axis = c.axis != -1 or draw(st.booleans())
    c.kw = {"num_threads": draw(st.sampled_from([None, 1, 2]))}
    c.out = draw(st.sampled_from([None, "new", "input"])) if op != "logsumexp" else None
    c.out_layout = draw(st.sampled_from(OUT_LAYOUTS))
    if c.error == "axis_range":
        c.axis = draw(st.sampled_from([len(shape), -len(shape) - 1]))
        c.pass_axis = True
    elif c.error == "axis_type":
        c.axis, c.pass_axis = draw(st.sampled_from([1.5, "0", None])), True
    elif c.error == "scalar":
        c.x, c.axis, c.pass_axis = c.x.reshape(-1)[:1].reshape(()) if c.x.size else \
            np.asarray(1.0, dtype), -1, False
    elif c.error == "input_dtype":
        c.x, c.out = c.x.astype(np.complex128), None
    elif c.error is not None:
        c.out = c.error
    return c


def transform_builder(case):
    fn = getattr(fastxent, case.op)

    def build():
        call = Call()
        x = call.put(case.x, case.x_layout)
        kw = dict(case.kw)
        if case.pass_axis:
            kw["axis"] = case.axis
        rdt = result_of(np.asarray(x).dtype)
        if case.out == "input" and isinstance(x, np.ndarray) and x.flags.writeable \
                and is_float(x.dtype):
            kw["out"] = x
        elif case.out is not None:
            kw["out"] = call.put_out(case.out, case.x.shape, rdt, case.out_layout,
                                     case.x.shape + (1,))
        call.use_out(kw)
        return call, lambda backend: fn(x, backend=backend, **kw)
    return build


def ref_transform(op, x, axis):
    """float64 (result, tolerance): log_softmax and softmax as PyTorch computes
    them (z - max, so a +inf or an all -inf slice gives NaN), logsumexp as
    scipy.special (+inf for a +inf entry, -inf for an all -inf slice)."""
    x = np.asarray(x)
    comp = compute_of(x.dtype)
    z = to64(x)
    n = z.shape[axis]
    rel, fac = ACC[comp]
    unit = 1.0 + max_abs_finite(z) + math.log(max(n, 1))
    with np.errstate(all="ignore"):
        if op == "logsumexp":
            ref = (np.full(z.shape[:axis] + z.shape[axis + 1:], -np.inf) if n == 0
                   else special.logsumexp(z, axis=axis))
            return ref, rel * np.abs(ref) + fac * unit
        if n == 0:
            return z.copy(), 0.0
        m = np.max(z, axis=axis, keepdims=True)
        d = z - m
        s = np.sum(np.exp(d), axis=axis, keepdims=True)
        if op == "log_softmax":
            ref = d - np.log(s)
            return ref, rel * np.abs(ref) + fac * unit
        ref = np.exp(d) / s
        return ref, (rel + fac * unit) * np.abs(ref)


@pytest.mark.parametrize("op", ["log_softmax", "softmax", "logsumexp"])
@fuzz(70)
@given(data=st.data())
def test_transforms_match_reference(op, data):
    case = freeze(data.draw(transform_cases(op), label="case"))
    results, _ = on_every_backend(transform_builder(case), None)
    axis = operator.index(case.axis) % case.x.ndim
    ref, tol = ref_transform(op, case.x, axis)
    rdt = result_of(case.x.dtype)
    for backend, (call, result) in results.items():
        what = f"{backend}: {op}"
        if call.out is not None:
            assert result is call.out, f"{what}: the result is not out="
        if op == "logsumexp" and case.x.ndim == 1:
            assert isinstance(result, np.generic), (what, type(result))  # a NumPy scalar
        else:
            assert isinstance(result, np.ndarray), (what, type(result))
        assert same_dtype(result.dtype, rdt), (what, result.dtype)
        assert_close(result, ref, tol, result.dtype, what)


@pytest.mark.parametrize("op, error", [
    (op, e) for op in ("log_softmax", "softmax", "logsumexp") for e in sorted(TRANSFORM_ERRORS)
    if op != "logsumexp" or not e.startswith("out")])
@fuzz(5)
@given(data=st.data())
def test_transforms_raise_documented_error(op, error, data):
    case = freeze(data.draw(transform_cases(op, error), label="case"))
    on_every_backend(transform_builder(case), TRANSFORM_ERRORS[error])


# --------------------------------------------------------------------------
# binary_cross_entropy, binary_cross_entropy_with_logits
# --------------------------------------------------------------------------

BINARY_ERRORS = {"target_shape": ValueError, "input_range": ValueError,
                 "target_range": ValueError, "weight_shape": ValueError,
                 "pos_weight_shape": ValueError, "reduction": ValueError,
                 "grad_without_return": ValueError, "grad_output_shape": ValueError,
                 "out_shape": ValueError, "out_dtype": ValueError, "out_readonly": ValueError,
                 "input_dtype": TypeError, "target_dtype": TypeError, "num_threads": ValueError}
# the logits' targets are not range-checked (as in PyTorch)
RANGE_ERRORS = ("input_range", "target_range")


def broadcast_shape_for(draw, shape):
    """A shape that broadcasts to ``shape``: (), trailing axes, leading 1s,
    the full shape, or 1s in the middle."""
    k = draw(st.integers(0, len(shape)))
    tail = tuple(shape[len(shape) - k:])
    kind = draw(st.sampled_from(["tail", "ones+tail", "holes"]))
    if kind == "ones+tail":
        return (1,) * draw(st.integers(0, len(shape) - k)) + tail
    if kind == "holes":
        return tuple(d if draw(st.booleans()) else 1 for d in shape)
    return tail


@st.composite
def binary_cases(draw, logits, error=None):
    c = types.SimpleNamespace(logits=logits, error=error)
    shapes = any_shapes(min_dims=0)
    if error in RANGE_ERRORS:  # a value to spoil
        shapes = shapes.filter(lambda shape: math.prod(shape) > 0)
    shape = (draw(st.sampled_from([(3, 3000), (9000,)])) if draw(st.integers(0, 9)) == 0
             else draw(shapes))  # a few over 8192 elements: several blocks
    dtype = draw(st.sampled_from(LOGIT_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if logits:
        x = float_values(rng, shape, dtype, draw(st.sampled_from([1.0, 10.0, HUGE[dtype]])))
        places = draw(specials(["-inf", "inf", "nan", "max", "-max", "tiny", "-0"]))
        x = sprinkle(x, places)
        t = 0.5 + 0.75 * rng.standard_normal(shape)  # outside [0, 1] too
        t = np.where(rng.random(shape) < 0.3, np.round(t.clip(0, 1)), t)
        t_edges = [0.0, 1.0, 0.25, -0.5, 1.75]
    else:
        x = rng.random(shape)
        if dtype.kind in "iu":
            x = np.round(x)
        x = x.astype(dtype)
        # exact 0 and 1 (the logs are clamped at -100), NaN, tiny values
        places = draw(specials(["nan", "tiny", "-0", 0, 1, 1, 0]))
        flat = x.reshape(-1)
        for pos, name in places:
            if flat.size:
                flat[pos % flat.size] = name if name in (0, 1) else special_value(name, dtype)
        t = np.where(rng.random(shape) < 0.4, np.round(rng.random(shape)), rng.random(shape))
        t_edges = [0.0, 1.0, 0.5, np.nan]
    # edge targets where the edge inputs are
    flat = t.reshape(-1)
    for pos, _ in places:
        if flat.size:
            flat[pos % flat.size] = draw(st.sampled_from(t_edges))
    c.x = x
    c.target = t.astype(draw(st.sampled_from(FLOAT_DTYPES)))
    c.x_layout = draw(st.sampled_from(LAYOUTS))
    c.t_layout = draw(st.sampled_from(LAYOUTS))
    c.weight = c.pos_weight = None
    if draw(st.booleans()):
        c.weight = (2 * rng.random(broadcast_shape_for(draw, shape))).astype(
            draw(st.sampled_from([F64, F32, F16])))
    if logits and draw(st.booleans()):
        pw_shape = draw(st.sampled_from([shape[-1:], broadcast_shape_for(draw, shape)]))
        c.pos_weight = (3 * rng.random(pw_shape)).astype(draw(st.sampled_from([F64, F32])))
    c.w_layout = draw(st.sampled_from(LAYOUTS))
    # (mostly "none": one NaN in a sum hides what the other elements are)
    c.kw = {"reduction": draw(st.sampled_from(["mean", "sum", "none", "none"])),
            "num_threads": draw(st.sampled_from([None, 1, 2]))}
    c.return_grad = draw(st.sampled_from([True, True, False]))
    c.grad_output = c.out = None
    if c.return_grad:
        if c.kw["reduction"] == "none":
            go = draw(st.sampled_from([None, "scalar", "full", "broadcast"]))
            if go == "scalar":
                c.grad_output = -0.5
            elif go is not None:
                c.grad_output = rng.standard_normal(
                    shape if go == "full" else broadcast_shape_for(draw, shape))
        else:
            c.grad_output = draw(st.sampled_from([None, 2.0, -1.0]))
        c.out = draw(st.sampled_from([None, "new", "input"]))
    c.out_layout = draw(st.sampled_from(OUT_LAYOUTS))
    c.go_layout = draw(st.sampled_from(LAYOUTS))

    c.bad = None
    e = error
    if e == "target_shape":
        c.target = c.target[..., None]
    elif e in RANGE_ERRORS:
        arr = c.x if e == "input_range" else c.target
        arr = arr.copy()
        value = draw(st.sampled_from([-1, 2] if arr.dtype.kind in "iu" else
                                     [-0.5, 1.5, -np.inf, np.inf, -1e-30]))
        pos = draw(st.integers(0, arr.size - 1))
        arr.reshape(-1)[pos] = value
        if e == "input_range":
            c.x = arr
        else:
            c.target = arr
        c.bad = (None, tuple(int(i) for i in np.unravel_index(pos, shape)))
    elif e == "weight_shape":
        c.weight = np.ones(tuple(shape) + (2,))
    elif e == "pos_weight_shape":
        c.pos_weight = np.ones((shape[-1] + 2,) if shape else (2,))
    elif e == "reduction":
        c.kw["reduction"] = draw(st.sampled_from(["avg", "elementwise_mean", None]))
    elif e == "grad_without_return":
        c.return_grad, c.grad_output, c.out = False, 1.0, None
    elif e == "grad_output_shape":
        c.return_grad = True
        c.grad_output = np.ones(tuple(shape) + (2,) if c.kw["reduction"] == "none" else (2,))
    elif e in ("out_shape", "out_dtype", "out_readonly"):
        c.return_grad, c.out = True, e
    elif e == "input_dtype":
        c.x, c.out = c.x.astype(np.complex128), None
    elif e == "target_dtype":
        c.target = c.target.astype(np.complex64)
    elif e == "num_threads":
        c.kw["num_threads"] = 0
    return c


def binary_builder(case):
    fn = (fastxent.binary_cross_entropy_with_logits if case.logits
          else fastxent.binary_cross_entropy)

    def build():
        call = Call()
        x = call.put(case.x, case.x_layout)
        target = call.put(case.target, case.t_layout)
        kw = dict(case.kw)
        weight = None if case.weight is None else call.put(case.weight, case.w_layout)
        if case.pos_weight is not None:
            kw["pos_weight"] = call.put(case.pos_weight, case.w_layout)
        call.put_upstream(case, kw)
        rdt = result_of(np.asarray(x).dtype)
        if case.out == "input" and isinstance(x, np.ndarray) and x.flags.writeable \
                and is_float(x.dtype):
            kw["out"] = x
        elif case.out is not None:
            kw["out"] = call.put_out(case.out, case.x.shape, rdt, case.out_layout,
                                     case.x.shape + (2,))
        call.use_out(kw)
        return call, lambda backend: fn(x, target, weight, backend=backend, **kw)
    return build


# PyTorch's floor of x (1 - x) in the gradient: 1e-12 as a float32 (in float64 too).
BCE_FLOOR = float(np.float32(1e-12))


def ref_binary(case):
    """float64 (loss, grad, loss tolerance, grad tolerance) from the definitions:
    -w (y max(log x, -100) + (1 - y) max(log(1 - x), -100)) and PyTorch's
    gradient; w ((1 - y) x - lw log_sigmoid(x)), lw = 1 + (pw - 1) y, and
    w (lw sigmoid(x) - pw y) for logits. Arguments in the compute dtype first."""
    comp = compute_of(case.x.dtype)
    shape = case.x.shape
    x = to64(case.x)
    y = to64(case.target.astype(comp))
    w = 1.0 if case.weight is None else np.broadcast_to(to64(case.weight.astype(comp)), shape)
    rel, fac = ACC[comp]
    with np.errstate(all="ignore"):
        if case.logits:
            pw = (1.0 if case.pos_weight is None
                  else np.broadcast_to(to64(case.pos_weight.astype(comp)), shape))
            lw = 1.0 + (pw - 1.0) * y
            # lw's own terms cancel (pos_weight << 1, y = 1: PyTorch's formula
            # too), and so do the loss's (x << 0): errors are relative to the terms
            lw_size = 1.0 + np.abs((pw - 1.0) * y)
            log_sig = special.log_expit(x)
            a = (1.0 - y) * x
            loss = w * (a - lw * log_sig)
            size = np.abs(w) * (np.abs(a) + lw_size * np.abs(log_sig))
            sig = special.expit(x)
            grad = w * (lw * sig - pw * y)
            gsize = np.abs(w) * (lw_size * sig + np.abs(pw * y))
        else:
            a = y * np.maximum(np.log(x), -100.0)
            b = (1.0 - y) * np.maximum(np.log1p(-x), -100.0)
            loss = -w * (a + b)
            size = np.abs(w) * (np.abs(a) + np.abs(b))
            grad = w * (x - y) / np.maximum(x * (1.0 - x), BCE_FLOOR)
            gsize = np.abs(grad)
        loss = np.broadcast_to(loss, shape)
        size = np.broadcast_to(size, shape)
        reduction = case.kw["reduction"]
        n = x.size
        if reduction == "none":
            go = 1.0 if case.grad_output is None else to64(case.grad_output)
            scale = np.broadcast_to(go, shape)
            ref_loss, loss_tol = loss, (rel + fac) * size
        else:
            go = 1.0 if case.grad_output is None else float(case.grad_output)
            factor = np.float64(n) if reduction == "mean" else np.float64(1.0)
            scale = np.full(shape, go) / factor
            ref_loss = np.sum(loss) / factor
            loss_tol = (rel + fac) * np.sum(size) / factor
        ref_grad = scale * np.broadcast_to(grad, shape)
        grad_tol = (rel + fac) * np.abs(scale) * np.broadcast_to(gsize, shape)
    return ref_loss, ref_grad, loss_tol, grad_tol


@pytest.mark.parametrize("logits", [False, True], ids=["probabilities", "logits"])
@fuzz(100)
@given(data=st.data())
def test_binary_losses_match_reference(logits, data):
    case = freeze(data.draw(binary_cases(logits), label="case"))
    results, _ = on_every_backend(binary_builder(case), None)
    comp = compute_of(case.x.dtype)
    ref_loss, ref_grad, loss_tol, grad_tol = ref_binary(case)
    for backend, (call, result) in results.items():
        what = f"{backend}: binary ({'logits' if logits else 'probabilities'})"
        loss, grad = result if case.return_grad else (result, None)
        if case.kw["reduction"] == "none":
            assert isinstance(loss, np.ndarray) and loss.shape == case.x.shape, what
        else:
            assert isinstance(loss, np.floating), (what, type(loss))
        assert loss.dtype == comp, (what, loss.dtype)
        assert_close(loss, ref_loss, loss_tol, comp, what + " loss")
        if case.return_grad:
            assert isinstance(grad, np.ndarray) and grad.shape == case.x.shape, what
            if call.out is not None:
                assert grad is call.out, f"{what}: the gradient is not out="
            assert same_dtype(grad.dtype, result_of(case.x.dtype)), (what, grad.dtype)
            assert_close(grad, ref_grad, grad_tol, grad.dtype, what + " grad")


@pytest.mark.parametrize("logits, error", [
    (logits, e) for logits in (False, True) for e in sorted(BINARY_ERRORS)
    if (logits or e != "pos_weight_shape") and not (logits and e in RANGE_ERRORS)])
@fuzz(5)
@given(data=st.data())
def test_binary_losses_raise_documented_error(logits, error, data):
    case = freeze(data.draw(binary_cases(logits, error), label="case"))
    _, errors = on_every_backend(binary_builder(case), BINARY_ERRORS[error])
    check_error_message(case, errors)


@fuzz(40)
@given(x=st.lists(st.sampled_from([-np.inf, np.inf, np.nan, -1e308, 1e308, -40.0, 0.0, 40.0]),
                  min_size=1, max_size=8),
       data=st.data())
def test_binary_with_logits_at_extreme_logits(x, data):
    # NaN and inf propagate as in PyTorch, whose loss is the definition
    # (1 - y) x - lw log_sigmoid(x) (targets are not range-checked: y < 0 and
    # y > 1 too): e.g. x = -inf gives NaN for y <= 1 but +inf for y > 1.
    n = len(x)
    y = data.draw(st.lists(st.sampled_from([0.0, 1.0, 0.5, -0.5, 1.5, 3.0]), min_size=n,
                           max_size=n), label="target")
    pw = data.draw(st.none() | st.lists(st.sampled_from([0.25, 1.0, 2.0]), min_size=n,
                                        max_size=n), label="pos_weight")
    case = freeze(types.SimpleNamespace(
        logits=True, x=np.array(x), target=np.array(y), x_layout="C", t_layout="C",
        weight=None, pos_weight=None if pw is None else np.array(pw), w_layout="C",
        kw={"reduction": "none", "num_threads": None}, return_grad=True, grad_output=None,
        out=None, out_layout="C", go_layout="C", error=None, bad=None))
    results, _ = on_every_backend(binary_builder(case), None)
    ref_loss, ref_grad, loss_tol, grad_tol = ref_binary(case)
    for backend, (_, (loss, grad)) in results.items():
        assert_close(loss, ref_loss, loss_tol, F64, f"{backend}: loss")
        assert_close(grad, ref_grad, grad_tol, F64, f"{backend}: grad")


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------

EVALUATE_ERRORS = {"label_high": IndexError, "label_negative": IndexError,
                   "target_float": TypeError, "target_shape": ValueError,
                   "topk_zero": ValueError, "topk_type": TypeError,
                   "chunk_rows_zero": ValueError, "chunk_rows_type": TypeError,
                   "weight_shape": ValueError, "sample_weight_shape": ValueError,
                   "input_dtype": TypeError, "ignore_index": TypeError}


@st.composite
def evaluate_cases(draw, error=None):
    c = types.SimpleNamespace(error=error)
    shapes = class_shapes()
    if error in LABEL_ERRORS:  # a label to spoil
        shapes = shapes.filter(has_targets)
    if draw(st.integers(0, 9)) == 0:  # more than one block of 1024 rows (chunks)
        shape = (draw(st.integers(1025, 1100)), draw(st.integers(2, 3)))
    else:
        shape = draw(shapes)
    dtype = draw(st.sampled_from(LOGIT_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ax = class_axis(shape)
    n_classes = shape[ax]
    bshape = batch_shape(shape)
    n_targets = math.prod(bshape)
    x = float_values(rng, shape, dtype, draw(st.sampled_from([1.0, 4.0, HUGE[dtype]])))
    if draw(st.booleans()):  # ties: the rank and top-k rules decide
        x = np.round(x / 2).astype(dtype)
    big = float(finfo(dtype).max) / (8 * n_classes) if is_float(dtype) else None
    c.x = sprinkle(x, draw(specials(["-inf", "-inf", "inf", "nan", "max", "-0"])), big)
    c.x_layout = draw(st.sampled_from(LAYOUTS))
    t_dtype = draw(st.sampled_from(
        [d for d in INT_DTYPES if np.iinfo(d).max >= n_classes + 1
         and (error != "label_negative" or d.kind == "i")]))
    c.kw = {}
    ignore_index = draw(st.sampled_from([None, None, -1, 0, 255]))
    if ignore_index is not None:
        c.kw["ignore_index"] = ignore_index
    ii = -100 if ignore_index is None else ignore_index
    t = rng.integers(0, n_classes, bshape).astype(t_dtype)
    if n_targets and representable(ii, t_dtype):
        n_ignore = draw(st.sampled_from([0, 1, n_targets]))
        t.reshape(-1)[rng.choice(n_targets, size=n_ignore, replace=False)] = ii
    # the target's logit tied with others, now and then
    if n_targets and n_classes > 1 and draw(st.booleans()):
        rows = np.moveaxis(c.x, ax, -1).copy()
        flat_rows = rows.reshape(-1, n_classes)
        flat_t = t.reshape(-1)
        i = draw(st.integers(0, n_targets - 1))
        if 0 <= flat_t[i] < n_classes:
            flat_rows[i, :] = flat_rows[i, int(flat_t[i])]
        c.x = np.moveaxis(rows, -1, ax)
    c.target = t
    c.t_layout = draw(st.sampled_from(LAYOUTS))
    c.topk = draw(st.lists(st.integers(1, n_classes + 2), min_size=1, max_size=3).map(tuple)
                  | st.integers(1, 6))
    c.weight = ((0.25 + 2 * rng.random(n_classes)).astype(draw(st.sampled_from([F64, F32])))
                if draw(st.booleans()) else None)
    c.sample_weight = (2 * rng.random(bshape) if draw(st.booleans()) else None)
    c.w_layout = draw(st.sampled_from(LAYOUTS))
    c.kw["per_sample"] = draw(st.booleans())
    c.kw["chunk_rows"] = draw(st.sampled_from([None, None, 1, 1024, 2048]))
    c.kw["num_threads"] = draw(st.sampled_from([None, 1, 2]))

    c.bad = None
    e = error
    if e in LABEL_ERRORS:
        info = np.iinfo(t_dtype)
        candidates = ([n_classes, n_classes + 1, info.max] if e == "label_high"
                      else [-1, -2, info.min])
        value = draw(st.sampled_from([v for v in candidates if v != ii]))
        pos = draw(st.integers(0, n_targets - 1))
        c.target = c.target.copy()
        c.target.reshape(-1)[pos] = value
        c.bad = (value, tuple(int(i) for i in np.unravel_index(pos, bshape)))
    if e == "target_float":
        c.target = c.target.astype(np.float64)
    elif e == "target_shape":
        c.target = c.target[..., None]
    elif e == "topk_zero":
        c.topk = (1, 0)
    elif e == "topk_type":
        c.topk = draw(st.sampled_from([(1.5,), "5", (1, None)]))
    elif e == "chunk_rows_zero":
        c.kw["chunk_rows"] = draw(st.sampled_from([0, -1024]))
    elif e == "chunk_rows_type":
        c.kw["chunk_rows"] = draw(st.sampled_from([1.5, "1024", True]))
    elif e == "weight_shape":
        c.weight = np.ones(n_classes + 1)
    elif e == "sample_weight_shape":
        c.sample_weight = np.ones(bshape + (2,))
    elif e == "input_dtype":
        c.x = c.x.astype(np.complex128)
    elif e == "ignore_index":
        c.kw["ignore_index"] = 0.5
    return c


def evaluate_builder(case):
    def build():
        call = Call()
        x = call.put(case.x, case.x_layout)
        target = call.put(case.target, case.t_layout)
        kw = dict(case.kw, topk=case.topk)
        if case.weight is not None:
            kw["weight"] = call.put(case.weight, case.w_layout)
        if case.sample_weight is not None:
            kw["sample_weight"] = call.put(case.sample_weight, case.w_layout)
        return call, lambda backend: fastxent.evaluate(x, target, backend=backend, **kw)
    return build


def ref_evaluate(case):
    """Each metric with NumPy/SciPy in float64, as the docstring defines it.

    Per sample: loss w_y (lse - z_y) from PyTorch's log-softmax (0 where
    ignored), entropy -sum p log p (0 log 0 = 0), logsumexp as
    scipy.special's, argmax as np.argmax, rank the target's position in
    np.argsort(kind="stable")[::-1] (scikit-learn's order: value descending,
    NaN first, ties to the larger index; C where ignored). Metrics: means over
    the counted samples weighted by sample_weight (the loss by sample_weight
    * weight[y]); top-k as scikit-learn scores it (two classes: the first
    class wins ties, and any k >= 2 is a hit)."""
    x = np.asarray(case.x)
    comp = compute_of(x.dtype)
    ax = class_axis(x.shape)
    n_classes = x.shape[ax]
    bshape = batch_shape(x.shape)
    z = np.moveaxis(to64(x), ax, -1).reshape(-1, n_classes)
    y = case.target.reshape(-1).astype(np.int64)
    ii = case.kw.get("ignore_index", -100)
    kept = y != ii
    yk = np.where(kept, y, 0)
    r = np.arange(len(y))
    w = (np.ones(n_classes) if case.weight is None
         else to64(np.asarray(case.weight).astype(comp)))
    sw = np.ones(len(y)) if case.sample_weight is None else to64(case.sample_weight).ravel()
    rel, fac = ACC[comp]
    unit = 1.0 + max_abs_finite(z) + math.log(n_classes)
    with np.errstate(all="ignore"):
        m = np.max(z, axis=1, keepdims=True)
        d = z - m
        s = np.sum(np.exp(d), axis=1, keepdims=True)
        logp = d - np.log(s)
        p = np.exp(logp)
        lse = (special.logsumexp(z, axis=1) if len(y) else np.zeros(0))
        loss = np.where(kept, -w[yk] * logp[r, yk], 0.0)
        entropy = -np.sum(np.where(p == 0, 0.0, p * logp), axis=1)
        argmax = np.argmax(z, axis=1) if len(y) else np.zeros(0, np.int64)
        order = np.argsort(z, axis=1, kind="stable")[:, ::-1]
        rank = np.where(kept, np.argmax(order == yk[:, None], axis=1), n_classes)
        correct = (argmax == y) & kept
        weights = np.where(kept, sw, 0.0)
        total = np.sum(weights)
        wy = weights * w[yk]
        topk = (case.topk,) if isinstance(case.topk, int) else case.topk
        topk = tuple(dict.fromkeys(topk))
        hits = {k: (correct if k == 1 else kept) if n_classes == 2 else (rank < k) & kept
                for k in topk}
        metrics = {
            "loss": np.sum(weights * loss) / np.sum(wy),
            "accuracy": np.sum(weights * correct) / total,
            "top_k_accuracy": {k: np.sum(weights * h) / total for k, h in hits.items()},
            "entropy": np.sum(np.where(kept, weights * entropy, 0.0)) / total,
            "logsumexp": np.sum(np.where(kept, weights * lse, 0.0)) / total,
            "n_samples": int(np.count_nonzero(kept)),
        }
        big_w = max_abs_finite(w)
        tols = {
            "loss": (fac * np.sum(np.abs(wy)) * unit + rel * np.sum(np.abs(weights * loss)))
            / abs(np.sum(wy)),
            "entropy": (fac * unit * (2 + math.log(n_classes)) * total
                        + rel * np.sum(np.abs(np.where(kept, weights * entropy, 0)))) / total,
            "logsumexp": (fac * unit * total
                          + rel * np.sum(np.abs(np.where(kept, weights * lse, 0)))) / total,
        }
        per_sample = {
            "loss": (loss.reshape(bshape),
                     (fac * big_w * unit + rel * np.abs(loss)).reshape(bshape)),
            "entropy": (entropy.reshape(bshape),
                        (fac * unit * (2 + math.log(n_classes)) + rel * np.abs(entropy))
                        .reshape(bshape)),
            "logsumexp": (lse.reshape(bshape), (fac * unit + rel * np.abs(lse)).reshape(bshape)),
            "argmax": argmax.reshape(bshape), "rank": rank.reshape(bshape),
            "correct": correct.reshape(bshape),
        }
    return metrics, tols, per_sample


@pytest.mark.parametrize("error", sorted(EVALUATE_ERRORS))
@fuzz(6)
@given(data=st.data())
def test_evaluate_raises_documented_error(error, data):
    case = freeze(data.draw(evaluate_cases(error), label="case"))
    _, errors = on_every_backend(evaluate_builder(case), EVALUATE_ERRORS[error])
    check_error_message(case, errors)


@fuzz(120)
@given(case=evaluate_cases())
def test_evaluate_matches_numpy_metrics(case):
    freeze(case)
    results, _ = on_every_backend(evaluate_builder(case), None)
    metrics, tols, per_sample = ref_evaluate(case)
    for backend, (_, result) in results.items():
        what = f"{backend}: evaluate"
        expected_keys = set(metrics) | ({"per_sample"} if case.kw["per_sample"] else set())
        assert set(result) == expected_keys, (what, set(result))
        assert result["n_samples"] == metrics["n_samples"], what
        for name in ("loss", "entropy", "logsumexp"):
            assert isinstance(result[name], float), (what, name, type(result[name]))
            assert_close(result[name], metrics[name], tols[name], F64, f"{what} {name}")
        # accuracies are ratios of exactly summed weights: no computing error
        assert_close(result["accuracy"], metrics["accuracy"], 1e-12 * abs(metrics["accuracy"]),
                     F64, f"{what} accuracy")
        assert list(result["top_k_accuracy"]) == list(metrics["top_k_accuracy"]), what
        for k, value in metrics["top_k_accuracy"].items():
            assert_close(result["top_k_accuracy"][k], value, 1e-12 * abs(value), F64,
                         f"{what} top-{k} accuracy")
        if case.kw["per_sample"]:
            ps = result["per_sample"]
            for name in ("loss", "entropy", "logsumexp"):
                ref, tol = per_sample[name]
                assert ps[name].dtype == F64, (what, name, ps[name].dtype)
                assert_close(ps[name], ref, tol, F64, f"{what} per-sample {name}")
            for name in ("argmax", "rank", "correct"):
                assert ps[name].shape == per_sample[name].shape, (what, name)
                np.testing.assert_array_equal(ps[name], per_sample[name],
                                              err_msg=f"{what} per-sample {name}")


@fuzz(40)
@given(case=evaluate_cases(), counted=st.sampled_from(["as drawn", "nothing: all ignored"]))
def test_evaluate_nan_and_inf_propagate_whatever_the_errstate(case, counted):
    # As for cross_entropy: inf logits (in rows that count or not) and a batch
    # with nothing to count give inf or NaN metrics, not FloatingPointError.
    if counted != "as drawn":
        case.target = np.zeros_like(case.target)
        case.kw["ignore_index"] = 0
        if case.x.size and is_float(case.x.dtype):
            case.x = case.x.copy()
            case.x.reshape(-1)[0] = np.inf
    note(f"the call: {case!r}")
    freeze(case)
    for backend in CPU_BACKENDS:
        _, fn = evaluate_builder(case)()
        expected = fn(backend)
        _, fn = evaluate_builder(case)()
        with np.errstate(invalid="raise", divide="raise"):
            got = fn(backend)
        for name in ("loss", "accuracy", "entropy", "logsumexp"):
            assert_same_bits(got[name], expected[name], f"{backend} {name}")


# --------------------------------------------------------------------------
# CUDA device arrays (a GPU, or NUMBA_ENABLE_CUDASIM=1): the same properties,
# few draws, small shapes. On the device the class axis is the last one and
# arrays are C-contiguous.
# --------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not CUDA.available,
                                reason=f"the CUDA backend cannot run here: {CUDA.detail}")
CUDA_FLOATS = (F32, F64, F16)


def simulated():
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def cuda_fuzz(max_examples):
    """The simulator runs every GPU thread in Python, seconds a draw: few draws,
    and failures are shown as drawn (not shrunk)."""
    return fuzz(max_examples, phases=(Phase.explicit, Phase.reuse, Phase.generate))


def cuda_specials():
    # The simulator evaluates kernels with Python's math module, which raises
    # (log(0), exp(1e38)) where a GPU returns -inf or inf: there, no huge values.
    names = ["-inf", "inf", "nan"] if CUDA.available and simulated() else \
        ["-inf", "inf", "nan", "max", "-max"]
    return specials(names, max_size=2)


def on_device(a):
    from numba import cuda
    return cuda.to_device(np.array(a, order="C"))  # (0-d stays 0-d)


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


class DeviceCall:
    """Device copies of the arguments; ``run`` checks the outcome and that no
    device argument but ``out`` (on success) was written."""

    def __init__(self):
        self.arrays = []
        self.out = None

    def put(self, values):
        d = on_device(values)
        self.arrays.append(d)
        return d

    def run(self, fn, expect):
        snaps = [host(a).tobytes() for a in self.arrays]
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - checked below
            if expect is None:
                raise
            assert isinstance(exc, expect), f"expected {expect.__name__}, got {exc!r}"
            result, written = None, []
        else:
            assert expect is None, f"expected {expect.__name__}, got a result"
            written = [self.out]
        for a, snap in zip(self.arrays, snaps):
            if not any(a is w for w in written):
                assert host(a).tobytes() == snap, "a device argument was modified"
        return result


@st.composite
def cuda_shapes(draw):
    c = draw(st.integers(1, 8) | st.sampled_from([33, 70]))
    return draw(st.sampled_from([(c,), (draw(st.integers(0, 4)), c)]))


CUDA_XENT_ERRORS = {"label_high": IndexError, "label_negative": IndexError,
                    "weight_shape": ValueError, "target_shape": ValueError,
                    "reduction": ValueError, "out_shape": ValueError}


@st.composite
def cuda_xent_cases(draw):
    c = types.SimpleNamespace(error=None, bad=None, kw={})
    shape = draw(cuda_shapes())
    n_classes, bshape = shape[-1], shape[:-1]
    n_targets = math.prod(bshape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(CUDA_FLOATS))
    big = float(finfo(dtype).max) / (8 * n_classes)
    c.x = sprinkle(float_values(rng, shape, dtype, draw(st.sampled_from([1.0, 10.0]))),
                   draw(cuda_specials()), big)
    c.probs = draw(st.booleans())
    if c.probs:
        c.target = rng.random(shape).astype(dtype)
    else:
        c.target = rng.integers(0, n_classes, bshape).astype(
            draw(st.sampled_from([np.int64, np.int32, np.int16])))
        if n_targets and draw(st.booleans()):
            c.target.reshape(-1)[0] = -100
    c.weight = (0.25 + 2 * rng.random(n_classes)).astype(dtype) if draw(st.booleans()) else None
    c.sample_weight = 2 * rng.random(bshape) if draw(st.booleans()) else None
    c.on_device = draw(st.booleans())  # weights on the device, or host arrays
    c.kw["reduction"] = draw(st.sampled_from(["mean", "sum", "none"]))
    for name, values in (("label_smoothing", [0.0, 0.2]), ("z_loss", [0.0, 0.01]),
                         ("softcap", [None, 3.0])):
        value = draw(st.sampled_from(values))
        if value:
            c.kw[name] = value
    c.return_grad = draw(st.booleans())
    c.grad_output = None
    c.out = draw(st.sampled_from([None, "new", "input"])) if c.return_grad else None
    if c.return_grad and c.kw["reduction"] == "none" and draw(st.booleans()):
        c.grad_output = rng.standard_normal(bshape)
    if draw(st.integers(0, 3)) == 0:
        errors = [e for e in sorted(CUDA_XENT_ERRORS)
                  if not (e.startswith("label") and (c.probs or not n_targets))]
        c.error = e = draw(st.sampled_from(errors))
        if e.startswith("label"):
            value = n_classes + 1 if e == "label_high" else -3
            c.target = c.target.copy()
            c.target.reshape(-1)[-1] = value
            c.bad = (value, tuple(int(i) for i in np.unravel_index(n_targets - 1, bshape)))
        elif e == "weight_shape":
            c.weight = np.ones(n_classes + 1, dtype)
        elif e == "target_shape":
            c.target = c.target[..., None]
        elif e == "reduction":
            c.kw["reduction"] = "avg"
        elif e == "out_shape":
            c.return_grad, c.out = True, e
    return c


@needs_cuda
@cuda_fuzz(12)
@given(case=cuda_xent_cases())
def test_cuda_cross_entropy_matches_reference_or_raises(case):
    freeze(case)
    call = DeviceCall()
    x = call.put(case.x)
    target = call.put(case.target)
    kw = dict(case.kw)
    weight = None
    if case.weight is not None:
        weight = call.put(case.weight) if case.on_device else case.weight
    if case.sample_weight is not None:
        kw["sample_weight"] = (call.put(case.sample_weight) if case.on_device
                               else case.sample_weight)
    if case.return_grad:
        kw["return_grad"] = True
    if case.grad_output is not None:
        kw["grad_output"] = call.put(case.grad_output)
    if case.out == "input":
        kw["out"] = call.out = x
    elif case.out is not None:
        shape = case.x.shape + ((1,) if case.out == "out_shape" else ())
        kw["out"] = call.out = call.put(np.full(shape, 7.0, case.x.dtype))
    result = call.run(lambda: fastxent.cross_entropy(x, target, weight, **kw),
                      CUDA_XENT_ERRORS.get(case.error))
    if case.error is not None:
        return
    loss, grad = result if case.return_grad else (result, None)
    comp = compute_of(case.x.dtype)
    ref_loss, ref_grad, loss_tol, grad_tol, degenerate = ref_cross_entropy(
        case.x, case.target, case.weight, sample_weight=case.sample_weight,
        grad_output=case.grad_output, **case.kw)
    assert hasattr(loss, "copy_to_host"), "the loss stays on the device"
    assert_close(host(loss), ref_loss, loss_tol, comp, "cuda: cross_entropy loss")
    if case.return_grad:
        assert hasattr(grad, "copy_to_host") and grad.shape == case.x.shape
        if call.out is not None:
            assert grad is call.out, "cuda: the gradient is not out="
        if not degenerate:
            assert_close(host(grad), ref_grad, grad_tol, case.x.dtype, "cuda: grad")


@needs_cuda
@pytest.mark.parametrize("op", ["log_softmax", "softmax", "logsumexp"])
@cuda_fuzz(5)
@given(data=st.data())
def test_cuda_transforms_match_reference(op, data):
    shape = data.draw(cuda_shapes(), label="shape")
    dtype = data.draw(st.sampled_from(CUDA_FLOATS), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = sprinkle(float_values(rng, shape, dtype, 10.0), data.draw(cuda_specials(), "specials"))
    x.flags.writeable = False
    out = data.draw(st.sampled_from([None, "new", "input"]) if op != "logsumexp"
                    else st.none(), label="out")
    call = DeviceCall()
    dx = call.put(x)
    kw = {}
    if out == "input":
        kw["out"] = call.out = dx
    elif out == "new":
        kw["out"] = call.out = call.put(np.full(shape, 7.0, dtype))
    result = call.run(lambda: getattr(fastxent, op)(dx, **kw), None)
    ref, tol = ref_transform(op, x, len(shape) - 1)
    if call.out is not None:
        assert result is call.out, "the result is not out="
    assert_close(host(result), ref, tol, dtype, f"cuda: {op}")


@st.composite
def cuda_binary_cases(draw, logits):
    shape = draw(st.lists(st.integers(0, 4), max_size=2).map(tuple))
    dtype = draw(st.sampled_from(CUDA_FLOATS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if logits:
        x = sprinkle(float_values(rng, shape, dtype, 5.0), draw(cuda_specials()))
        t = (0.5 + rng.standard_normal(shape)).astype(dtype)
    else:  # (exact 0 and 1 only on a GPU: the simulator's math.log(0) raises)
        low = 0.0 if not simulated() else 1e-3
        x = np.asarray(np.clip(rng.random(shape), low, 1 - low)).astype(dtype)
        t = rng.random(shape).astype(dtype)
    c = types.SimpleNamespace(
        logits=logits, x=x, target=t, weight=None, pos_weight=None, grad_output=None,
        kw={"reduction": draw(st.sampled_from(["mean", "sum", "none"]))},
        return_grad=draw(st.booleans()), out=None, error=None, bad=None)
    if draw(st.booleans()):
        c.weight = (2 * rng.random(draw(st.sampled_from([shape, shape[-1:]])))).astype(dtype)
    if logits and draw(st.booleans()):
        c.pos_weight = (2 * rng.random(shape[-1:])).astype(dtype)
    if c.return_grad:
        c.out = draw(st.sampled_from([None, "new", "input"]))
        if c.kw["reduction"] == "none" and draw(st.booleans()):
            c.grad_output = rng.standard_normal(shape)
    if not logits and x.size and draw(st.integers(0, 3)) == 0:
        c.error = draw(st.sampled_from(["input_range", "target_range"]))
        arr = (c.x if c.error == "input_range" else c.target).copy()
        arr.reshape(-1)[-1] = 1.5
        c.x, c.target = (arr, c.target) if c.error == "input_range" else (c.x, arr)
        c.bad = (None, tuple(int(i) for i in np.unravel_index(x.size - 1, shape)))
    return c


@needs_cuda
@pytest.mark.parametrize("logits", [False, True], ids=["probabilities", "logits"])
@cuda_fuzz(6)
@given(data=st.data())
def test_cuda_binary_losses_match_reference_or_raise(logits, data):
    case = freeze(data.draw(cuda_binary_cases(logits), label="case"))
    call = DeviceCall()
    x = call.put(case.x)
    target = call.put(case.target)
    kw = dict(case.kw)
    if case.weight is not None:
        kw["weight"] = case.weight  # a host array
    if case.pos_weight is not None:
        kw["pos_weight"] = call.put(case.pos_weight)
    if case.return_grad:
        kw["return_grad"] = True
    if case.grad_output is not None:
        kw["grad_output"] = call.put(case.grad_output)
    if case.out == "input":
        kw["out"] = call.out = x
    elif case.out == "new":
        kw["out"] = call.out = call.put(np.full(case.x.shape, 7.0, case.x.dtype))
    fn = (fastxent.binary_cross_entropy_with_logits if logits
          else fastxent.binary_cross_entropy)
    result = call.run(lambda: fn(x, target, **kw), ValueError if case.error else None)
    if case.error is not None:
        return
    loss, grad = result if case.return_grad else (result, None)
    ref_loss, ref_grad, loss_tol, grad_tol = ref_binary(case)
    assert_close(host(loss), ref_loss, loss_tol, compute_of(case.x.dtype), "cuda: loss")
    if case.return_grad:
        if call.out is not None:
            assert grad is call.out, "the gradient is not out="
        assert_close(host(grad), ref_grad, grad_tol, case.x.dtype, "cuda: grad")


@needs_cuda
@cuda_fuzz(8)
@given(data=st.data())
def test_cuda_evaluate_matches_numpy_metrics_or_raises(data):
    shape = data.draw(cuda_shapes().filter(lambda s: len(s) == 2), label="shape")
    n_classes = shape[1]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    dtype = data.draw(st.sampled_from([F32, F64]), label="dtype")
    x = np.round(float_values(rng, shape, dtype, 4.0) / 2)  # ties
    x = sprinkle(x, data.draw(cuda_specials(), label="specials"))
    y = rng.integers(0, n_classes, shape[:1])
    if shape[0] and data.draw(st.booleans(), label="an ignored row"):
        y[0] = -100
    bad = shape[0] > 0 and data.draw(st.integers(0, 4), label="a bad label") == 0
    if bad:
        y[-1] = n_classes
    case = freeze(types.SimpleNamespace(
        x=x, target=y, topk=data.draw(st.sampled_from([(1, 2), 3, (1, 5)]), label="topk"),
        weight=(0.5 + rng.random(n_classes)) if data.draw(st.booleans(), label="w") else None,
        sample_weight=rng.random(shape[:1]) if data.draw(st.booleans(), label="sw") else None,
        kw={"per_sample": True}))
    call = DeviceCall()
    dx, dy = call.put(x), call.put(y)
    result = call.run(lambda: fastxent.evaluate(
        dx, dy, topk=case.topk, weight=case.weight, sample_weight=case.sample_weight,
        per_sample=True), IndexError if bad else None)
    if bad:
        return
    metrics, tols, per_sample = ref_evaluate(case)
    assert result["n_samples"] == metrics["n_samples"]
    for name in ("loss", "entropy", "logsumexp"):
        assert_close(result[name], metrics[name], tols[name], F64, f"cuda: evaluate {name}")
    assert_close(result["accuracy"], metrics["accuracy"], 1e-12 * abs(metrics["accuracy"]),
                 F64, "cuda: accuracy")
    for k, value in metrics["top_k_accuracy"].items():
        assert_close(result["top_k_accuracy"][k], value, 1e-12 * abs(value), F64,
                     f"cuda: top-{k} accuracy")
    for name in ("argmax", "rank", "correct"):
        np.testing.assert_array_equal(result["per_sample"][name], per_sample[name],
                                      err_msg=f"cuda: per-sample {name}")
