"""cross_entropy's options beyond PyTorch: sample_weight, z_loss, softcap.

Each backend against the same computation written out with PyTorch's float64
operations (autograd for the gradient), and against central finite
differences; then the rules that every call keeps: identical bits for any
thread count and in place, inputs untouched, clear errors.
"""

import numpy as np
import pytest

import fastxent
from conftest import make_logits, make_probs, make_targets, make_weight, snapshot, \
    assert_unchanged

torch = pytest.importorskip("torch")
F = torch.nn.functional

OPTIONS = [  # (sample_weight?, z_loss, softcap)
    (True, 0.0, None),
    (False, 1e-2, None),
    (False, 0.0, 4.0),
    (True, 0.05, 2.5),
]


def torch_options(x, target, weight=None, *, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, sample_weight=None, z_loss=0.0, softcap=None,
                  grad_output=None):
    """The options as their definitions say, in float64 PyTorch: (loss, grad)."""
    z = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    capped = softcap * torch.tanh(z / softcap) if softcap else z
    target = np.asarray(target)
    probabilities = target.dtype.kind == "f"
    t = torch.tensor(target.astype(np.float64 if probabilities else np.int64))
    w = None if weight is None else torch.tensor(np.asarray(weight, np.float64))
    ce = F.cross_entropy(capped, t, w, ignore_index=ignore_index, reduction="none",
                         label_smoothing=label_smoothing)
    lse = torch.logsumexp(capped, dim=1 if capped.ndim > 1 else 0)
    if probabilities:
        kept = torch.ones_like(ce)
        wy = kept
    else:
        kept = (t != ignore_index).double()
        wy = kept if w is None else w[torch.where(t != ignore_index, t, 0)] * kept
    sw = torch.ones_like(ce) if sample_weight is None else torch.tensor(
        np.asarray(sample_weight, np.float64))
    per_sample = sw * (ce + z_loss * kept * lse ** 2)
    if reduction == "none":
        loss = per_sample
    elif reduction == "sum":
        loss = per_sample.sum()
    else:
        loss = ((sw * ce).sum() / (sw * wy).sum()
                + z_loss * (sw * kept * lse ** 2).sum() / (sw * kept).sum())
    go = torch.ones_like(loss) if grad_output is None else torch.tensor(
        np.broadcast_to(np.asarray(grad_output, np.float64), loss.shape).copy())
    loss.backward(go)
    return loss.detach().numpy(), z.grad.numpy()


def _problem(rng, shape, dtype, targets, with_sw):
    x = make_logits(rng, shape, dtype)
    if targets == "index":
        target = make_targets(rng, shape, n_ignore=2)
    else:
        target = make_probs(rng, shape, dtype)
    batch = shape[:1] + shape[2:]
    sw = 0.25 + 2 * rng.random(batch) if with_sw else None
    return x, target, sw


def _assert_close(ours, ref, dtype, scale, what):
    tol = 1e-10 if np.dtype(dtype) == np.float64 else 3e-5
    np.testing.assert_allclose(np.asarray(ours, np.float64), ref, rtol=tol,
                               atol=tol * scale, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9, 5), (6, 40), (4, 3000), (3, 4, 2)])
@pytest.mark.parametrize("targets", ["index", "probs"])
@pytest.mark.parametrize("with_sw, z_loss, softcap", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_options_match_their_definition(backend, rng, dtype, shape, targets, with_sw, z_loss,
                                        softcap, reduction):
    x, target, sw = _problem(rng, shape, dtype, targets, with_sw)
    weight = make_weight(rng, shape[1], dtype) if targets == "index" else None
    kw = dict(ignore_index=-100, reduction=reduction, label_smoothing=0.1, sample_weight=sw,
              z_loss=z_loss, softcap=softcap)
    go = None if reduction != "none" else rng.standard_normal(shape[:1] + shape[2:])
    loss, grad = fastxent.cross_entropy(x, target, weight, return_grad=True, grad_output=go,
                                        backend=backend, **kw)
    loss_only = fastxent.cross_entropy(x, target, weight, backend=backend, **kw)
    ref_loss, ref_grad = torch_options(x, target, weight, grad_output=go, **kw)
    what = f"{backend} {dtype.__name__} {shape} {targets} {reduction}"
    scale = 1 + float(np.max(np.abs(ref_loss)))
    _assert_close(loss, ref_loss, dtype, scale, what + " loss")
    np.testing.assert_array_equal(loss_only, loss)
    _assert_close(grad, ref_grad, dtype, float(np.max(np.abs(ref_grad))), what + " grad")
    assert grad.dtype == dtype and grad.shape == x.shape


@pytest.mark.parametrize("targets", ["index", "probs"])
def test_option_gradients_match_finite_differences(backend, rng, targets):
    x, target, sw = _problem(rng, (5, 7), np.float64, targets, True)
    weight = make_weight(rng, 7) if targets == "index" else None
    kw = dict(sample_weight=sw, z_loss=0.03, softcap=3.0, label_smoothing=0.05,
              backend=backend)
    _, grad = fastxent.cross_entropy(x, target, weight, return_grad=True, **kw)
    h = 1e-6
    numeric = np.empty_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (fastxent.cross_entropy(up, target, weight, **kw)
                      - fastxent.cross_entropy(down, target, weight, **kw)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_no_options_change_nothing(backend, rng):
    """The defaults and their explicit values give the bits of a plain call."""
    x = make_logits(rng, (50, 13), np.float32)
    y = make_targets(rng, (50, 13), n_ignore=3)
    plain = fastxent.cross_entropy(x, y, return_grad=True, backend=backend)
    explicit = fastxent.cross_entropy(x, y, return_grad=True, backend=backend, z_loss=0.0,
                                      softcap=None, sample_weight=np.ones(50))
    np.testing.assert_array_equal(plain[0], explicit[0])
    np.testing.assert_array_equal(plain[1], explicit[1])


@pytest.mark.parametrize("n_classes", [10, 2000])
def test_options_same_bits_for_any_thread_count_and_in_place(backend, rng, n_classes):
    if backend in ("numpy", "cuda"):
        pytest.skip("one implementation: no threads")
    x = make_logits(rng, (300, n_classes), np.float32)
    y = make_targets(rng, (300, n_classes), n_ignore=5)
    sw = rng.random(300)
    kw = dict(sample_weight=sw, z_loss=1e-3, softcap=5.0, return_grad=True, backend=backend)
    one = fastxent.cross_entropy(x, y, num_threads=1, **kw)
    two = fastxent.cross_entropy(x, y, num_threads=2, **kw)
    inplace = x.copy()
    three = fastxent.cross_entropy(inplace, y, num_threads=2, out=inplace, **kw)
    for other in (two, three):
        np.testing.assert_array_equal(one[0], other[0])
        np.testing.assert_array_equal(one[1], other[1])
    assert three[1] is inplace


def test_softcap_bounds_the_logits(rng):
    """A cap of c gives the loss of logits in (-c, c): large logits saturate."""
    x = np.array([[1000.0, 0.0, -1000.0]])
    for backend in ("numpy", "cython", "numba"):
        loss = fastxent.cross_entropy(x, [2], softcap=2.0, backend=backend)
        expected = -np.log(np.exp(-2.0) / (np.exp(2.0) + 1.0 + np.exp(-2.0)))
        assert loss == pytest.approx(expected, rel=1e-12)


def test_tanh_is_accurate():
    """The vectorised tanh of the soft cap, through the kernels: a single class
    with z_loss=1 has loss lse**2 = (c tanh(z / c))**2 exactly, so the capped
    logit comes back; within a few ulps of tanh, across both of its formulas."""
    x = np.concatenate([np.linspace(-3, 3, 20001), np.geomspace(1e-30, 30, 2000),
                        -np.geomspace(1e-30, 30, 200), [0.625, -0.625, 0.0]])
    for dtype in (np.float64, np.float32):
        # (the loss comes back in the dtype: its square must stay normal)
        z = x[(np.abs(x) > 1e-18) | (x == 0)].astype(dtype)[:, None]
        ref = np.tanh(z[:, 0].astype(np.float64))
        ulp = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
        for backend in ("numpy", "cython", "numba"):
            loss = fastxent.cross_entropy(z, np.zeros(len(z), np.int64), softcap=1.0,
                                          z_loss=1.0, reduction="none", backend=backend)
            t = np.copysign(np.sqrt(loss.astype(np.float64)), z[:, 0])
            err = np.abs(t - ref) / np.maximum(ulp, np.finfo(dtype).tiny)
            assert np.max(err) <= 6, (backend, dtype, z[np.argmax(err), 0], np.max(err))


@pytest.mark.parametrize("bad, error, match", [
    (dict(z_loss=-1.0), ValueError, "z_loss"),
    (dict(z_loss=np.nan), ValueError, "z_loss"),
    (dict(z_loss="big"), TypeError, "z_loss"),
    (dict(softcap=0.0), ValueError, "softcap"),
    (dict(softcap=-3.0), ValueError, "softcap"),
    (dict(softcap=np.inf), ValueError, "softcap"),
    (dict(softcap="x"), TypeError, "softcap"),
    (dict(sample_weight=np.ones(3)), ValueError, "sample_weight"),
    (dict(sample_weight=np.ones((4, 1))), ValueError, "sample_weight"),
    (dict(sample_weight=np.array(["a"] * 4)), TypeError, "sample_weight"),
])
def test_bad_options_raise_and_change_nothing(rng, bad, error, match):
    x = make_logits(rng, (4, 6))
    y = make_targets(rng, (4, 6))
    inputs = (x, y)
    snaps = snapshot(*inputs)
    with pytest.raises(error, match=match):
        fastxent.cross_entropy(x, y, return_grad=True, out=x, **bad)
    assert_unchanged(inputs, snaps)
