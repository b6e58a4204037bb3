"""Shared fixtures, problem builders, tolerances and two independent oracles.

- ``oracle_xent``: float64 loss and gradient written from the formulas of
  ``torch.nn.functional.cross_entropy`` on top of ``scipy.special``; it shares
  no code with fastxent.
- ``torch_xent``: PyTorch itself (autograd), in the dtype it is given.
"""

import os
import sys

import numpy as np
import pytest

import fastxent
from fastxent import _backends

BACKENDS = tuple(_backends._LOADERS)
FLOATS = (np.float32, np.float64)
EPS = {np.dtype(np.float16): float(np.finfo(np.float16).eps),
       np.dtype(np.float32): float(np.finfo(np.float32).eps),
       np.dtype(np.float64): float(np.finfo(np.float64).eps)}
# Plain elementwise tolerances (assert_allclose kwargs) for "same math, other
# rounding" comparisons; the accuracy bar of API.md is ``assert_accurate``.
TOL = {np.dtype(np.float16): dict(rtol=2e-3, atol=2e-3),
       np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6),
       np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13)}
for _t in FLOATS + (np.float16,):
    TOL[_t] = TOL[np.dtype(_t)]
    EPS[_t] = EPS[np.dtype(_t)]


# Opt-in tests: marker -> what they need.
OPT_IN = {"big": "arrays of more than 2**31 elements (about 20 GiB of memory, minutes)",
          "slow": "minutes of calls (10**5 per function and backend)"}


def pytest_addoption(parser):
    for marker, needs in OPT_IN.items():
        parser.addoption(f"--run-{marker}", action="store_true",
                         help=f"also run the tests marked {marker}: {needs}")


def pytest_collection_modifyitems(config, items):
    for marker in OPT_IN:
        if config.getoption(f"--run-{marker}"):
            continue
        skip = pytest.mark.skip(reason=f"opt-in ({marker}): run with --run-{marker}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def pytest_configure(config):
    for marker, needs in OPT_IN.items():
        config.addinivalue_line("markers", f"{marker}: needs {needs}; skipped unless "
                                           f"--run-{marker}")
    # "auto" warns once that it falls back from cython to numpy: expected
    # while the extension is not built, noise in the summary otherwise.
    config.addinivalue_line(
        "filterwarnings", "ignore:fastxent. the 'cython' backend is unavailable:RuntimeWarning")
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        # The simulator runs each GPU thread as a Python thread and its launcher
        # polls them all: with the GIL handed over every 0.5 ms instead of 5 ms
        # a launch ends about 5 times sooner.
        sys.setswitchinterval(5e-4)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every registered backend; one that cannot run here skips, saying why."""
    status = fastxent.available_backends()[request.param]
    if not status.available:
        pytest.skip(f"backend {request.param!r} unavailable: {status.detail}")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def class_axis(shape):
    return 0 if len(shape) == 1 else 1


def batch_shape(shape):
    ax = class_axis(shape)
    return tuple(shape[:ax]) + tuple(shape[ax + 1:])


def make_logits(rng, shape, dtype=np.float64, scale=3.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def make_targets(rng, shape, *, n_ignore=0, ignore_index=-100, dtype=np.int64):
    """Class indices for logits of ``shape``; ``n_ignore`` of them set to ignore_index."""
    n_classes = shape[class_axis(shape)]
    t = rng.integers(0, n_classes, size=batch_shape(shape))
    if n_ignore and t.size:
        flat = t.reshape(-1)
        flat[rng.choice(t.size, size=min(n_ignore, t.size), replace=False)] = ignore_index
    return t.astype(dtype)


def make_probs(rng, shape, dtype=np.float64):
    """Random class probabilities of ``shape`` (rows sum to 1 along the class axis)."""
    p = rng.random(shape) + 0.05
    p /= p.sum(axis=class_axis(shape), keepdims=True)
    return p.astype(dtype)


def make_problem(rng, shape, dtype=np.float64, *, targets="index", n_ignore=0,
                 ignore_index=-100, scale=3.0):
    """(logits, target) for input ``shape``: class indices or probabilities."""
    logits = make_logits(rng, shape, dtype, scale)
    if targets == "index":
        return logits, make_targets(rng, shape, n_ignore=n_ignore, ignore_index=ignore_index)
    return logits, make_probs(rng, shape, dtype)


def make_weight(rng, n_classes, dtype=np.float64):
    return (0.25 + 2 * rng.random(n_classes)).astype(dtype)


def compute_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def snapshot(*arrays):
    """Byte copies, to check later that nothing was modified."""
    return [None if a is None else (np.asarray(a).copy(), np.asarray(a).tobytes())
            for a in arrays]


def assert_unchanged(arrays, snaps):
    for a, s in zip(arrays, snaps):
        if a is not None:
            assert np.asarray(a).tobytes() == s[1], "an argument was modified"


# --------------------------------------------------------------------------
# Oracle 1: float64, torch's formulas, scipy.special for log-softmax.
# --------------------------------------------------------------------------

def oracle_xent(logits, target, weight=None, *, ignore_index=-100, reduction="mean",
                label_smoothing=0.0, grad_output=None):
    """float64 ``(loss, grad, grad_unit)``, semantics of torch's cross_entropy.

    ``grad_unit`` is the largest |row scale x class weight|: the magnitude a
    gradient error is measured against.
    """
    from scipy.special import log_softmax, softmax

    x = np.asarray(logits).astype(np.float64)
    ax = class_axis(x.shape)
    n_classes = x.shape[ax]
    moved_shape = batch_shape(x.shape) + (n_classes,)
    z = np.moveaxis(x, ax, -1).reshape(-1, n_classes)
    n = z.shape[0]
    with np.errstate(all="ignore"):
        logp = log_softmax(z, axis=1)
        p = softmax(z, axis=1)
    # torch computes z - max: a +inf logit gives inf - inf = nan across its row.
    logp[np.isposinf(z).any(axis=1)] = np.nan
    p[np.isposinf(z).any(axis=1)] = np.nan
    w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    eps = float(label_smoothing)
    target = np.asarray(target)
    with np.errstate(all="ignore"):
        if target.dtype.kind == "f":
            q = np.moveaxis(target.astype(np.float64), ax, -1).reshape(-1, n_classes)
            if eps > 0:
                q = q * (1 - eps) + eps / n_classes
            wq = q * w
            loss = -np.sum(wq * logp, axis=1)
            denom = float(n)
        else:
            t = target.reshape(-1).astype(np.int64)
            kept = t != ignore_index
            tk = np.where(kept, t, 0)
            r = np.arange(n)
            # nll_loss picks one entry: no 0 * -inf from the other classes.
            loss = np.where(kept, -w[tk] * logp[r, tk], 0.0)
            wq = np.zeros((n, n_classes))
            wq[r[kept], t[kept]] = w[t[kept]]
            if eps > 0:
                smooth = np.where(kept, -np.sum(logp * w, axis=1), 0.0)
                loss = (1 - eps) * loss + eps / n_classes * smooth
                wq = (1 - eps) * wq + np.where(kept[:, None], eps / n_classes * w, 0.0)
            denom = float(np.sum(w[t[kept]]))
        if reduction == "none":
            go = np.ones(batch_shape(x.shape)) if grad_output is None else grad_output
            row_scale = np.broadcast_to(np.asarray(go, np.float64),
                                        batch_shape(x.shape)).reshape(-1)
            out_loss = loss.reshape(batch_shape(x.shape))
        else:
            go = np.float64(1.0 if grad_output is None else grad_output)
            factor = go / denom if reduction == "mean" else go
            row_scale = np.full(n, factor)
            out_loss = np.sum(loss) / np.float64(denom) if reduction == "mean" else np.sum(loss)
        g = row_scale[:, None] * (np.sum(wq, axis=1, keepdims=True) * p - wq)
        if target.dtype.kind != "f":
            g[~kept] = 0.0  # nll_loss gives ignored targets no gradient at all
    grad = np.moveaxis(g.reshape(moved_shape), -1, ax)
    finite_scale = np.abs(row_scale[np.isfinite(row_scale)])
    grad_unit = (float(finite_scale.max()) if finite_scale.size else 0.0) * float(np.max(w))
    return out_loss, grad, grad_unit


# --------------------------------------------------------------------------
# Oracle 2: PyTorch, autograd, in the dtype given.
# --------------------------------------------------------------------------

def torch_xent(logits, target, weight=None, *, ignore_index=-100, reduction="mean",
               label_smoothing=0.0, grad_output=None):
    """(loss, grad) as NumPy arrays from torch.nn.functional.cross_entropy + backward."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xa = np.asarray(logits)
    x = torch.tensor(xa.astype(xa.dtype.newbyteorder("="), order="C"), requires_grad=True)
    target = np.asarray(target)
    if target.dtype.kind == "f":
        t = torch.tensor(np.ascontiguousarray(target, dtype=x.detach().numpy().dtype))
    else:
        t = torch.tensor(np.array(target, dtype=np.int64, order="C"))  # (0-d stays 0-d)
    w = None if weight is None else torch.tensor(
        np.ascontiguousarray(weight, dtype=x.detach().numpy().dtype))
    loss = F.cross_entropy(x, t, w, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)
    if grad_output is None:
        go = torch.ones_like(loss)
    else:
        go = torch.tensor(np.broadcast_to(np.asarray(grad_output, np.float64), loss.shape)
                          .astype(x.detach().numpy().dtype))
    if x.numel():
        loss.backward(go)
        grad = x.grad.numpy()
    else:
        grad = np.zeros(x.shape, x.detach().numpy().dtype)
    return loss.detach().numpy(), grad


# --------------------------------------------------------------------------
# The accuracy bar of API.md.
# --------------------------------------------------------------------------

def assert_same_nonfinite(ours, ref, what=""):
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{what}: nan pattern")
    inf = np.isinf(ref)
    np.testing.assert_array_equal(ours[inf], ref[inf], err_msg=f"{what}: inf values")
    np.testing.assert_array_equal(np.isinf(ours), inf, err_msg=f"{what}: inf pattern")


def max_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    fin = np.isfinite(b) & np.isfinite(a)
    return float(np.max(np.abs(a[fin] - b[fin]), initial=0.0))


def assert_accurate(ours, ref, dtype, *, unit, zmax, torch_val=None, what=""):
    """``ours`` (computed in ``dtype``) is as accurate as API.md asks.

    float64: within 1e-12 relative of the float64 oracle, or a few ulps of
    ``unit * (1 + zmax)`` absolute (a loss near 0 is ``lse - z[y]``: it cancels).
    float32: max abs error at most 1.5x torch float32's max abs error, plus
    4 float32 ulps of ``max|ref| + unit * (1 + zmax)``: the slack lets either
    side be lucky by an ulp or two without letting a lost digit through.
    """
    assert_same_nonfinite(ours, ref, what)
    if not np.isfinite(unit):  # e.g. a mean over a nan weight: only exact zeros stay finite
        unit = 1.0
    o = np.asarray(ours, np.float64)
    r = np.asarray(ref, np.float64)
    fin = np.isfinite(r)
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        bound = 1e-12 * np.abs(r[fin]) + 8 * EPS[dtype] * unit * (1 + zmax)
        err = np.abs(o[fin] - r[fin])
        assert np.all(err <= bound), (
            f"{what}: float64 error {err.max():.3g} above bound at "
            f"{np.argmax(err - bound)} (bound {bound.max():.3g})")
    else:
        assert torch_val is not None
        ours_err = max_err(o, r)
        torch_err = max_err(torch_val, r)
        rmax = float(np.max(np.abs(r[fin]), initial=0.0))
        floor = 4 * EPS[dtype] * (rmax + unit * (1 + zmax))
        assert ours_err <= 1.5 * torch_err + floor, (
            f"{what}: {dtype} error {ours_err:.3g} vs torch's {torch_err:.3g} "
            f"(allowed {1.5 * torch_err + floor:.3g})")


def logit_scale(x):
    x = np.asarray(x, np.float64)
    fin = np.isfinite(x)
    return float(np.max(np.abs(x[fin]), initial=0.0))


def check_xent(x, target, weight=None, *, backend, num_threads=None, reductions=("mean", "sum", "none"),
               grad_output=None, use_torch=True, **kw):
    """Every reduction's loss and grad against the float64 oracle and torch.

    Returns {reduction: (loss, grad)} for further checks.
    """
    x_dtype = np.asarray(x).dtype
    comp = compute_dtype(x_dtype)
    zmax = logit_scale(x)
    results = {}
    for reduction in reductions:
        go = grad_output
        if isinstance(go, dict):
            go = go[reduction]
        loss, grad = fastxent.cross_entropy(x, target, weight, reduction=reduction,
                                            return_grad=True, grad_output=go,
                                            backend=backend, num_threads=num_threads, **kw)
        loss_only = fastxent.cross_entropy(x, target, weight, reduction=reduction,
                                           backend=backend, num_threads=num_threads, **kw)
        what = f"{reduction} {x_dtype} {np.shape(x)}"
        # Types and shapes of API.md.
        assert grad.shape == np.shape(x) and grad.dtype == (x_dtype if x_dtype.kind == "f" else comp)
        if reduction == "none":
            assert isinstance(loss, np.ndarray) and loss.dtype == comp
            assert loss.shape == batch_shape(np.shape(x))
        else:
            assert isinstance(loss, np.floating) and loss.dtype == comp, type(loss)
        assert np.asarray(loss_only).dtype == comp

        ref_loss, ref_grad, unit = oracle_xent(x, target, weight, reduction=reduction,
                                               grad_output=go, **kw)
        loss_unit = 1.0 if weight is None else float(np.max(np.abs(weight)))
        t_loss = t_grad = None
        if use_torch and x_dtype in (np.float32, np.float64):
            t_loss, t_grad = torch_xent(x, target, weight, reduction=reduction,
                                        grad_output=go, **kw)
            # Same values as torch, same dtype: nan/inf where torch has them.
            assert_same_nonfinite(loss, t_loss, what + " loss vs torch")
            assert_same_nonfinite(grad, t_grad, what + " grad vs torch")
        if comp == np.float64 or t_loss is not None:
            assert_accurate(loss, ref_loss, comp, unit=loss_unit, zmax=zmax, torch_val=t_loss,
                            what=what + " loss")
            assert_accurate(loss_only, ref_loss, comp, unit=loss_unit, zmax=zmax,
                            torch_val=t_loss, what=what + " loss only")
            assert_accurate(grad, ref_grad, comp, unit=unit, zmax=zmax, torch_val=t_grad,
                            what=what + " grad")
        else:  # float16 input: computed in float32, the gradient rounded to float16
            assert_same_nonfinite(loss, ref_loss, what)
            np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-5 * (1 + zmax))
            np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=1e-3,
                                       atol=1e-3 * unit)
        results[reduction] = (loss, grad)
    return results
