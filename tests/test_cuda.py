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
SHAPES = [(5, 3), (4, 70), (3, 600), (7,)]
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
    x, t = problem(rng, (3, 600), np.float32)
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
