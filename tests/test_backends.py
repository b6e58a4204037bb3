"""One matrix over backend x dtype x shape x num_threads (x layout, x feature).

Every result is checked against two independent oracles: the float64
``oracle_xent`` (scipy-based, conftest) with the accuracy bar of API.md, and
PyTorch's autograd in the same dtype.
"""

import concurrent.futures
import threading

import numpy as np
import pytest

import fastxent
from fastxent import _threads

from conftest import (FLOATS, TOL, assert_accurate, assert_same_nonfinite,
                      assert_unchanged, batch_shape, check_xent, class_axis, logit_scale,
                      make_logits, make_probs, make_problem, make_targets, make_weight,
                      oracle_xent, snapshot, torch_xent)

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")

THREADS = [1, 2]
SHAPES = [(1, 1), (7, 3), (0, 5), (5, 1), (257, 1000), (3, 128256), (4096, 2),
          (6, 4, 3, 2), (11,)]
REDUCTIONS = ("mean", "sum", "none")


def _bitwise_equal(a, b):
    """Same dtype, shape and bits (byte order aside: a big-endian input keeps its dtype)."""
    a, b = np.asarray(a), np.asarray(b)
    a = a.astype(a.dtype.newbyteorder("="))
    b = b.astype(b.dtype.newbyteorder("="))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------
# The main matrix: contiguous inputs, every shape.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_matrix_index_targets(backend, dtype, shape, num_threads, rng):
    x, t = make_problem(rng, shape, dtype)
    check_xent(x, t, backend=backend, num_threads=num_threads)


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_matrix_prob_targets(backend, dtype, shape, num_threads, rng):
    x, p = make_problem(rng, shape, dtype, targets="probs")
    check_xent(x, p, backend=backend, num_threads=num_threads)


@pytest.mark.parametrize("targets", ["index", "probs"])
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_class_counts_around_vector_widths(backend, dtype, targets, rng):
    # SIMD kernels have main loops and remainders: every C up to 4 AVX-512
    # registers of float32, and around a few powers of two.
    for c in list(range(1, 66)) + [127, 128, 129, 255, 256, 257]:
        x, t = make_problem(rng, (3, c), dtype, targets=targets, n_ignore=1)
        w = make_weight(rng, c, dtype)
        check_xent(x, t, w, backend=backend, num_threads=2, label_smoothing=0.1,
                   reductions=("none",))


@pytest.mark.parametrize("targets", ["index", "probs"])
def test_rows_longer_than_256_blocks(backend, targets, rng):
    # Rows over 256 * 1024 classes are swept in longer blocks (the per-row
    # block maxima live in a fixed array); the largest one must still be found.
    x, t = make_problem(rng, (2, 262144 + 1500), np.float32, targets=targets)
    x[0, -7] = 40.0
    check_xent(x, t, backend=backend, num_threads=2, label_smoothing=0.05,
               reductions=("sum",))


@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("n_classes", [1, 2, 3, 7, 8, 9, 10, 16, 17, 32, 33])
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_short_rows_many_tiles(backend, dtype, n_classes, num_threads, rng):
    # Short rows run in tiles of 16 rows vectorised across rows: several tiles
    # per thread, a partial last tile, ignored rows, every class-index option.
    x, t = make_problem(rng, (53, n_classes), dtype, n_ignore=7)
    w = make_weight(rng, n_classes, dtype)
    check_xent(x, t, w, backend=backend, num_threads=num_threads, label_smoothing=0.1)
    # Strided labels and per-row upstream gradients.
    go = rng.random(2 * 53)[::2]
    check_xent(x, np.repeat(t, 2)[::2], backend=backend, num_threads=num_threads,
               reductions=("none",), grad_output={"none": go})


@pytest.mark.parametrize("n_classes", [3, 10, 17])
def test_tiles_write_only_their_rows(backend, n_classes, rng):
    # Tiles are transposed back through a buffer whose blocks overhang the
    # tile: the gradient must land in out= and nowhere around it.
    x, t = make_problem(rng, (37, n_classes), np.float32)
    pad = 11
    flat = np.full(x.size + 2 * pad, 7.0, np.float32)
    out = flat[pad:-pad].reshape(x.shape)
    loss, grad = fastxent.cross_entropy(x, t, return_grad=True, out=out, backend=backend,
                                        num_threads=2)
    assert grad is out
    np.testing.assert_array_equal(flat[:pad], 7.0)
    np.testing.assert_array_equal(flat[-pad:], 7.0)
    _, expected = fastxent.cross_entropy(x, t, return_grad=True, backend="numpy")
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------
# Memory layouts: the same values, laid out differently, give the same bits.
# --------------------------------------------------------------------------

def _lay_out(a, kind):
    """A view with the values of ``a`` in layout ``kind``."""
    a = np.asarray(a)
    if kind == "C":
        return a.copy()
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "strided_cols":      # last axis not contiguous
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if kind == "padded_rows":       # rows contiguous, row stride larger than a row
        big = np.zeros(a.shape[:-1] + (a.shape[-1] + 3,), a.dtype)
        big[..., 1:-2] = a
        return big[..., 1:-2]
    if kind == "strided_rows":
        big = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    if kind == "negative_rows":     # contiguous rows, negative row stride
        return np.flip(np.flip(a, 0).copy(), 0)
    if kind == "negative_all":
        return np.flip(np.flip(a).copy())
    if kind == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if kind == "big_endian":
        return a.astype(a.dtype.newbyteorder(">"))
    raise ValueError(kind)


LAYOUTS = ["F", "strided_cols", "padded_rows", "strided_rows", "negative_rows", "negative_all",
           "readonly", "big_endian"]


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("targets", ["index", "probs"])
@pytest.mark.parametrize("shape", [(13, 7), (4, 5, 3)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_layouts(backend, dtype, shape, targets, layout, num_threads, rng):
    x, t = make_problem(rng, shape, dtype, targets=targets, n_ignore=2)
    w = make_weight(rng, shape[1], dtype)
    kw = dict(label_smoothing=0.1, backend=backend, num_threads=num_threads)
    expected = {r: fastxent.cross_entropy(x, t, w, reduction=r, return_grad=True, **kw)
                for r in REDUCTIONS}
    xl, tl, wl = _lay_out(x, layout), _lay_out(t, layout), _lay_out(w, layout)
    assert np.array_equal(xl, x) and np.array_equal(tl, t) and np.array_equal(wl, w)
    snaps = snapshot(xl, tl, wl)
    results = check_xent(xl, tl, wl, **kw)
    assert_unchanged((xl, tl, wl), snaps)
    for r in REDUCTIONS:
        # A layout is no reason for a different rounding.
        assert _bitwise_equal(results[r][0], expected[r][0]), (r, "loss")
        assert _bitwise_equal(results[r][1], expected[r][1]), (r, "grad")


@pytest.mark.parametrize("layout", ["strided_cols", "negative_rows", "readonly"])
def test_layout_of_grad_output(backend, layout, rng):
    x, t = make_problem(rng, (10, 4), np.float64)
    go = rng.standard_normal(10)
    gol = _lay_out(go, layout)
    snaps = snapshot(gol)
    loss, grad = fastxent.cross_entropy(x, t, reduction="none", return_grad=True,
                                        grad_output=gol, backend=backend)
    assert_unchanged((gol,), snaps)
    _, ref_grad, _ = oracle_xent(x, t, reduction="none", grad_output=go)
    np.testing.assert_allclose(grad, ref_grad, **TOL[np.float64])


def test_torch_tensor_inputs(backend, rng):
    # API.md: CPU tensors are taken through DLPack / __array__.
    x, t = make_problem(rng, (6, 4), np.float32)
    loss, grad = fastxent.cross_entropy(torch.from_numpy(x), torch.from_numpy(t),
                                        return_grad=True, backend=backend)
    t_loss, t_grad = torch_xent(x, t)
    np.testing.assert_allclose(loss, t_loss, **TOL[np.float32])
    np.testing.assert_allclose(grad, t_grad, **TOL[np.float32])
    loss_list = fastxent.cross_entropy(x.tolist(), t.tolist(), backend=backend)
    np.testing.assert_allclose(loss_list, oracle_xent(x, t)[0], **TOL[np.float64])


# --------------------------------------------------------------------------
# Features: weight, ignore_index, label_smoothing, probabilities, grad_output.
# --------------------------------------------------------------------------

CASES = {
    "weight": dict(weight=True),
    "ignore": dict(n_ignore=3),
    "ignore_in_range": dict(n_ignore=3, ignore_index=1),   # a real class is ignored
    "smooth": dict(label_smoothing=0.1),
    "smooth_one": dict(label_smoothing=1.0),
    "weight_ignore_smooth": dict(weight=True, n_ignore=3, label_smoothing=0.2),
    "weight_ignore0_smooth": dict(weight=True, n_ignore=2, ignore_index=0, label_smoothing=0.2),
    "probs": dict(targets="probs"),
    "probs_weight_smooth": dict(targets="probs", weight=True, label_smoothing=0.3),
}


def _grad_outputs(kind, rng, bshape):
    if kind is None:
        return None
    if kind == "scalar":
        return {"mean": -2.5, "sum": 0.75, "none": 1.5}
    return {"mean": np.float32(3.0), "sum": np.array(-0.5), "none": rng.standard_normal(bshape)}


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("grad_output", [None, "scalar", "array"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("shape", [(9, 5), (4, 5, 3), (5,)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_features(backend, dtype, shape, case, grad_output, num_threads, rng):
    spec = dict(CASES[case])
    ignore_index = spec.pop("ignore_index", -100)
    x, t = make_problem(rng, shape, dtype, targets=spec.pop("targets", "index"),
                        n_ignore=spec.pop("n_ignore", 0), ignore_index=ignore_index)
    w = make_weight(rng, shape[class_axis(shape)], dtype) if spec.pop("weight", False) else None
    go = _grad_outputs(grad_output, rng, batch_shape(shape))
    check_xent(x, t, w, backend=backend, num_threads=num_threads, ignore_index=ignore_index,
               grad_output=go, **spec)


def test_one_hot_probabilities_equal_class_indices(backend, rng):
    # Two code paths, one answer (mean of probabilities divides by N, so no weight here).
    x, t = make_problem(rng, (20, 6), np.float64)
    onehot = np.eye(6)[t]
    for r in REDUCTIONS:
        a = fastxent.cross_entropy(x, t, reduction=r, return_grad=True, backend=backend)
        b = fastxent.cross_entropy(x, onehot, reduction=r, return_grad=True, backend=backend)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-14)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-16)


def test_weighted_mean_divides_by_summed_target_weight(backend):
    # Worked by hand: row losses log 2, log 4/3, log 4 with target weights 1, 3, 3.
    x = np.log([[1.0, 1.0], [1.0, 3.0], [3.0, 1.0]])
    t = np.array([0, 1, 1])
    w = np.array([1.0, 3.0])
    expected = (np.log(2) + 3 * np.log(4 / 3) + 3 * np.log(4)) / 7
    assert fastxent.cross_entropy(x, t, w, backend=backend) == pytest.approx(expected, rel=1e-14)
    t[0] = -100  # ignored: out of the numerator and the denominator
    expected = (3 * np.log(4 / 3) + 3 * np.log(4)) / 6
    assert fastxent.cross_entropy(x, t, w, backend=backend) == pytest.approx(expected, rel=1e-14)


# --------------------------------------------------------------------------
# out= and in place.
# --------------------------------------------------------------------------

def _out_like(x, kind):
    if kind == "C":
        return np.empty_like(x, order="C")
    if kind == "F":
        return np.empty_like(x, order="F")
    if kind == "strided":
        return np.empty(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)[..., ::2]
    raise ValueError(kind)


@pytest.mark.parametrize("out_kind", ["C", "F", "strided"])
@pytest.mark.parametrize("shape", [(9, 5), (4, 5, 3), (6,)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS + (np.float16,), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("targets", ["index", "probs"])
def test_out(backend, dtype, shape, out_kind, targets, rng):
    x, t = make_problem(rng, shape, dtype, targets=targets, n_ignore=1)
    for r in REDUCTIONS:
        loss, grad = fastxent.cross_entropy(x, t, reduction=r, return_grad=True, backend=backend)
        out = _out_like(x, out_kind)
        loss2, res = fastxent.cross_entropy(x, t, reduction=r, return_grad=True, out=out,
                                            backend=backend)
        assert res is out or np.shares_memory(res, out)
        assert _bitwise_equal(res, grad) and _bitwise_equal(loss2, loss)


@pytest.mark.parametrize("layout", ["C", "F", "padded_rows", "negative_rows"])
@pytest.mark.parametrize("shape", [(9, 5), (4, 5, 3), (6,), (3, 128256)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS + (np.float16,), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("num_threads", THREADS)
def test_in_place(backend, dtype, shape, layout, num_threads, rng):
    x, t = make_problem(rng, shape, dtype, n_ignore=1)
    w = make_weight(rng, shape[class_axis(shape)], dtype)
    kw = dict(label_smoothing=0.05, backend=backend, num_threads=num_threads)
    for r in REDUCTIONS:
        loss, grad = fastxent.cross_entropy(x, t, w, reduction=r, return_grad=True, **kw)
        xi = _lay_out(x, layout)
        loss2, res = fastxent.cross_entropy(xi, t, w, reduction=r, return_grad=True, out=xi, **kw)
        assert np.shares_memory(res, xi)
        assert _bitwise_equal(res, grad), r
        assert _bitwise_equal(xi, grad), r
        assert _bitwise_equal(loss2, loss), r


def _overlap_case(name, rng):
    """(expected_call, overlapping_call) for out= overlapping another argument.

    Each call returns (loss, grad-as-written); the results must be equal.
    """
    n = c = 8
    x, t = make_problem(rng, (n, c), np.float64)
    if name == "out_is_reversed_input":   # overlapping, not element for element
        def overlapping(kw):
            xx = x.copy()
            loss, _ = fastxent.cross_entropy(xx, t, out=xx[::-1], **kw)
            return loss, xx[::-1]
        return (lambda kw: fastxent.cross_entropy(x, t, **kw)), overlapping
    if name == "probs_are_input":         # target, input and out: one array
        p = make_probs(rng, (n, c))

        def overlapping(kw):
            pp = p.copy()
            return fastxent.cross_entropy(pp, pp, out=pp, **kw)
        return (lambda kw: fastxent.cross_entropy(p, p.copy(), **kw)), overlapping
    if name == "weight_in_out":           # weight is a row of out
        w = make_weight(rng, c)

        def overlapping(kw):
            out = np.empty((n, c))
            out[0] = w
            return fastxent.cross_entropy(x, t, out[0], out=out, **kw)
        return (lambda kw: fastxent.cross_entropy(x, t, w, **kw)), overlapping
    if name in ("grad_output_row_of_out", "grad_output_column_of_out"):
        go = rng.standard_normal(n)       # grad_output (reduction none) lies in out

        def overlapping(kw):
            out = np.empty((n, c))
            view = out[0] if name == "grad_output_row_of_out" else out[:, -1]
            view[:] = go
            return fastxent.cross_entropy(x, t, out=out, grad_output=view,
                                          reduction="none", **kw)
        return (lambda kw: fastxent.cross_entropy(x, t, grad_output=go, reduction="none",
                                                  **kw)), overlapping
    raise ValueError(name)


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("case", ["out_is_reversed_input", "probs_are_input", "weight_in_out",
                                  "grad_output_row_of_out", "grad_output_column_of_out"])
def test_out_overlapping_other_arguments(backend, case, num_threads, rng):
    # The result must be what non-overlapping arguments give: NumPy's
    # whole-array expressions hide an overlap, a row-by-row kernel does not.
    expected_call, overlapping_call = _overlap_case(case, rng)
    kw = dict(backend=backend, num_threads=num_threads, return_grad=True)
    e_loss, e_grad = expected_call(kw)
    loss, grad = overlapping_call(kw)
    np.testing.assert_array_equal(loss, e_loss)
    np.testing.assert_array_equal(grad, e_grad)


# --------------------------------------------------------------------------
# dtypes.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("targets", ["index", "probs"])
@pytest.mark.parametrize("shape", [(9, 5), (4, 5, 3), (3, 128256)], ids=str)
def test_float16_input(backend, shape, targets, rng):
    x, t = make_problem(rng, shape, np.float16, targets=targets)
    w = make_weight(rng, shape[1], np.float16)
    res = check_xent(x, t, w, backend=backend, label_smoothing=0.1)
    # Computed in float32: the same as float32 input holding the same values.
    for r, (loss, grad) in res.items():
        t32 = t.astype(np.float32) if targets == "probs" else t
        loss32, grad32 = fastxent.cross_entropy(x.astype(np.float32), t32, w.astype(np.float32),
                                                reduction=r, return_grad=True,
                                                label_smoothing=0.1, backend=backend)
        assert _bitwise_equal(loss, loss32)
        assert _bitwise_equal(grad, grad32.astype(np.float16))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.bool_],
                         ids=lambda d: np.dtype(d).name)
def test_integer_input_is_float64(backend, dtype, rng):
    x = rng.integers(-5, 6, size=(7, 4)).astype(dtype)
    t = make_targets(rng, (7, 4))
    res = check_xent(x, t, backend=backend)
    for r, (loss, grad) in res.items():
        assert np.asarray(loss).dtype == np.float64 and grad.dtype == np.float64
        loss64, grad64 = fastxent.cross_entropy(x.astype(np.float64), t, reduction=r,
                                                return_grad=True, backend=backend)
        assert _bitwise_equal(loss, loss64) and _bitwise_equal(grad, grad64)


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("tdtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("num_threads", THREADS)
def test_target_integer_dtypes(backend, tdtype, num_threads, rng):
    x = make_logits(rng, (4, 7, 3), np.float32)
    t = make_targets(rng, x.shape)
    signed = np.dtype(tdtype).kind == "i"
    # -100 does not fit an unsigned dtype: ignore a real class there instead.
    ignore_index = -100 if signed else 6
    t.reshape(-1)[[1, 5]] = ignore_index
    tt = t.astype(tdtype)
    assert np.array_equal(tt.astype(np.int64), t)
    res = check_xent(x, tt, backend=backend, num_threads=num_threads, ignore_index=ignore_index,
                     label_smoothing=0.1)
    for r, (loss, grad) in res.items():
        loss64, grad64 = fastxent.cross_entropy(x, t, reduction=r, return_grad=True,
                                                ignore_index=ignore_index, label_smoothing=0.1,
                                                backend=backend, num_threads=num_threads)
        assert _bitwise_equal(loss, loss64) and _bitwise_equal(grad, grad64), r


# --------------------------------------------------------------------------
# Special values.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_masked_classes_neg_inf(backend, dtype, num_threads, with_weight, rng):
    # -inf logits mask classes: the loss stays finite and their gradient is exactly 0.
    x, t = make_problem(rng, (50, 9), dtype)
    mask = rng.random(x.shape) < 0.4
    mask[np.arange(50), t] = False
    x[mask] = -np.inf
    w = make_weight(rng, 9, dtype) if with_weight else None
    res = check_xent(x, t, w, backend=backend, num_threads=num_threads)
    for r, (loss, grad) in res.items():
        assert np.all(np.isfinite(loss)), f"{r}: loss not finite with masked classes"
        assert np.all(grad[mask] == 0), r


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_masked_classes_with_smoothing_and_probs(backend, dtype, rng):
    # Smoothing puts mass on the masked classes: torch gives inf (and finite grads).
    x, t = make_problem(rng, (12, 6), dtype)
    x[:, 2] = -np.inf
    t[t == 2] = 0
    check_xent(x, t, backend=backend, label_smoothing=0.1)
    p = make_probs(rng, x.shape, dtype)
    p[:, 2] = 0           # 0 * -inf: nan, as torch
    check_xent(x, p, backend=backend)


@pytest.mark.parametrize("scale", [1e4, 3e4], ids=str)
@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_huge_logits(backend, dtype, scale, num_threads, rng):
    x, t = make_problem(rng, (40, 17), dtype, scale=scale)
    x[::3] += np.asarray(scale, dtype)       # large offsets too
    w = make_weight(rng, 17, dtype)
    res = check_xent(x, t, w, backend=backend, num_threads=num_threads, label_smoothing=0.05)
    for r, (loss, grad) in res.items():
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)), r


@pytest.mark.parametrize("targets", ["index", "probs"])
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("num_threads", THREADS)
def test_nan_inf_propagation(backend, dtype, targets, num_threads, rng):
    x, t = make_problem(rng, (8, 5), dtype, targets=targets)
    x[1, 2] = np.nan            # NaN logit
    x[3] = -np.inf              # all -inf row
    x[5, 0] = np.inf            # +inf logit
    x[6, 1] = np.inf
    x[6, 3] = -np.inf
    if targets == "index":
        t[5], t[6] = 2, 1       # +inf at and away from the target
    res = check_xent(x, t, backend=backend, num_threads=num_threads)
    loss, grad = res["none"]
    clean = [0, 2, 4, 7]
    assert np.all(np.isfinite(loss[clean])) and np.all(np.isfinite(grad[clean]))
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1]))
    assert np.isnan(res["mean"][0]) and np.isnan(res["sum"][0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("targets", ["index", "probs"])
def test_nonfinite_weight_of_one_class(backend, targets, bad, rng):
    # torch: with class indices only the rows whose target has that weight are
    # affected (nll_loss picks w[y]); with probabilities every row is.
    x, t = make_problem(rng, (6, 4), np.float64, targets=targets)
    w = make_weight(rng, 4)
    w[3] = bad
    if targets == "index":
        t[:] = [0, 1, 2, 3, 0, 1]
    check_xent(x, t, w, backend=backend)


def test_nan_probability(backend, rng):
    x, p = make_problem(rng, (6, 4), np.float64, targets="probs")
    p[2, 1] = np.nan
    check_xent(x, p, backend=backend)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3), (4,)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_all_ignored(backend, dtype, shape, label_smoothing, rng):
    x = make_logits(rng, shape, dtype)
    t = np.full(batch_shape(shape), -100)
    res = check_xent(x, t, backend=backend, label_smoothing=label_smoothing)
    assert np.isnan(res["mean"][0]) and res["sum"][0] == 0
    for r, (loss, grad) in res.items():
        assert np.all(grad == 0), r


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_zero_summed_weight(backend, dtype, rng):
    # Non-ignored targets of weight 0: mean is 0/0, as in torch (nan grads there).
    x, t = make_problem(rng, (6, 3), dtype)
    t[:] = [0, 0, -100, 0, 0, -100]
    w = np.array([0.0, 1.0, 2.0], dtype)
    check_xent(x, t, w, backend=backend)


@pytest.mark.parametrize("targets", ["index", "probs"])
def test_empty_batch(backend, targets, rng):
    for shape in [(0, 5), (3, 4, 0), (0, 4, 2)]:
        x, t = make_problem(rng, shape, np.float32, targets=targets)
        res = check_xent(x, t, backend=backend)
        assert np.isnan(res["mean"][0]) and res["sum"][0] == 0


# --------------------------------------------------------------------------
# Determinism: bit-identical for every num_threads and every call.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("targets", ["index", "probs"])
@pytest.mark.parametrize("shape", [(257, 1000), (4096, 2), (3, 128256), (64, 10, 33)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_deterministic_across_threads(backend, dtype, shape, targets, rng):
    x, t = make_problem(rng, shape, dtype, targets=targets, n_ignore=5)
    w = make_weight(rng, shape[1], dtype)
    for r in REDUCTIONS:
        first = None
        for num_threads in (1, 2, 3, 8, 2, 1, None):
            got = fastxent.cross_entropy(x, t, w, reduction=r, return_grad=True,
                                         label_smoothing=0.1, backend=backend,
                                         num_threads=num_threads)
            if first is None:
                first = got
            else:
                assert _bitwise_equal(got[0], first[0]), (r, num_threads, "loss")
                assert _bitwise_equal(got[1], first[1]), (r, num_threads, "grad")
    # and against the oracle once, so that "equal" means "equal and right"
    check_xent(x, t, w, backend=backend, num_threads=3, reductions=("mean",),
               label_smoothing=0.1)


@pytest.mark.parametrize("op", ["log_softmax", "softmax", "logsumexp"])
def test_transforms_deterministic_across_threads(backend, op, rng):
    x = make_logits(rng, (513, 300), np.float32)
    first = getattr(fastxent, op)(x, backend=backend, num_threads=1)
    for num_threads in (2, 3, None, 1):
        assert _bitwise_equal(getattr(fastxent, op)(x, backend=backend,
                                                    num_threads=num_threads), first)


def test_concurrent_callers(backend, rng):
    # Calls from a thread pool (each possibly multi-threaded) give the serial answers.
    problems = [make_problem(rng, (300, 50), np.float32, n_ignore=3) for _ in range(8)]

    def run(pt):
        x, t = pt
        return fastxent.cross_entropy(x, t, return_grad=True, backend=backend, num_threads=2)

    expected = [run(p) for p in problems]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, problems * 3))
    for i, g in enumerate(got):
        e = expected[i % len(problems)]
        assert _bitwise_equal(g[0], e[0]) and _bitwise_equal(g[1], e[1])


# --------------------------------------------------------------------------
# log_softmax, softmax, logsumexp against torch.
# --------------------------------------------------------------------------

TRANSFORM_CASES = [((7, 3), -1), ((257, 1000), -1), ((3, 128256), -1), ((4, 5, 6), 0),
                   ((4, 5, 6), 1), ((4, 5, 6), -2), ((4, 5, 6), 2), ((11,), 0), ((0, 5), -1),
                   ((5, 1), -1), ((1000, 3), 0)]


def _torch_transform(op, x, axis):
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if op == "logsumexp":
        return torch.logsumexp(xt, dim=axis).numpy()
    return getattr(torch, op)(xt, dim=axis).numpy()


def _scipy_transform(op, x, axis):
    import scipy.special
    with np.errstate(all="ignore"):
        return getattr(scipy.special, op)(x.astype(np.float64), axis=axis)


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("case", TRANSFORM_CASES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", ["log_softmax", "softmax", "logsumexp"])
def test_transforms(backend, op, dtype, case, num_threads, rng):
    shape, axis = case
    x = make_logits(rng, shape, dtype)
    snaps = snapshot(x)
    got = getattr(fastxent, op)(x, axis, backend=backend, num_threads=num_threads)
    assert_unchanged((x,), snaps)
    expected_shape = shape if op != "logsumexp" else tuple(np.delete(shape, axis))
    assert np.shape(got) == expected_shape and np.asarray(got).dtype == dtype
    if op == "logsumexp" and len(shape) == 1:
        assert isinstance(got, np.floating)
    ref = _scipy_transform(op, x, axis)
    tv = _torch_transform(op, x, axis)
    np.testing.assert_allclose(got, tv, **TOL[dtype])
    zmax = logit_scale(x)
    unit = 1.0
    assert_accurate(got, ref, dtype, unit=unit, zmax=zmax, torch_val=tv, what=op)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", ["log_softmax", "softmax", "logsumexp"])
def test_transforms_special_values(backend, op, dtype):
    x = np.array([[1.0, 2.0, 3.0, 4.0],
                  [-np.inf, 2.0, -np.inf, 0.5],   # masked entries
                  [-np.inf] * 4,                  # all -inf
                  [np.inf, 1.0, 2.0, 3.0],        # +inf
                  [np.nan, 1.0, 2.0, 3.0],        # nan
                  [1e4, -1e4, 3e4, 2.9e4]], dtype)  # huge
    got = getattr(fastxent, op)(x, backend=backend)
    tv = _torch_transform(op, x, -1)
    assert_same_nonfinite(got, tv, op)
    np.testing.assert_allclose(got, tv, **TOL[dtype])
    if op != "logsumexp":
        assert np.all(got[1, [0, 2]] == (0 if op == "softmax" else -np.inf))


@pytest.mark.parametrize("op", ["log_softmax", "softmax"])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("case", [((9, 6), -1), ((4, 5, 6), 1), ((3, 4), 0)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS + (np.float16,), ids=lambda d: np.dtype(d).name)
def test_transforms_out_and_in_place(backend, op, layout, case, dtype, rng):
    shape, axis = case
    x = make_logits(rng, shape, dtype)
    f = getattr(fastxent, op)
    expected = f(x, axis, backend=backend)
    assert expected.dtype == dtype
    out = _out_like(x, layout)
    res = f(x, axis, out=out, backend=backend)
    assert np.shares_memory(res, out) and _bitwise_equal(res, expected)
    xi = _lay_out(x, layout if layout != "strided" else "strided_cols")
    res = f(xi, axis, out=xi, backend=backend)
    assert np.shares_memory(res, xi) and _bitwise_equal(xi, expected)
    if dtype == np.float16:  # computed in float32, rounded once
        tv = _torch_transform(op, x.astype(np.float32), axis).astype(np.float16)
        np.testing.assert_allclose(expected.astype(np.float32), tv.astype(np.float32),
                                   **TOL[np.float16])


@pytest.mark.parametrize("op", ["log_softmax", "softmax", "logsumexp"])
def test_transforms_integer_input_and_layouts(backend, op, rng):
    xi = rng.integers(-4, 5, size=(6, 5)).astype(np.int32)
    got = getattr(fastxent, op)(xi, backend=backend)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _scipy_transform(op, xi, -1), rtol=1e-13, atol=1e-15)
    x = make_logits(rng, (6, 5), np.float32)
    expected = getattr(fastxent, op)(x, backend=backend)
    for layout in LAYOUTS:
        xl = _lay_out(x, layout)
        snaps = snapshot(xl)
        got = getattr(fastxent, op)(xl, backend=backend)
        assert_unchanged((xl,), snaps)
        assert _bitwise_equal(got, expected), layout


# --------------------------------------------------------------------------
# config() changes the defaults (and only inside its block).
# --------------------------------------------------------------------------

def _record_kernels(monkeypatch):
    import fastxent._api as api

    calls = []
    real = api.get_kernel

    def spy(op, backend, num_threads):
        calls.append((op, backend, num_threads))
        return real(op, backend, num_threads)

    monkeypatch.setattr(api, "get_kernel", spy)
    return calls


def test_config_sets_defaults(backend, monkeypatch, rng):
    calls = _record_kernels(monkeypatch)
    x, t = make_problem(rng, (5, 3), np.float64)
    with fastxent.config(backend=backend, num_threads=1):
        fastxent.cross_entropy(x, t)
        fastxent.log_softmax(x)
        fastxent.cross_entropy(x, t, num_threads=2)          # an explicit value wins
        with fastxent.config(num_threads=3):                  # nesting keeps the backend
            fastxent.logsumexp(x)
        fastxent.softmax(x)
    fastxent.cross_entropy(x, t, backend=backend)        # small: one thread by default
    big = np.zeros((512, 512))                              # PARALLEL_MIN_SIZE elements
    fastxent.log_softmax(big, backend=backend)
    cores = _threads.usable_cores()
    assert calls == [("xent_index", backend, 1), ("log_softmax", backend, 1),
                     ("xent_index", backend, 2), ("logsumexp", backend, 3),
                     ("softmax", backend, 1), ("xent_index", backend, 1),
                     ("log_softmax", backend, cores)]


def test_config_restored_after_exception_and_local_to_thread(backend, monkeypatch, rng):
    calls = _record_kernels(monkeypatch)
    x, t = make_problem(rng, (1024, 256), np.float64)  # large enough for every core
    with pytest.raises(KeyError):
        with fastxent.config(num_threads=1, backend=backend):
            raise KeyError
    fastxent.cross_entropy(x, t, backend=backend)
    assert calls[-1][2] == _threads.usable_cores()
    with fastxent.config(num_threads=1, backend=backend):
        th = threading.Thread(target=fastxent.cross_entropy, args=(x, t),
                              kwargs=dict(backend=backend))
        th.start()
        th.join()
    assert calls[-1][2] == _threads.usable_cores()   # the other thread kept the defaults


def test_config_unavailable_backend_is_used(rng):
    status = fastxent.available_backends()
    missing = [name for name, s in status.items() if not s.available]
    if not missing:
        pytest.skip("every backend is available here")
    x, t = make_problem(rng, (5, 3), np.float64)
    with fastxent.config(backend=missing[0]):
        with pytest.raises(RuntimeError, match=missing[0]):
            fastxent.cross_entropy(x, t)
        assert np.isfinite(fastxent.cross_entropy(x, t, backend="numpy"))
    assert np.isfinite(fastxent.cross_entropy(x, t))


def test_backends_agree(rng):
    # Every available backend against the numpy reference, bit for bit where
    # the math allows; within the float64 bar otherwise.
    names = [n for n, s in fastxent.available_backends().items() if s.available]
    x, t = make_problem(rng, (100, 37), np.float64, n_ignore=4)
    w = make_weight(rng, 37)
    ref = fastxent.cross_entropy(x, t, w, return_grad=True, label_smoothing=0.1, backend="numpy")
    for name in names:
        got = fastxent.cross_entropy(x, t, w, return_grad=True, label_smoothing=0.1, backend=name)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-13)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-11, atol=1e-17)


def test_special_values_under_numpy_errstate_raise(backend, rng):
    # NaN and inf in the data are not errors (API.md), whatever the caller's
    # np.seterr: a NumPy warning turned into FloatingPointError must not escape.
    x, t = make_problem(rng, (6, 5), np.float64)
    x[0, 1] = -np.inf
    x[1, 2] = np.nan
    x[2] = -np.inf
    x[3, 0] = np.inf
    calls = [lambda: fastxent.cross_entropy(x, t, return_grad=True, reduction="none",
                                            backend=backend),
             lambda: fastxent.cross_entropy(x, t, return_grad=True, label_smoothing=0.1,
                                            backend=backend),
             lambda: fastxent.log_softmax(x, backend=backend),
             lambda: fastxent.softmax(x, backend=backend),
             lambda: fastxent.logsumexp(x, backend=backend)]
    for call in calls:
        with np.errstate(all="ignore"):
            expected = call()
        with np.errstate(all="raise"):
            got = call()
        for g, e in zip(got if isinstance(got, tuple) else (got,),
                        expected if isinstance(expected, tuple) else (expected,)):
            assert _bitwise_equal(g, e)


def test_auto_is_the_first_available_backend(rng):
    from fastxent import _backends
    first = next(n for n in _backends._AUTO_ORDER if fastxent.available_backends()[n].available)
    x, t = make_problem(rng, (300, 20), np.float32, n_ignore=3)
    a = fastxent.cross_entropy(x, t, return_grad=True, backend="auto", num_threads=2)
    b = fastxent.cross_entropy(x, t, return_grad=True, backend=first, num_threads=2)
    assert _bitwise_equal(a[0], b[0]) and _bitwise_equal(a[1], b[1])


def test_bfloat16_input(backend, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x, t = make_problem(rng, (9, 5), np.float32)
    xb = x.astype(ml_dtypes.bfloat16)
    loss, grad = fastxent.cross_entropy(xb, t, return_grad=True, backend=backend)
    assert loss.dtype == np.float32 and grad.dtype == xb.dtype
    loss32, grad32 = fastxent.cross_entropy(xb.astype(np.float32), t, return_grad=True,
                                            backend=backend)
    assert loss == loss32
    assert _bitwise_equal(grad.astype(np.float32), grad32.astype(xb.dtype).astype(np.float32))


# --------------------------------------------------------------------------
# The kernel interface of _reference.py's docstring, called directly.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_kernel_interface(backend, dtype, label_dtype, num_threads, rng):
    from fastxent._backends import get_kernel

    n, c = 37, 11
    z = make_logits(rng, (n, c), dtype)
    labels = make_targets(rng, (n, c), n_ignore=4, dtype=label_dtype)
    probs = make_probs(rng, (n, c), dtype)
    w = make_weight(rng, c, dtype)
    scale = rng.standard_normal(n)
    inputs = (z, labels, probs, w, scale)
    snaps = snapshot(*inputs)
    tol = TOL[dtype]

    k = get_kernel("xent_index", backend, num_threads)
    loss, grad = np.empty(n), np.empty_like(z)
    k(z, labels, w, 0.1, -100, 0.0, 0.0, scale, loss, grad, num_threads)
    e_loss, e_grad, _ = oracle_xent(z, labels, w, reduction="none", label_smoothing=0.1,
                                    grad_output=scale)
    np.testing.assert_allclose(loss, e_loss, **tol)
    np.testing.assert_allclose(grad, e_grad, **tol)
    loss_only = np.empty(n)   # an empty grad_out: loss only
    k(z, labels, np.empty(0, dtype), 0.0, -100, 0.0, 0.0, scale, loss_only,
      np.empty((0, 0), dtype), num_threads)
    np.testing.assert_allclose(loss_only, oracle_xent(z, labels, reduction="none")[0], **tol)

    k = get_kernel("xent_probs", backend, num_threads)
    k(z, probs, w, 0.2, 0.0, 0.0, scale, loss, grad, num_threads)
    e_loss, e_grad, _ = oracle_xent(z, probs, w, reduction="none", label_smoothing=0.2,
                                    grad_output=scale)
    np.testing.assert_allclose(loss, e_loss, **tol)
    np.testing.assert_allclose(grad, e_grad, **tol)

    for op in ("log_softmax", "softmax"):
        out = np.empty_like(z)
        get_kernel(op, backend, num_threads)(z, out, num_threads)
        np.testing.assert_allclose(out, _scipy_transform(op, z, 1), **tol)
    lse = np.empty(n)
    get_kernel("logsumexp", backend, num_threads)(z, lse, num_threads)
    np.testing.assert_allclose(lse, _scipy_transform("logsumexp", z, 1), **tol)
    assert_unchanged(inputs, snaps)

    # grad_out may be the logits themselves.
    zz = z.copy()
    k = get_kernel("xent_index", backend, num_threads)
    k(zz, labels, w, 0.1, -100, 0.0, 0.0, scale, loss, zz, num_threads)
    e_loss, e_grad, _ = oracle_xent(z, labels, w, reduction="none", label_smoothing=0.1,
                                    grad_output=scale)
    np.testing.assert_allclose(zz, e_grad, **tol)


@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("n_classes", [11, 40])  # rows in tiles, rows one by one
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
# Blocks shorter than the 16 lanes of a group of rows, and blocks of two groups.
@pytest.mark.parametrize("block_rows", [8, 32])
def test_evaluate_kernel_interface(backend, dtype, n_classes, num_threads, block_rows, rng):
    from fastxent._backends import get_kernel
    from scipy import special

    n, topk = 75, np.array([1, 3, 2, 100], np.int64)  # the last block partly filled
    n_blocks = -(-n // block_rows)
    z = make_logits(rng, (n, n_classes), dtype)
    labels = make_targets(rng, (n, n_classes), n_ignore=6)
    w = make_weight(rng, n_classes, dtype)
    sw = rng.random(n)
    sw[labels == -100] = np.nan  # an ignored row adds nothing, not even its weight
    inputs = (z, labels, w, sw)
    snaps = snapshot(*inputs)

    # Each row's values and the sums of each block, in float64, from scratch.
    z64 = z.astype(np.float64)
    logp = special.log_softmax(z64, axis=1)
    kept = labels != -100
    y = np.where(kept, labels, 0)
    rows = np.arange(n)
    order = np.argsort(z, axis=1, kind="stable")[:, ::-1]
    rank = np.where(kept, np.argmax(order == y[:, None], axis=1), n_classes)
    per_row = [np.where(kept, -w[y] * logp[rows, y], 0.0), special.logsumexp(z64, axis=1),
               -np.sum(np.exp(logp) * logp, axis=1), np.argmax(z, axis=1), rank]
    v = np.where(kept, sw, 0.0)
    values = np.stack([kept * 1.0, v * per_row[0], v * w[y], v, v * (per_row[3] == labels),
                       v * per_row[2], v * per_row[1]] + [v * (rank < k) for k in topk], axis=1)
    expected = np.add.reduceat(values, np.arange(0, n, block_rows))

    k = get_kernel("evaluate", backend, num_threads)
    sums = np.full((n_blocks, 11), np.nan)
    outs = [np.empty(n), np.empty(n), np.empty(n), np.empty(n, np.int64),
            np.empty(n, np.int64)]
    k(z, labels, w, sw, -100, topk, block_rows, sums, *outs, num_threads)
    for got, want in zip(outs[:3], per_row[:3]):
        np.testing.assert_allclose(got, want, **TOL[dtype])
    for got, want in zip(outs[3:], per_row[3:]):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(sums, expected, **TOL[dtype])
    for column in (0, 3, 4, 7, 8, 9, 10):  # count, weight, hits: exact up to the sum's order
        np.testing.assert_allclose(sums[:, column], expected[:, column], rtol=1e-15)

    # Without per-row outputs: the same sums, bit for bit.
    alone = np.full((n_blocks, 11), np.nan)
    no_rows = [np.empty(0), np.empty(0), np.empty(0), np.empty(0, np.int64),
               np.empty(0, np.int64)]
    k(z, labels, w, sw, -100, topk, block_rows, alone, *no_rows, num_threads)
    assert _bitwise_equal(alone, sums)
    assert_unchanged(inputs, snaps)

    if backend == "numpy":  # the reference checks no lengths
        return
    for bad_sums, bad_outs in ((np.empty((n_blocks - 1, 11)), no_rows),
                              (np.empty((n_blocks, 10)), no_rows),
                               (alone, outs[:4] + no_rows[4:])):
        with pytest.raises(ValueError, match="block_sums|rank_out"):
            k(z, labels, w, sw, -100, topk, block_rows, bad_sums, *bad_outs, num_threads)
