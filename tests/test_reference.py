"""The NumPy reference kernels (the spec) against SciPy and finite differences.

The reference is what the compiled backends are compared with, so it is
checked here against code that shares nothing with it: scipy.special and
central finite differences of the loss itself.
"""

import numpy as np
import pytest

import fastxent
from fastxent import _reference as ref

from conftest import (TOL, make_logits, make_probs, make_targets, make_weight, oracle_xent,
                      torch_xent)

scipy_special = pytest.importorskip("scipy.special")


def _rows_with_specials(rng, dtype):
    z = make_logits(rng, (6, 9), dtype)
    z[1, 3] = -np.inf          # a masked class
    z[2, :4] = -np.inf
    z[3] *= 1e3                # huge spread
    z[4] += 1e4                # huge offset
    z[5] = -np.inf             # all -inf: lse = -inf
    return z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_logsumexp_kernel_vs_scipy(rng, dtype, mode):
    z = _rows_with_specials(rng, dtype)
    lse = np.empty(z.shape[0])
    getattr(ref, f"logsumexp_{mode}")(z, lse, 1)
    with np.errstate(divide="ignore"):
        expected = scipy_special.logsumexp(z.astype(np.float64), axis=1)
    np.testing.assert_allclose(lse, expected, **TOL[dtype])
    assert lse[5] == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_kernel_inf_and_nan(dtype):
    z = np.array([[np.inf, 1.0, 2.0], [np.nan, 0.0, 1.0], [-np.inf, -np.inf, 3.0]], dtype)
    lse = np.empty(3)
    ref.logsumexp_serial(z, lse, 1)
    assert lse[0] == np.inf          # as scipy and torch.logsumexp
    assert np.isnan(lse[1])
    np.testing.assert_allclose(lse[2], 3.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["log_softmax", "softmax"])
def test_transform_kernels_vs_scipy(rng, dtype, op):
    z = _rows_with_specials(rng, dtype)[:5]
    out = np.empty_like(z)
    getattr(ref, f"{op}_serial")(z, out, 1)
    expected = getattr(scipy_special, op)(z.astype(np.float64), axis=1)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, **TOL[dtype])


@pytest.mark.parametrize("op", ["log_softmax", "softmax"])
def test_transform_kernel_in_place(rng, op):
    # Kernels may be handed out=logits (the API's in-place path).
    z = make_logits(rng, (5, 7))
    expected = getattr(scipy_special, op)(z, axis=1)
    getattr(ref, f"{op}_serial")(z, z, 1)
    np.testing.assert_allclose(z, expected, **TOL[np.float64])


def test_public_transforms_numpy_backend_vs_scipy(rng):
    x = make_logits(rng, (4, 5, 6))
    for axis in (0, 1, -1):
        np.testing.assert_allclose(fastxent.log_softmax(x, axis, backend="numpy"),
                                   scipy_special.log_softmax(x, axis=axis), rtol=1e-13)
        np.testing.assert_allclose(fastxent.softmax(x, axis, backend="numpy"),
                                   scipy_special.softmax(x, axis=axis), rtol=1e-13)
        np.testing.assert_allclose(fastxent.logsumexp(x, axis, backend="numpy"),
                                   scipy_special.logsumexp(x, axis=axis), rtol=1e-13)


# --------------------------------------------------------------------------
# Cross-entropy kernels, called through the kernel interface of _reference.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_xent_index_kernel(rng, dtype, with_weight, label_smoothing, ignore_index):
    n, c = 11, 5
    z = make_logits(rng, (n, c), dtype)
    labels = make_targets(rng, (n, c), n_ignore=3, ignore_index=ignore_index)
    w = make_weight(rng, c, dtype) if with_weight else np.empty(0, dtype)
    scale = rng.standard_normal(n)
    loss, grad = np.empty(n), np.empty_like(z)
    ref.xent_index_serial(z, labels, w, label_smoothing, ignore_index, 0.0, 0.0, scale, loss,
                          grad, 1)
    exp_loss, exp_grad, _ = oracle_xent(z, labels, w if with_weight else None,
                                        ignore_index=ignore_index, reduction="none",
                                        label_smoothing=label_smoothing, grad_output=scale)
    np.testing.assert_allclose(loss, exp_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, exp_grad, **TOL[dtype])
    assert np.all(loss[labels == ignore_index] == 0) and np.all(grad[labels == ignore_index] == 0)

    # Loss only: an empty (0, 0) grad_out.
    loss2 = np.empty(n)
    ref.xent_index_parallel(z, labels, w, label_smoothing, ignore_index, 0.0, 0.0, scale, loss2,
                            np.empty((0, 0), dtype), 2)
    np.testing.assert_array_equal(loss2, loss)

    # grad_out may be the logits themselves.
    loss3 = np.empty(n)
    ref.xent_index_serial(z, labels, w, label_smoothing, ignore_index, 0.0, 0.0, scale, loss3,
                          z, 1)
    np.testing.assert_array_equal(loss3, loss)
    np.testing.assert_array_equal(z, grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_xent_probs_kernel(rng, dtype, with_weight, label_smoothing):
    n, c = 9, 4
    z = make_logits(rng, (n, c), dtype)
    probs = make_probs(rng, (n, c), dtype)
    w = make_weight(rng, c, dtype) if with_weight else np.empty(0, dtype)
    scale = rng.standard_normal(n)
    loss, grad = np.empty(n), np.empty_like(z)
    ref.xent_probs_serial(z, probs, w, label_smoothing, 0.0, 0.0, scale, loss, grad, 1)
    exp_loss, exp_grad, _ = oracle_xent(z, probs, w if with_weight else None, reduction="none",
                                        label_smoothing=label_smoothing, grad_output=scale)
    np.testing.assert_allclose(loss, exp_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, exp_grad, **TOL[dtype])


# --------------------------------------------------------------------------
# Gradients of the public function (numpy backend) by central differences.
# --------------------------------------------------------------------------

def _objective(x, target, weight, reduction, grad_output, kw):
    loss = fastxent.cross_entropy(x, target, weight, reduction=reduction, backend="numpy", **kw)
    go = 1.0 if grad_output is None else grad_output
    return float(np.sum(np.asarray(go) * loss))


def _finite_diff(x, target, weight, reduction, grad_output, kw, h=1e-5):
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = _objective(x, target, weight, reduction, grad_output, kw)
        flat[i] = old - h
        down = _objective(x, target, weight, reduction, grad_output, kw)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


FD_CASES = [
    dict(),
    dict(weight=True),
    dict(n_ignore=2),
    dict(n_ignore=2, ignore_index=1),
    dict(label_smoothing=0.2),
    dict(weight=True, n_ignore=2, label_smoothing=0.15),
    dict(targets="probs"),
    dict(targets="probs", weight=True, label_smoothing=0.25),
]


@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: "-".join(map(str, c.items())) or "plain")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(4, 5), (3, 4, 2), (6,)])
@pytest.mark.parametrize("grad_output", ["default", "given"])
def test_gradient_finite_differences(rng, case, reduction, shape, grad_output):
    case = dict(case)
    targets = case.pop("targets", "index")
    ignore_index = case.pop("ignore_index", -100)
    n_ignore = case.pop("n_ignore", 0)
    x = make_logits(rng, shape, np.float64, scale=1.5)
    if targets == "index":
        if len(shape) == 1 and n_ignore:
            n_ignore = 0  # a single target: ignoring it leaves nothing to differentiate
        target = make_targets(rng, shape, n_ignore=n_ignore, ignore_index=ignore_index)
    else:
        target = make_probs(rng, shape)
    weight = make_weight(rng, shape[0 if len(shape) == 1 else 1]) if case.pop("weight", False) else None
    kw = dict(ignore_index=ignore_index, **case)
    go = None
    if grad_output == "given":
        bshape = np.shape(fastxent.cross_entropy(x, target, reduction="none", backend="numpy",
                                                 ignore_index=ignore_index))
        go = rng.standard_normal(bshape) if reduction == "none" else -1.7
    loss, grad = fastxent.cross_entropy(x, target, weight, reduction=reduction, return_grad=True,
                                        grad_output=go, backend="numpy", **kw)
    fd = _finite_diff(x.copy(), target, weight, reduction, go, kw)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    # And the value itself, against the independent oracle.
    exp_loss, exp_grad, _ = oracle_xent(x, target, weight, reduction=reduction,
                                        grad_output=go, **kw)
    np.testing.assert_allclose(loss, exp_loss, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(grad, exp_grad, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# The test oracle itself agrees with torch (float64), so the other files may
# rely on it.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: "-".join(map(str, c.items())) or "plain")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_oracle_agrees_with_torch(rng, case, reduction):
    case = dict(case)
    targets = case.pop("targets", "index")
    ignore_index = case.pop("ignore_index", -100)
    n_ignore = case.pop("n_ignore", 0)
    shape = (6, 5, 2)
    x = make_logits(rng, shape)
    x[0, 1, 0] = -np.inf  # a masked class
    if targets == "index":
        target = make_targets(rng, shape, n_ignore=n_ignore, ignore_index=ignore_index)
        target[0, 0] = 0  # the masked class is not the target
    else:
        target = make_probs(rng, shape)
    weight = make_weight(rng, 5) if case.pop("weight", False) else None
    kw = dict(ignore_index=ignore_index, **case)
    go = rng.standard_normal((6, 2)) if reduction == "none" else 0.7
    o_loss, o_grad, _ = oracle_xent(x, target, weight, reduction=reduction, grad_output=go, **kw)
    t_loss, t_grad = torch_xent(x, target, weight, reduction=reduction, grad_output=go, **kw)
    np.testing.assert_allclose(o_loss, t_loss, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(o_grad, t_grad, rtol=1e-12, atol=1e-15)
