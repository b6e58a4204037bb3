"""The CUDA backend on device arrays: results stay on the device, match the
float64 NumPy reference (and PyTorch on CUDA tensors), errors come before any
write. Runs on a GPU, and in CI under Numba's CUDA simulator:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda.py

(the simulator runs each GPU thread as a Python thread, so shapes are small).
The whole backend matrix of test_backends.py / test_binary.py also runs
``backend="cuda"`` on NumPy inputs wherever a GPU is present.
"""

import numpy as np
import pytest

import fastxent

STATUS = fastxent.available_backends()["cuda"]
pytestmark = pytest.mark.skipif(not STATUS.available, reason=STATUS.detail)
if STATUS.available:
    from numba import config, cuda
    SIM = bool(config.ENABLE_CUDASIM)

# Short rows (several per warp), rows split over a warp, rows over two warps.
SHAPES = [(5, 3), (4, 70), (2, 300), (7,)]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def on_device(a):
    return cuda.to_device(np.array(a, order="C"))  # keeps 0-d arrays 0-d


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def problem(rng, shape, dtype, n_ignore=0):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    t = rng.integers(0, shape[-1], shape[:-1])
    if n_ignore and t.ndim:
        t[:n_ignore] = -100
    return x, t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", ["plain", "weighted+smoothing+ignore", "sum", "none"])
def test_cross_entropy_index_targets(dtype, shape, case, rng):
    x, t = problem(rng, shape, dtype, n_ignore=1 if "ignore" in case else 0)
    kw = {}
    if "weighted" in case:
        kw = dict(weight=rng.random(shape[-1]).astype(dtype), label_smoothing=0.1)
    if case in ("sum", "none"):
        kw["reduction"] = case
    if case == "none" and len(shape) == 2:
        kw["grad_output"] = on_device(rng.standard_normal(shape[0]))
    loss, grad = fastxent.cross_entropy(on_device(x), on_device(t), return_grad=True, **kw)
    assert hasattr(loss, "copy_to_host") and hasattr(grad, "copy_to_host")
    if "grad_output" in kw:
        kw["grad_output"] = host(kw["grad_output"])
    ref_loss, ref_grad = fastxent.cross_entropy(x, t, return_grad=True, backend="numpy", **kw)
    np.testing.assert_allclose(host(loss), ref_loss, **TOL[dtype])
    np.testing.assert_allclose(host(grad), ref_grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES[:3])
def test_cross_entropy_probabilities(dtype, shape, rng):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    p = rng.random(shape).astype(dtype)
    w = rng.random(shape[-1]).astype(dtype)
    kw = dict(weight=w, label_smoothing=0.2, return_grad=True)
    loss, grad = fastxent.cross_entropy(on_device(x), on_device(p), **kw)
    ref_loss, ref_grad = fastxent.cross_entropy(x, p, backend="numpy", **kw)
    np.testing.assert_allclose(host(loss), ref_loss, **TOL[dtype])
    np.testing.assert_allclose(host(grad), ref_grad, **TOL[dtype])


@pytest.mark.parametrize("targets", ["index", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_without_gradient(targets, reduction, rng):
    # no gradient asked for: no upstream gradient (an empty array) for the kernel to read
    x, t = problem(rng, (5, 3), np.float32)
    if targets == "probabilities":
        t = rng.random(x.shape).astype(np.float32)
    kw = dict(reduction=reduction, label_smoothing=0.1)
    loss = fastxent.cross_entropy(on_device(x), on_device(t), **kw)
    ref = fastxent.cross_entropy(x, t, backend="numpy", **kw)
    assert host(loss).shape == np.shape(ref)
    np.testing.assert_allclose(host(loss), ref, **TOL[np.float32])


@pytest.mark.parametrize("op", ["log_softmax", "softmax", "logsumexp"])
@pytest.mark.parametrize("shape", SHAPES)
def test_transforms(op, shape, rng):
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    x.reshape(-1)[:2] = -np.inf  # an all -inf row (short rows) and a -inf entry
    result = getattr(fastxent, op)(on_device(x))
    expected = getattr(fastxent, op)(x, backend="numpy")
    np.testing.assert_allclose(host(result), expected, **TOL[np.float32])


@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_losses(from_logits, rng):
    shape = (3, 700)  # across two elementwise chunks in the simulator's blocks
    x = rng.standard_normal(shape).astype(np.float32)
    if not from_logits:
        x = 1 / (1 + np.exp(-x))
    y = rng.random(shape).astype(np.float32)
    w = rng.random(shape[-1]).astype(np.float32)
    fn = (fastxent.binary_cross_entropy_with_logits if from_logits
          else fastxent.binary_cross_entropy)
    kw = dict(pos_weight=rng.random(shape[-1]).astype(np.float32)) if from_logits else {}
    for reduction in ("mean", "none"):
        loss, grad = fn(on_device(x), on_device(y), w, reduction=reduction, return_grad=True,
                        **kw)
        ref_loss, ref_grad = fn(x, y, w, reduction=reduction, return_grad=True,
                                backend="numpy", **kw)
        np.testing.assert_allclose(host(loss), ref_loss, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(host(grad), ref_grad, rtol=2e-5, atol=1e-7)


BINARY = ["binary_cross_entropy", "binary_cross_entropy_with_logits"]


@pytest.mark.parametrize("name,shape", [("cross_entropy", (0, 3))]
                         + [(name, shape) for name in BINARY for shape in [(0,), (2, 0)]])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_empty_batch_with_device_grad_output(name, shape, reduction):
    x = np.zeros(shape, np.float32)
    t = np.zeros(shape[:-1], np.int64) if name == "cross_entropy" else x
    loss_shape = np.shape(fastxent.cross_entropy(x, t, reduction="none", backend="numpy")
                          if name == "cross_entropy" else x)
    go = np.zeros(loss_shape if reduction == "none" else ())
    fn = getattr(fastxent, name)
    loss, grad = fn(on_device(x), on_device(t), reduction=reduction, return_grad=True,
                    grad_output=on_device(go))
    ref_loss, ref_grad = fn(x, t, reduction=reduction, return_grad=True, grad_output=go,
                            backend="numpy")
    for got, ref in ((loss, ref_loss), (grad, ref_grad)):
        assert host(got).shape == np.shape(ref) and host(got).dtype == np.asarray(ref).dtype
        np.testing.assert_array_equal(host(got), ref)


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_binary_losses_of_a_scalar(name, reduction):
    x, y = np.array(0.46), np.array(0.3)
    fn = getattr(fastxent, name)
    loss, grad = fn(on_device(x), on_device(y), reduction=reduction, return_grad=True)
    ref_loss, ref_grad = fn(x, y, reduction=reduction, return_grad=True, backend="numpy")
    for got, ref in ((loss, ref_loss), (grad, ref_grad)):
        assert host(got).shape == ()
        np.testing.assert_allclose(host(got), ref, **TOL[np.float64])


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("go_shape", [(), (1,), (2, 3)])
@pytest.mark.parametrize("go_on_device", [False, True], ids=["host", "device"])
def test_binary_grad_output_with_reduction_none(name, go_shape, go_on_device, rng):
    # a scalar or an array of the loss's (= input's) shape, which may have several axes
    x, y = rng.random((2, 3)), rng.random((2, 3))
    go = rng.standard_normal(go_shape)
    fn = getattr(fastxent, name)
    _, grad = fn(on_device(x), on_device(y), reduction="none", return_grad=True,
                 grad_output=on_device(go) if go_on_device else go)
    _, ref = fn(x, y, reduction="none", return_grad=True, grad_output=go, backend="numpy")
    np.testing.assert_allclose(host(grad), ref, **TOL[np.float64])
    with pytest.raises(ValueError, match=r"grad_output of shape \(6,\)"):
        fn(on_device(x), on_device(y), reduction="none", return_grad=True,
           grad_output=on_device(go.reshape(-1)) if go.size == 6 else np.ones(6))


def test_gradient_in_place(rng):
    x, t = problem(rng, (4, 70), np.float32)
    _, expected = fastxent.cross_entropy(x, t, return_grad=True, backend="numpy")
    dx = on_device(x)
    _, grad = fastxent.cross_entropy(dx, on_device(t), return_grad=True, out=dx)
    assert grad is dx
    np.testing.assert_allclose(host(dx), expected, **TOL[np.float32])


def test_bad_label_raises_before_writing(rng):
    x, t = problem(rng, (4, 70), np.float32)
    t[2] = 70
    out = on_device(np.full(x.shape, 7.0, np.float32))
    with pytest.raises(IndexError, match=r"target value 70 at index \(2,\)"):
        fastxent.cross_entropy(on_device(x), on_device(t), return_grad=True, out=out)
    assert (host(out) == 7.0).all()


def test_probabilities_out_of_range_raise(rng):
    x = np.full((2, 3), 0.5, np.float32)
    y = x.copy()
    y[1, 2] = 1.5
    with pytest.raises(ValueError, match=r"target of binary_cross_entropy .* 1.5 at index \(1, 2\)"):
        fastxent.binary_cross_entropy(on_device(x), on_device(y))


def test_same_bits_every_run(rng):
    x, t = problem(rng, (2, 300), np.float32)
    runs = [fastxent.cross_entropy(on_device(x), on_device(t), return_grad=True,
                                   label_smoothing=0.1) for _ in range(2)]
    assert host(runs[0][0]).tobytes() == host(runs[1][0]).tobytes()
    assert host(runs[0][1]).tobytes() == host(runs[1][1]).tobytes()


def test_cpu_backend_refuses_device_arrays(rng):
    x, t = problem(rng, (2, 3), np.float32)
    with pytest.raises(TypeError, match="CUDA array"):
        fastxent.cross_entropy(on_device(x), on_device(t), backend="numpy")


# ------------------------------------------------------------- PyTorch CUDA tensors

def _torch_cuda():
    if not STATUS.available or SIM:
        return None
    torch = pytest.importorskip("torch")
    return torch if torch.cuda.is_available() else None


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("shape", [(64, 10), (33, 1000), (8, 40000)])
def test_torch_tensors_match_torch(dtype, shape):
    torch = _torch_cuda()
    if torch is None:
        pytest.skip("needs PyTorch with a CUDA device (not the simulator)")
    import torch.nn.functional as F
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = (3 * torch.randn(shape, device="cuda", generator=gen)).to(getattr(torch, dtype))
    t = torch.randint(0, shape[1], (shape[0],), device="cuda", generator=gen)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # work is issued on PyTorch's current stream
        loss, grad = fastxent.cross_entropy(x, t, return_grad=True, label_smoothing=0.1)
    stream.synchronize()
    assert isinstance(grad, torch.Tensor) and grad.dtype == x.dtype and grad.is_cuda
    assert loss.shape == () and loss.is_cuda
    x64 = x.double().requires_grad_(True)
    ref = F.cross_entropy(x64, t, label_smoothing=0.1)
    ref.backward()
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert abs(float(loss) - float(ref)) <= tol * abs(float(ref))
    gtol = {"float16": 2e-3, "bfloat16": 1.6e-2}.get(dtype, tol)
    assert torch.allclose(grad.double(), x64.grad, rtol=gtol, atol=gtol * float(x64.grad.abs().max()))


# ------------------------------------------------------------- z_loss, softcap, evaluate
# The kernels through the "cuda" backend's NumPy interface (_host) against
# _reference's kernels; the front end for CUDA arrays (_device) against the
# normalisation of the API written out in float64.

def _kernels():
    from fastxent import _reference
    from fastxent._cuda import _host
    return _reference, _host


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


# Short rows (several per warp), a row per warp, rows over two blocks' warps.
KERNEL_CASES = [((6, 5), np.float32), ((6, 5), np.float64), ((3, 70), np.float32),
                ((3, 70), np.float64), ((2, 300), np.float32)]
OPTIONS = {"z_loss": dict(z_loss=0.05), "all": dict(z_loss=0.3, softcap=2.0, weighted=True,
                                                    smoothing=0.1)}


def _kernel_call(module, kind, x, target, w, options, grad_scale, grad):
    loss = np.empty(x.shape[0])
    eps, z_loss, cap = options.get("smoothing", 0.0), options["z_loss"], options.get("softcap", 0.0)
    if kind == "index":
        module.xent_index_serial(x, target, w, eps, -100, z_loss, cap, grad_scale, loss, grad, 1)
    else:
        module.xent_probs_serial(x, target, w, eps, z_loss, cap, grad_scale, loss, grad, 1)
    return loss


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("shape,dtype", KERNEL_CASES)
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_kernels_z_loss_and_softcap(kind, shape, dtype, options, rng):
    reference, host_kernels = _kernels()
    options = OPTIONS[options]
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    x[0, 0] = -np.inf  # capped to -softcap, with slope 0
    if kind == "index":
        target = rng.integers(0, shape[1], shape[0])
        target[1] = -100
    else:
        target = rng.random(shape).astype(dtype)
    w = (rng.random(shape[1]).astype(dtype) if options.get("weighted")
         else np.empty(0, dtype))
    grad_scale = rng.standard_normal(shape[0])
    results = []
    for module in (reference, host_kernels):
        grad = np.empty(shape, dtype)
        results.append((_kernel_call(module, kind, x, target, w, options, grad_scale, grad),
                        grad))
    (ref_loss, ref_grad), (loss, grad) = results
    np.testing.assert_allclose(loss, ref_loss, **_tol(dtype))
    np.testing.assert_allclose(grad, ref_grad, **_tol(dtype))
    if kind == "index":
        assert loss[1] == 0 and (grad[1] == 0).all()


@pytest.mark.parametrize("kind", ["index", "probs"])
def test_kernels_in_place_gradient_with_softcap(kind, rng):
    """grad_out is the logits: every thread reads before the row is written."""
    _, host_kernels = _kernels()
    x = (3 * rng.standard_normal((3, 70))).astype(np.float32)
    target = (rng.integers(0, 70, 3) if kind == "index" else
              rng.random(x.shape).astype(np.float32))
    options = dict(z_loss=0.1, softcap=3.0)
    grad = np.empty_like(x)
    loss = _kernel_call(host_kernels, kind, x, target, np.empty(0, np.float32), options,
                        np.ones(3), grad)
    # on the device: the same array in and out
    z = on_device(x)
    from fastxent._cuda import _launch as L
    loss_dev = cuda.device_array(3)
    empty = L.empty(np.float64)
    if kind == "index":
        L.xent_index(z, on_device(target), L.empty(np.float32), 0.0, -100, 0.1, 3.0,
                     on_device(np.ones(1)), empty, 1.0, loss_dev, z, 0)
    else:
        L.xent_probs(z, on_device(target), L.empty(np.float32), 0.0, 0.1, 3.0,
                     on_device(np.ones(1)), empty, 1.0, loss_dev, z, 0)
    assert host(z).tobytes() == grad.tobytes()
    assert host(loss_dev).tobytes() == loss.tobytes()


def _special_rows(rng, n_classes, dtype):
    """Rows of ties, -inf, NaN and +inf, and an ignored one."""
    x = rng.integers(-2, 3, (8, n_classes)).astype(dtype)  # many ties
    x[0] = -np.inf
    x[1, ::3] = -np.inf
    x[2, [n_classes // 2, n_classes - 1]] = np.nan
    x[3, 1] = np.inf
    x[4, [0, 2]] = [np.inf, np.nan]
    x[5] = np.nan
    y = rng.integers(0, n_classes, 8)
    y[2] = n_classes // 2  # a NaN target
    y[6] = -100
    return x, y


def _evaluate(module, x, y, w):
    """Each row's values, then the block sums (blocks of 4 rows, top-1 and top-3)."""
    n = x.shape[0]
    outs = [np.empty(n), np.empty(n), np.empty(n), np.empty(n, np.int64), np.empty(n, np.int64)]
    sums = np.empty((-(-n // 4), 9))
    module.evaluate_serial(x, y, w, np.linspace(0.5, 2.0, n), -100, np.array([1, 3]), 4, sums,
                           *outs, 1)
    return outs + [sums]


def _assert_evaluate(outs, ref, dtype):
    for name, a, b in zip(("loss", "lse", "entropy"), outs, ref):
        np.testing.assert_allclose(a, b, err_msg=name, **_tol(dtype))
    for name, a, b in zip(("argmax", "rank"), outs[3:5], ref[3:5]):
        np.testing.assert_array_equal(a, b, err_msg=name)
    if len(outs) > 5:
        np.testing.assert_allclose(outs[5], ref[5], err_msg="block sums", **_tol(dtype))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes the NaNs
@pytest.mark.parametrize("n_classes,dtype", [(5, np.float64), (70, np.float32),
                                             (300, np.float32)])
def test_evaluate_kernel(n_classes, dtype, rng):
    reference, host_kernels = _kernels()
    x, y = _special_rows(rng, n_classes, dtype)
    if n_classes == 300:  # two warps: the ordinary rows and a tie across them
        x, y = x[[1, 2, 6, 7]], y[[1, 2, 6, 7]]
        x[3, [10, 200]] = 5.0
        y[3] = 10
    w = rng.random(n_classes).astype(dtype)
    ref = _evaluate(reference, x, y, w)
    _assert_evaluate(_evaluate(host_kernels, x, y, w), ref, dtype)
    if n_classes == 300:
        assert ref[3][3] == 10 and ref[4][3] == 1  # the first max; the tie at 200 first


# ------------------------------------------------------------- the device front end

def _xent64(x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
            sample_weight=None, z_loss=0.0, softcap=0.0, grad_output=None):
    """Loss and gradient in float64 from _reference's kernels, normalised as the
    API documents: mean = sum sw CE / D1 + z_loss sum sw lse**2 / D2."""
    reference, _ = _kernels()
    x = np.asarray(x, np.float64)
    rows = x.reshape(-1, x.shape[-1])
    n_rows, n_classes = rows.shape
    w = np.empty(0) if weight is None else np.asarray(weight, np.float64)
    sw = np.ones(n_rows) if sample_weight is None else np.asarray(sample_weight,
                                                                   np.float64).reshape(-1)
    probabilities = np.asarray(t).dtype.kind == "f"
    if probabilities:
        target = np.asarray(t, np.float64).reshape(rows.shape)
        kept = np.ones(n_rows, bool)
        d1 = d2 = sw.sum()
    else:
        target = np.asarray(t).reshape(-1).astype(np.int64)
        kept = target != ignore_index
        wy = w[target[kept]] if w.size else 1.0
        d1, d2 = np.sum(sw[kept] * wy), np.sum(sw[kept])
    go = np.broadcast_to(np.float64(1.0 if grad_output is None else grad_output),
                         x.shape[:-1]).reshape(-1)
    ce, grad = np.empty(n_rows), np.empty(rows.shape)
    scale = {"mean": go * sw / d1, "sum": go * sw, "none": go * sw}[reduction]
    args = (w, label_smoothing) + ((ignore_index,) if not probabilities else ())
    kernel = reference.xent_probs_serial if probabilities else reference.xent_index_serial
    kernel(rows, target, *args, 0.0, softcap, scale, ce, grad, 1)
    capped = softcap * np.tanh(rows / softcap) if softcap else rows
    lse = reference._lse_rows(capped)
    zl_scale = {"mean": go * sw / d2, "sum": go * sw, "none": go * sw}[reduction]
    slope = 1 - np.tanh(rows / softcap) ** 2 if softcap else 1.0
    p = np.exp(capped - lse[:, None])
    grad += np.where(kept[:, None], 2 * z_loss * (zl_scale * lse)[:, None] * p * slope, 0.0)
    zl = np.where(kept, z_loss * lse * lse, 0.0)
    if reduction == "none":
        loss = (sw * (ce + zl)).reshape(x.shape[:-1])
    elif reduction == "sum":
        loss = np.sum(sw * (ce + zl))
    else:
        loss = np.sum(sw * ce) / d1 + np.sum(sw * zl) / d2
    return loss, grad.reshape(x.shape)


def _device_xent(x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                 return_grad=True, grad_output=None, out=None, sample_weight=None, z_loss=0.0,
                 softcap=0.0):
    """_device.cross_entropy with the arguments of the API (which passes them so)."""
    from fastxent._cuda import _device
    return _device.cross_entropy(x, t, weight, ignore_index, reduction, label_smoothing,
                                 return_grad, grad_output, out, sample_weight, z_loss, softcap)


DEVICE_CASES = {
    "index mean": dict(reduction="mean", weighted=True, sw="host"),
    "index sum": dict(reduction="sum", sw="device", smoothing=0.1),
    "index none": dict(reduction="none", weighted=True, sw="device", grad_output=True),
    "probs mean": dict(reduction="mean", probs=True, weighted=True, sw="device"),
    "probs none": dict(reduction="none", probs=True, sw="host", softcap=0.0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(DEVICE_CASES))
def test_device_sample_weight_z_loss_softcap(case, dtype, rng):
    spec = DEVICE_CASES[case]
    shape = (6, 9)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    if spec.get("probs"):
        t = rng.random(shape).astype(dtype)
    else:
        t = rng.integers(0, shape[1], shape[0])
        t[2] = -100
    kw = dict(reduction=spec["reduction"], z_loss=0.02, softcap=spec.get("softcap", 4.0),
              label_smoothing=spec.get("smoothing", 0.0))
    if spec.get("weighted"):
        kw["weight"] = rng.random(shape[1]).astype(dtype) + 0.5
    sw = (rng.random(shape[0]) * 2).astype(np.float32).astype(np.float64)  # float32 on the device
    if spec.get("grad_output"):
        kw["grad_output"] = rng.standard_normal(shape[0])
    ref_loss, ref_grad = _xent64(x, t, sample_weight=sw, **kw)
    if spec.get("grad_output"):
        kw["grad_output"] = on_device(kw["grad_output"])
    dev_sw = on_device(sw.astype(np.float32)) if spec["sw"] == "device" else sw
    loss, grad = _device_xent(on_device(x), on_device(t), sample_weight=dev_sw, **kw)
    np.testing.assert_allclose(host(loss), ref_loss, **TOL[dtype])
    np.testing.assert_allclose(host(grad), ref_grad, **TOL[dtype])
    if not spec.get("probs"):
        assert spec["reduction"] != "none" or host(loss)[2] == 0
        assert (host(grad)[2] == 0).all()


def test_device_options_off_change_nothing(rng):
    """z_loss 0, softcap 0 and sample weights of 1: the same bits as without."""
    x, t = problem(rng, (4, 20), np.float32, n_ignore=1)
    plain = _device_xent(on_device(x), on_device(t), label_smoothing=0.1)
    ones = _device_xent(on_device(x), on_device(t), label_smoothing=0.1,
                        sample_weight=np.ones(4))
    for a, b in zip(plain, ones):
        assert host(a).tobytes() == host(b).tobytes()


def test_device_in_place_with_softcap_and_sample_weight(rng):
    x, t = problem(rng, (4, 70), np.float32)
    kw = dict(z_loss=0.01, softcap=5.0, sample_weight=rng.random(4))
    _, expected = _device_xent(on_device(x), on_device(t), **kw)
    dx = on_device(x)
    _, grad = _device_xent(dx, on_device(t), out=dx, **kw)
    assert grad is dx
    assert host(dx).tobytes() == host(expected).tobytes()


def test_device_bad_sample_weight_raises_before_writing(rng):
    x, t = problem(rng, (4, 7), np.float32)
    out = on_device(np.full(x.shape, 7.0, np.float32))
    with pytest.raises(ValueError, match=r"sample_weight must have the target's shape \(4,\)"):
        _device_xent(on_device(x), on_device(t), out=out, sample_weight=np.ones(3))
    with pytest.raises(TypeError, match="sample_weight"):
        _device_xent(on_device(x), on_device(t), out=out, sample_weight=np.array(["a"] * 4))
    assert (host(out) == 7.0).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("on_host", [False, True], ids=["device target", "host target"])
def test_device_evaluate_rows(on_host, rng):
    from fastxent._cuda import _device
    reference, _ = _kernels()
    x, y = _special_rows(rng, 6, np.float32)
    y = y.astype(np.int32)
    w = rng.random(6).astype(np.float32)
    sw = rng.random(8)
    rows = _device.evaluate_rows(on_device(x), y if on_host else on_device(y), w, -100,
                                 sw if on_host else on_device(sw))
    assert set(rows) == {"labels", "loss", "lse", "entropy", "argmax", "rank", "sample_weight",
                         "class_weight"}
    assert all(isinstance(a, np.ndarray) for a in rows.values())
    assert (rows["class_weight"] == w).all() and rows["class_weight"].dtype == np.float64
    assert rows["labels"].dtype == np.int64 and (rows["labels"] == y).all()
    assert rows["sample_weight"].dtype == np.float64 and (rows["sample_weight"] == sw).all()
    ref = _evaluate(reference, x, y, w)
    _assert_evaluate([rows[k] for k in ("loss", "lse", "entropy", "argmax", "rank")], ref,
                     np.float32)
    assert rows["rank"].dtype == np.int64 and rows["argmax"].dtype == np.int64


def test_device_evaluate_rows_one_sample_and_errors(rng):
    from fastxent._cuda import _device
    x = np.float32([0.5, 2.0, 2.0, -1.0])
    rows = _device.evaluate_rows(on_device(x), on_device(np.array(1)), None, -100, None)
    assert rows["labels"].tolist() == [1] and rows["sample_weight"] is None
    assert rows["class_weight"] is None
    assert rows["argmax"].tolist() == [1] and rows["rank"].tolist() == [1]
    x, t = problem(rng, (4, 7), np.float32)
    t[3] = 7
    with pytest.raises(IndexError, match=r"target value 7 at index \(3,\)"):
        _device.evaluate_rows(on_device(x), on_device(t), None, -100, None)
    with pytest.raises(ValueError, match="sample_weight must have the target's shape"):
        _device.evaluate_rows(on_device(x), t, None, -100, np.ones((4, 1)))
    with pytest.raises(TypeError, match="class indices"):
        _device.evaluate_rows(on_device(x), on_device(x), None, -100, None)
    with pytest.raises(ValueError, match=r"logits must have shape \(C,\) or \(N, C\)"):
        _device.evaluate_rows(on_device(x.reshape(4, 7, 1)), on_device(t.reshape(4, 1)), None,
                              -100, None)


# ------------------------------------------------------------- the public API on CUDA arrays

def test_api_sample_weight_z_loss_softcap(rng):
    x, t = problem(rng, (6, 9), np.float32, n_ignore=1)
    sw = rng.random(6)
    for reduction, sample_weight in (("mean", on_device(sw)), ("none", sw)):
        kw = dict(weight=rng.random(9).astype(np.float32) + 0.5, reduction=reduction,
                  z_loss=0.02, softcap=4.0, return_grad=True)
        loss, grad = fastxent.cross_entropy(on_device(x), on_device(t),
                                            sample_weight=sample_weight, **kw)
        ref_loss, ref_grad = fastxent.cross_entropy(x, t, sample_weight=sw, backend="numpy",
                                                    **kw)
        np.testing.assert_allclose(host(loss), ref_loss, **TOL[np.float32])
        np.testing.assert_allclose(host(grad), ref_grad, **TOL[np.float32])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_api_evaluate(rng):
    x, t = problem(rng, (6, 9), np.float32, n_ignore=1)
    x[4] = x[4, 0]  # a row of ties
    kw = dict(topk=(1, 3), weight=rng.random(9).astype(np.float32),
              sample_weight=rng.random(6))
    result = fastxent.evaluate(on_device(x), on_device(t), per_sample=True, **kw)
    expected = fastxent.evaluate(x, t, backend="numpy", per_sample=True, **kw)
    assert result.keys() == expected.keys()
    each, expected_each = result.pop("per_sample"), expected.pop("per_sample")
    assert each.keys() == expected_each.keys()
    for name in ("argmax", "correct", "rank"):
        np.testing.assert_array_equal(each[name], expected_each[name], err_msg=name)
    for name in ("loss", "entropy", "logsumexp"):
        np.testing.assert_allclose(each[name], expected_each[name], rtol=1e-6, atol=1e-6,
                                   err_msg=name)
    assert result["top_k_accuracy"] == expected["top_k_accuracy"]
    assert result["accuracy"] == expected["accuracy"]
    assert result["n_samples"] == expected["n_samples"]
    for name in ("loss", "entropy", "logsumexp"):
        np.testing.assert_allclose(result[name], expected[name], rtol=1e-6)
