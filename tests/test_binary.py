"""binary_cross_entropy and binary_cross_entropy_with_logits: every backend
against PyTorch and a float64 oracle written with scipy.special, gradients
against autograd and finite differences, errors, layouts, threads."""

import numpy as np
import pytest
from scipy import special

import fastxent
from conftest import FLOATS, TOL, assert_accurate, assert_unchanged, snapshot

torch = pytest.importorskip("torch")
F = torch.nn.functional

REDUCTIONS = ("mean", "sum", "none")


@np.errstate(all="ignore")
def oracle(x, y, w=None, pw=None, *, logits, reduction):
    """float64 loss and gradient of the reduced loss, from PyTorch's formulas."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    w = 1.0 if w is None else np.asarray(w, np.float64)
    if logits:
        pw = 1.0 if pw is None else np.asarray(pw, np.float64)
        lw = 1.0 + (pw - 1.0) * y
        loss = w * ((1.0 - y) * x - lw * special.log_expit(x))
        grad = w * (lw * special.expit(x) - pw * y)
    else:
        loss = -w * (y * np.maximum(np.log(x), -100.0)
                     + (1.0 - y) * np.maximum(np.log1p(-x), -100.0))
        # PyTorch's floor, 1e-12, is rounded to float32 (also in float64)
        grad = w * (x - y) / np.maximum(x * (1.0 - x), float(np.float32(1e-12)))
    loss, grad = np.broadcast_arrays(loss, grad)
    if reduction == "none":
        return loss, grad
    scale = 1.0 / x.size if reduction == "mean" else 1.0
    return loss.sum() * scale, grad * scale


def torch_binary(x, y, w=None, pw=None, *, logits, reduction):
    tx = torch.tensor(np.asarray(x), requires_grad=True)
    kw = {} if w is None else {"weight": torch.tensor(np.asarray(w))}
    if logits:
        if pw is not None:
            kw["pos_weight"] = torch.tensor(np.asarray(pw))
        loss = F.binary_cross_entropy_with_logits(tx, torch.tensor(np.asarray(y)),
                                                  reduction=reduction, **kw)
    else:
        loss = F.binary_cross_entropy(tx, torch.tensor(np.asarray(y)), reduction=reduction, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), tx.grad.numpy()


def ours(x, y, w=None, pw=None, *, logits, **kw):
    if logits:
        return fastxent.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, **kw)
    return fastxent.binary_cross_entropy(x, y, w, **kw)


def check(x, y, w=None, pw=None, *, logits, backend, num_threads=None, use_torch=True):
    """Loss and gradient for every reduction: against the oracle (with the
    accuracy bar of API.md) and against PyTorch in the same dtype."""
    dtype = np.asarray(x).dtype
    zmax = float(np.max(np.abs(x), initial=0.0)) if logits else 100.0
    for reduction in REDUCTIONS:
        loss, grad = ours(x, y, w, pw, logits=logits, reduction=reduction, return_grad=True,
                          backend=backend, num_threads=num_threads)
        assert loss.dtype == dtype and grad.dtype == dtype and grad.shape == np.shape(x)
        ref_loss, ref_grad = oracle(x, y, w, pw, logits=logits, reduction=reduction)
        t_loss, t_grad = torch_binary(x, y, w, pw, logits=logits, reduction=reduction) \
            if use_torch else (None, None)
        unit = float(np.max(np.abs(w), initial=1.0)) if w is not None else 1.0
        if reduction == "sum":
            unit *= np.size(x)
        assert_accurate(loss, ref_loss, dtype, unit=unit, zmax=zmax, torch_val=t_loss,
                        what=f"loss {reduction}")
        assert_accurate(grad, ref_grad, dtype, unit=unit, zmax=zmax, torch_val=t_grad,
                        what=f"grad {reduction}")
        if use_torch:
            np.testing.assert_allclose(loss, t_loss, **TOL[dtype])
            np.testing.assert_allclose(grad, t_grad, **TOL[dtype])


def probabilities(rng, shape, dtype):
    p = rng.random(shape)
    return p.astype(dtype)


WEIGHTS = {
    "none": lambda rng, shape: None,
    "per_class": lambda rng, shape: rng.random(shape[-1]) + 0.5,
    "full": lambda rng, shape: rng.random(shape) + 0.5,
    "per_row": lambda rng, shape: rng.random(shape[:-1] + (1,)) + 0.5,
    "scalar": lambda rng, shape: np.array(2.5),
}


@pytest.mark.parametrize("weight", list(WEIGHTS))
@pytest.mark.parametrize("shape", [(7,), (16, 5), (3, 4, 6)])
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_probabilities_match_torch(backend, dtype, shape, weight, rng):
    x = probabilities(rng, shape, dtype)
    y = probabilities(rng, shape, dtype)
    w = WEIGHTS[weight](rng, shape)
    check(x, y, None if w is None else np.asarray(w, dtype), logits=False, backend=backend)


@pytest.mark.parametrize("pos_weight", ["none", "per_class", "full"])
@pytest.mark.parametrize("weight", ["none", "per_class", "per_row"])
@pytest.mark.parametrize("shape", [(9,), (16, 5), (3, 4, 6)])
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_logits_match_torch(backend, dtype, shape, weight, pos_weight, rng):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = probabilities(rng, shape, dtype)
    w, pw = WEIGHTS[weight](rng, shape), WEIGHTS[pos_weight](rng, shape)
    if pw is not None:
        pw = 3 * pw
    check(x, y, None if w is None else np.asarray(w, dtype),
          None if pw is None else np.asarray(pw, dtype), logits=True, backend=backend)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_probabilities_at_0_and_1(backend, dtype):
    # log(0) is clamped at -100; the gradient's denominator at 1e-12.
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.5, 1e-30, 1 - 2**-20], dtype)
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 1.0, 0.0], dtype)
    check(x, y, logits=False, backend=backend)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_extreme_logits(backend, dtype):
    x = np.array([-1e4, -80.0, -30.0, -1e-8, 0.0, 1e-8, 30.0, 80.0, 1e4] * 2, dtype)
    y = np.array([0.0] * 9 + [1.0] * 9, dtype)
    check(x, y, logits=True, backend=backend)
    check(x, np.full_like(y, 0.25), None, np.full(18, 3.0, dtype), logits=True,
          backend=backend)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_elementwise_losses_keep_their_relative_accuracy(backend, dtype):
    # Every binade of the probabilities (subnormals too) and of 1 - p, and
    # logits from -90 to 90: each element's loss and gradient within a few
    # ulps *relative*, also where they are tiny (PyTorch loses all digits
    # there: x = -20, y = 0 gives 0, not 2.06e-9). This checks the kernels'
    # own exp, log and log1p over their whole range.
    eps = np.finfo(dtype).eps
    tiny = np.finfo(dtype).smallest_subnormal
    p = np.geomspace(tiny, 0.5, 4000).astype(dtype)
    p = np.concatenate([p, (1 - p).astype(dtype), [0.5, 1.0]]).astype(dtype)
    for target in (0.0, 1.0):
        y = np.full_like(p, target)
        loss, grad = fastxent.binary_cross_entropy(p, y, reduction="none", return_grad=True,
                                                   backend=backend)
        ref_loss, ref_grad = oracle(p, y, logits=False, reduction="none")
        np.testing.assert_allclose(loss, ref_loss, rtol=4 * eps, atol=0)
        np.testing.assert_allclose(grad, ref_grad, rtol=4 * eps, atol=0)
    z = np.concatenate([np.linspace(-90, 90, 20001), np.geomspace(1e-30, 90, 2000)])
    z = np.concatenate([z, -z]).astype(dtype)
    for target, pw in ((0.0, None), (1.0, None), (1.0, 3.0), (0.25, None)):
        y = np.full_like(z, target)
        pwa = None if pw is None else np.full_like(z, pw)
        loss, grad = fastxent.binary_cross_entropy_with_logits(
            z, y, pos_weight=pwa, reduction="none", return_grad=True, backend=backend)
        # The oracle's x - log_expit(x) cancels for x << 0; here the form
        # without cancellation, in long double.
        zl, lw = z.astype(np.longdouble), 1 + ((pw or 1) - 1) * target
        ref_loss = (lw * np.log1p(np.exp(-np.abs(zl))) + (1 - target) * np.maximum(zl, 0)
                    - (lw - 1 + target) * np.minimum(zl, 0))
        ref_grad = oracle(z, y, pw=pwa, logits=True, reduction="none")[1]
        # (exp(-|z|) below the smallest normal number may flush to 0)
        np.testing.assert_allclose(loss, ref_loss, rtol=6 * eps,
                                   atol=lw * np.finfo(dtype).tiny)
        # sigmoid(z) - y cancels where sigmoid(z) is near y: absolute ulps of 1 there
        np.testing.assert_allclose(grad, ref_grad, rtol=6 * eps, atol=2 * eps * (1 + (pw or 1)))


@pytest.mark.parametrize("logits", [False, True])
def test_nan_and_inf_propagate_as_in_torch(backend, logits):
    if logits:
        x = np.array([np.nan, np.inf, -np.inf, np.inf, -np.inf, 1.0])
        y = np.array([0.5, 0.0, 0.0, 1.0, 1.0, np.nan])
    else:
        x = np.array([np.nan, 0.5, 0.2])
        y = np.array([1.0, np.nan, 0.0])
    loss, grad = ours(x, y, logits=logits, reduction="none", return_grad=True,
                      backend=backend)
    if logits:
        t_loss, t_grad = torch_binary(x, y, logits=logits, reduction="none")
    else:
        # PyTorch raises for a NaN probability; API.md asks for a NaN loss.
        with pytest.raises(RuntimeError, match="between 0 and 1"):
            torch_binary(x, y, logits=logits, reduction="none")
        t_loss, t_grad = oracle(x, y, logits=logits, reduction="none")
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(t_loss))
    np.testing.assert_allclose(loss, t_loss)
    np.testing.assert_allclose(grad, t_grad)


@pytest.mark.parametrize("logits", [False, True])
def test_gradient_matches_finite_differences(backend, logits, rng):
    shape = (6, 4)
    x = rng.standard_normal(shape) if logits else rng.random(shape) * 0.8 + 0.1
    y = rng.random(shape)
    w, pw = rng.random(4) + 0.5, (rng.random(4) * 3 if logits else None)
    _, grad = ours(x, y, w, pw, logits=logits, return_grad=True, backend=backend)
    h = 1e-6
    numeric = np.empty_like(x)
    for i in np.ndindex(shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (ours(up, y, w, pw, logits=logits, backend=backend)
                      - ours(down, y, w, pw, logits=logits, backend=backend)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("logits", [False, True])
def test_grad_output_and_out(backend, logits, rng):
    shape = (5, 3)
    x = rng.random(shape).astype(np.float32)
    y = rng.random(shape).astype(np.float32)
    go = rng.random(shape)
    loss, grad = ours(x, y, logits=logits, reduction="none", return_grad=True,
                      grad_output=go, backend=backend)
    _, plain = ours(x, y, logits=logits, reduction="none", return_grad=True, backend=backend)
    np.testing.assert_allclose(grad, plain * go, rtol=1e-6)
    _, scaled = ours(x, y, logits=logits, return_grad=True, grad_output=3.0, backend=backend)
    _, unit = ours(x, y, logits=logits, return_grad=True, backend=backend)
    np.testing.assert_allclose(scaled, 3 * unit, rtol=1e-6)
    out = np.empty_like(x)
    _, g = ours(x, y, logits=logits, return_grad=True, out=out, backend=backend)
    assert g is out
    np.testing.assert_array_equal(out, unit)
    inplace = x.copy()
    _, g = ours(inplace, y, logits=logits, return_grad=True, out=inplace, backend=backend)
    assert g is inplace
    np.testing.assert_array_equal(inplace, unit)
    fortran = np.asfortranarray(np.empty_like(x))
    ours(x, y, logits=logits, return_grad=True, out=fortran, backend=backend)
    np.testing.assert_array_equal(fortran, unit)


@pytest.mark.parametrize("logits", [False, True])
def test_same_bits_for_every_thread_count_and_layout(backend, logits, rng):
    # Several blocks, weights whose period does not divide a block.
    shape = (701, 37)
    x = rng.random(shape) if not logits else rng.standard_normal(shape) * 3
    x = x.astype(np.float32)
    y = rng.random(shape).astype(np.float32)
    w = (rng.random(37) + 0.5).astype(np.float32)
    pw = (rng.random(37) * 3).astype(np.float32) if logits else None
    results = [ours(x, y, w, pw, logits=logits, reduction=r, return_grad=True,
                    backend=backend, num_threads=n)
               for n in (1, 2, 3) for r in ("sum",)]
    for loss, grad in results[1:]:
        assert loss.tobytes() == results[0][0].tobytes()
        np.testing.assert_array_equal(grad, results[0][1])
    loss_f, grad_f = ours(np.asfortranarray(x), np.asfortranarray(y), w, pw, logits=logits,
                          reduction="none", return_grad=True, backend=backend)
    loss_c, grad_c = ours(x, y, w, pw, logits=logits, reduction="none", return_grad=True,
                          backend=backend)
    np.testing.assert_array_equal(loss_f, loss_c)
    np.testing.assert_array_equal(grad_f, grad_c)
    if backend != "numpy":
        ref = ours(x, y, w, pw, logits=logits, reduction="none", backend="numpy")
        np.testing.assert_allclose(loss_c, ref, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("logits", [False, True])
def test_small_and_empty_inputs(backend, logits):
    assert np.isnan(ours(np.empty((0, 3)), np.empty((0, 3)), logits=logits, backend=backend))
    assert ours(np.empty((0, 3)), np.empty((0, 3)), logits=logits, reduction="sum",
                backend=backend) == 0.0
    loss, grad = ours(np.float64(0.25), np.float64(1.0), logits=logits, return_grad=True,
                      backend=backend)
    ref_loss, ref_grad = oracle(0.25, 1.0, logits=logits, reduction="mean")
    assert loss == pytest.approx(ref_loss, rel=1e-14)
    assert grad.shape == () and grad == pytest.approx(ref_grad, rel=1e-14)
    half = ours(np.float16([0.25, 0.5]), np.float16([1, 0]), logits=logits, return_grad=True,
                backend=backend)
    assert half[0].dtype == np.float32 and half[1].dtype == np.float16
    # integer targets are converted (as float64)
    assert ours([0.25], [1], logits=logits, backend=backend) == pytest.approx(
        oracle([0.25], [1.0], logits=logits, reduction="mean")[0], rel=1e-14)


@pytest.mark.parametrize("bad, message", [
    (dict(x=[0.5, 1.5]), r"input of binary_cross_entropy must hold values in \[0, 1\]; "
                         r"got 1.5 at index \(1,\)"),
    (dict(x=[-0.5, 0.5]), r"got -0.5 at index \(0,\)"),
    (dict(y=[0.5, 2.0]), r"target of binary_cross_entropy must hold values in \[0, 1\]"),
    (dict(y=[0.5, 0.5, 0.5]), r"target must have input's shape \(2,\); got shape \(3,\)"),
    (dict(weight=[1.0, 2.0, 3.0]), r"weight of shape \(3,\) does not broadcast"),
    (dict(reduction="avg"), r"reduction must be one of"),
    (dict(out=np.empty(2, np.float32)), r"out must have dtype float64"),
    (dict(out=np.empty(3)), r"out must have shape \(2,\)"),
])
def test_errors_change_nothing(backend, bad, message):
    bad = dict(bad)  # shared by the parametrized cases
    x = np.array(bad.pop("x", [0.25, 0.75]))
    y = np.array(bad.pop("y", [1.0, 0.0]))
    out = bad.get("out", np.full(2, 7.0))
    bad.setdefault("out", out)
    snaps = snapshot(x, y, out)
    with pytest.raises(ValueError, match=message):
        fastxent.binary_cross_entropy(x, y, bad.pop("weight", None), return_grad=True,
                                      backend=backend, **bad)
    assert_unchanged((x, y, out), snaps)


def test_logits_errors(backend):
    x, y = np.zeros((2, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(2,\) does not broadcast"):
        fastxent.binary_cross_entropy_with_logits(x, y, pos_weight=[1.0, 2.0], backend=backend)
    with pytest.raises(ValueError, match=r"used only with return_grad=True"):
        fastxent.binary_cross_entropy_with_logits(x, y, out=x, backend=backend)
    with pytest.raises(TypeError, match=r"target must hold real numbers"):
        fastxent.binary_cross_entropy_with_logits(x, np.full((2, 3), "a"), backend=backend)
    # Targets outside [0, 1] are not checked with logits, as in PyTorch.
    loss = fastxent.binary_cross_entropy_with_logits([0.0], [2.0], backend=backend)
    assert loss == pytest.approx(float(torch_binary([0.0], [2.0], logits=True,
                                                    reduction="mean")[0]))


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("num_threads", [1, 2])
def test_range_check_names_the_first_bad_value(backend, dtype, num_threads):
    # The check runs threaded over the whole array: the first bad value is
    # the one named, wherever the others fall; NaN is not out of range.
    x = np.full((300, 500), 0.5, dtype)
    x[0, 7], x[140, 3], x[290, 400] = np.nan, 1.25, -1.0
    snaps = snapshot(x)
    with pytest.raises(ValueError, match=r"input .* got 1.25 at index \(140, 3\)"):
        fastxent.binary_cross_entropy(x, np.zeros_like(x), return_grad=True, out=x,
                                      backend=backend, num_threads=num_threads)
    assert_unchanged((x,), snaps)
    y = np.zeros_like(x)
    y[299, 499] = 1 + np.finfo(dtype).eps
    with pytest.raises(ValueError, match=r"target .* at index \(299, 499\)"):
        fastxent.binary_cross_entropy(np.full_like(x, 0.5), y, backend=backend,
                                      num_threads=num_threads)
