"""fastxent.torch against PyTorch itself: values, gradients (autograd and finite
differences), modules, training steps, the in-place mode and its refusals,
errors, and torch.compile."""

import copy
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastxent.torch as ft  # noqa: E402

FLOAT_DTYPES = (torch.float64, torch.float32)
CE_SHAPES = ((7, 5), (5,), (3, 5, 4))


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=2e-5,
                                                                             atol=2e-6)


def _seed(*parts):
    """The same seed for the same case in every process (hash() of a str is not)."""
    return zlib.crc32(repr(parts).encode())


def _class_targets(gen, shape, ignore_index):
    batch = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = torch.randint(0, shape[0 if len(shape) == 1 else 1], batch, generator=gen)
    if ignore_index != -100 and t.numel() > 1:
        t.view(-1)[::3] = ignore_index
    return t


def _soft_targets(gen, shape, dtype):
    axis = 0 if len(shape) == 1 else 1
    return torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64), axis).to(dtype)


def _value_and_grad(fn, x, *args, grad_loss=None, **kwargs):
    x = x.detach().clone().requires_grad_()
    loss = fn(x, *args, **kwargs)
    if grad_loss is None:
        grad_loss = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (grad,) = torch.autograd.grad(loss, x, grad_loss)
    return loss.detach(), grad


# ---------------------------------------------------------------------------
# Modules and functions equal torch.nn's for every argument combination
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
@pytest.mark.parametrize("weighted", (False, True))
@pytest.mark.parametrize("ignore_index", (-100, 1))
@pytest.mark.parametrize("label_smoothing", (0.0, 0.25))
@pytest.mark.parametrize("soft", (False, True))
def test_cross_entropy_loss_module_matches_torch(backend, dtype, shape, reduction, weighted,
                                                 ignore_index, label_smoothing, soft):
    gen = torch.Generator().manual_seed(_seed(shape, reduction, weighted, soft))
    n_classes = shape[0 if len(shape) == 1 else 1]
    x = 3 * torch.randn(shape, generator=gen, dtype=dtype)
    target = (_soft_targets(gen, shape, dtype) if soft
              else _class_targets(gen, shape, ignore_index))
    weight = torch.rand(n_classes, generator=gen, dtype=dtype) + 0.5 if weighted else None
    kwargs = dict(weight=weight, ignore_index=ignore_index, reduction=reduction,
                  label_smoothing=label_smoothing)
    ours = ft.CrossEntropyLoss(**kwargs, backend=backend)
    theirs = torch.nn.CrossEntropyLoss(**kwargs)
    if soft and ignore_index != -100:
        for module in (ours, theirs):
            with pytest.raises(RuntimeError, match="ignore_index is not supported"):
                module(x, target)
        return
    loss, grad = _value_and_grad(ours, x, target)
    ref_loss, ref_grad = _value_and_grad(theirs, x, target)
    assert loss.dtype == ref_loss.dtype and loss.shape == ref_loss.shape
    assert grad.dtype == ref_grad.dtype
    torch.testing.assert_close(loss, ref_loss, equal_nan=True, **_tol(dtype))
    torch.testing.assert_close(grad, ref_grad, equal_nan=True, **_tol(dtype))


def _options_by_hand(x, target, weight, sample_weight, ignore_index, reduction,
                     label_smoothing, z_loss, softcap):
    """cross_entropy with sample_weight, z_loss and softcap written out in torch
    (the normalisation of fastxent.cross_entropy): mean = sum(sw CE) / sum(sw w[y])
    + sum(sw z_loss lse**2) / sum(sw), over the samples that are not ignored."""
    axis = 0 if x.ndim == 1 else 1
    z = x if softcap is None else softcap * torch.tanh(x / softcap)
    ce = F.cross_entropy(z, target, weight, ignore_index=ignore_index, reduction="none",
                         label_smoothing=label_smoothing)
    sw = torch.ones_like(ce) if sample_weight is None else sample_weight
    soft = target.is_floating_point()
    kept = torch.ones_like(ce, dtype=torch.bool) if soft else target != ignore_index
    zl = torch.where(kept, z_loss * torch.logsumexp(z, axis) ** 2, 0.0)
    if reduction == "none":
        return sw * (ce + zl)
    if reduction == "sum":
        return (sw * (ce + zl)).sum()
    wy = 1.0 if weight is None or soft else weight[torch.where(kept, target, 0)]
    return ((sw * ce).sum() / torch.where(kept, sw * wy, 0.0).sum()
            + (sw * zl).sum() / torch.where(kept, sw, 0.0).sum())


@pytest.mark.parametrize("shape", ((7, 5), (5,), (3, 5, 4)))
@pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
@pytest.mark.parametrize("soft", (False, True))
@pytest.mark.parametrize("options", (
    dict(sample_weight=True), dict(z_loss=0.1), dict(softcap=2.0),
    dict(sample_weight=True, z_loss=0.1, softcap=2.0, weighted=True, label_smoothing=0.2)))
def test_sample_weight_z_loss_and_softcap_match_torch_by_hand(backend, shape, reduction,
                                                              soft, options):
    gen = torch.Generator().manual_seed(_seed(shape, reduction, soft))
    n_classes = shape[0 if len(shape) == 1 else 1]
    batch = shape[:1] + shape[2:] if len(shape) > 1 else ()
    x = 3 * torch.randn(shape, generator=gen, dtype=torch.float64)
    ignore_index = -100 if soft else 1
    target = (_soft_targets(gen, shape, torch.float64) if soft
              else _class_targets(gen, shape, ignore_index))
    kwargs = dict(
        weight=(torch.rand(n_classes, generator=gen, dtype=torch.float64) + 0.5
                if options.get("weighted") else None),
        sample_weight=(torch.rand(batch, generator=gen, dtype=torch.float64) + 0.1
                       if options.get("sample_weight") else None),
        ignore_index=ignore_index, reduction=reduction,
        label_smoothing=options.get("label_smoothing", 0.0),
        z_loss=options.get("z_loss", 0.0), softcap=options.get("softcap"))
    inputs = [x.clone().requires_grad_(), target.clone().requires_grad_(soft)]
    ref_inputs = [x.clone().requires_grad_(), target.clone().requires_grad_(soft)]
    loss = ft.cross_entropy(*inputs, **kwargs, backend=backend)
    ref = _options_by_hand(*ref_inputs, **kwargs)
    torch.testing.assert_close(loss, ref, equal_nan=True, **_tol(torch.float64))
    grad_loss = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    wrt = [t for t in inputs if t.requires_grad]
    grads = torch.autograd.grad(loss, wrt, grad_loss)
    ref_grads = torch.autograd.grad(ref, [t for t in ref_inputs if t.requires_grad], grad_loss)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, equal_nan=True, **_tol(torch.float64))
    module = ft.CrossEntropyLoss(kwargs["weight"], ignore_index=ignore_index,
                                 reduction=reduction, label_smoothing=kwargs["label_smoothing"],
                                 z_loss=kwargs["z_loss"], softcap=kwargs["softcap"],
                                 backend=backend)
    torch.testing.assert_close(module(x, target, kwargs["sample_weight"]), ref.detach(),
                               equal_nan=True, **_tol(torch.float64))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", ((6,), (4, 5), (2, 3, 5)))
@pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
@pytest.mark.parametrize("weight_shape", (None, "full", "last"))
@pytest.mark.parametrize("logits,pos_weighted", ((False, False), (True, False), (True, True)))
def test_bce_modules_match_torch(backend, dtype, shape, reduction, weight_shape, logits,
                                 pos_weighted):
    gen = torch.Generator().manual_seed(_seed(shape, reduction, weight_shape))
    x = torch.randn(shape, generator=gen, dtype=dtype)
    if not logits:
        x = torch.sigmoid(2 * x)
    target = torch.rand(shape, generator=gen, dtype=dtype)
    weight = None
    if weight_shape is not None:
        weight = torch.rand(shape if weight_shape == "full" else shape[-1:], generator=gen,
                            dtype=dtype) + 0.5
    if logits:
        pos_weight = torch.rand(shape[-1:], generator=gen, dtype=dtype) * 3 if pos_weighted \
            else None
        ours = ft.BCEWithLogitsLoss(weight, reduction=reduction, pos_weight=pos_weight,
                                    backend=backend)
        theirs = torch.nn.BCEWithLogitsLoss(weight, reduction=reduction, pos_weight=pos_weight)
    else:
        ours = ft.BCELoss(weight, reduction=reduction, backend=backend)
        theirs = torch.nn.BCELoss(weight, reduction=reduction)
    loss, grad = _value_and_grad(ours, x, target)
    ref_loss, ref_grad = _value_and_grad(theirs, x, target)
    assert loss.dtype == ref_loss.dtype and loss.shape == ref_loss.shape
    torch.testing.assert_close(loss, ref_loss, **_tol(dtype))
    torch.testing.assert_close(grad, ref_grad, **_tol(dtype))


def test_module_state_and_repr_follow_torch():
    weight = torch.rand(4)
    module = ft.CrossEntropyLoss(weight, ignore_index=2, label_smoothing=0.1, num_threads=1)
    assert isinstance(module, torch.nn.CrossEntropyLoss)
    assert "weight" in dict(module.named_buffers())  # moves with .to(), saved in state_dict
    assert set(module.state_dict()) == set(torch.nn.CrossEntropyLoss(weight).state_dict())
    assert "label_smoothing=0.1" in repr(module) and "num_threads=1" in repr(module)
    assert isinstance(ft.BCEWithLogitsLoss(pos_weight=torch.ones(3)), torch.nn.BCEWithLogitsLoss)
    assert isinstance(ft.BCELoss(), torch.nn.BCELoss)


def test_legacy_size_average_and_reduce_warn_as_in_torch():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.warns(UserWarning, match="reduction='sum'"):
        loss = ft.cross_entropy(x, y, size_average=False)
    torch.testing.assert_close(loss, F.cross_entropy(x, y, reduction="sum"))
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert ft.binary_cross_entropy(torch.full((3,), 0.5), torch.ones(3),
                                       reduce=False).shape == (3,)


# ---------------------------------------------------------------------------
# Gradients: finite differences, targets, low precision
# ---------------------------------------------------------------------------

def _gradcheck_cases():
    """name -> (function of the differentiable inputs, those inputs), float64."""
    g = torch.Generator().manual_seed(7)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    weight, bce_weight = rand(4) + 0.5, rand(3) + 0.5
    pos_weight = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    return {
        "cross_entropy/indices": (
            lambda x: ft.cross_entropy(x, torch.tensor([0, 2, 1, 3]), weight,
                                       label_smoothing=0.2),
            (randn(4, 4),)),
        "cross_entropy/indices/none/3d": (
            lambda x: ft.cross_entropy(x, torch.tensor([[0, 2], [-100, 3]]), reduction="none"),
            (randn(2, 4, 2),)),
        "cross_entropy/probabilities": (
            lambda x, p: ft.cross_entropy(x, p, weight, label_smoothing=0.1),
            (randn(3, 4), torch.softmax(randn(3, 4), 1))),
        "cross_entropy/probabilities/none/3d": (
            lambda x, p: ft.cross_entropy(x, p, reduction="none"),
            (randn(2, 3, 2), torch.softmax(randn(2, 3, 2), 1))),
        "binary_cross_entropy": (
            lambda x, y: ft.binary_cross_entropy(x, y, bce_weight),
            (rand(2, 3) * 0.8 + 0.1, rand(2, 3))),
        "binary_cross_entropy_with_logits": (
            lambda x, y: ft.binary_cross_entropy_with_logits(x, y, reduction="sum",
                                                             pos_weight=pos_weight),
            (randn(2, 3), rand(2, 3))),
    }


GRADCHECK_CASES = sorted(_gradcheck_cases())


@pytest.mark.parametrize("case", GRADCHECK_CASES)
def test_gradcheck(case):
    fn, inputs = _gradcheck_cases()[case]
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
@pytest.mark.parametrize("fn,make_input", (
    (ft.cross_entropy, lambda g, dt: (3 * torch.randn(64, 100, generator=g)).to(dt)),
    (ft.binary_cross_entropy_with_logits, lambda g, dt: torch.randn(64, 100, generator=g).to(dt)),
))
def test_half_precision_is_at_least_as_close_as_torch(dtype, fn, make_input):
    gen = torch.Generator().manual_seed(3)
    x = make_input(gen, dtype)
    target = (torch.randint(0, 100, (64,), generator=gen) if fn is ft.cross_entropy
              else torch.rand(64, 100, generator=gen).to(dtype))
    torch_fn = getattr(F, fn.__name__)
    loss, grad = _value_and_grad(fn, x, target, grad_loss=torch.tensor(1.0, dtype=dtype))
    ref_loss, ref_grad = _value_and_grad(torch_fn, x, target,
                                         grad_loss=torch.tensor(1.0, dtype=dtype))
    exact_loss, exact_grad = _value_and_grad(torch_fn, x.double(), target.double()
                                             if target.is_floating_point() else target,
                                             grad_loss=torch.tensor(1.0, dtype=torch.float64))
    assert loss.dtype == grad.dtype == dtype
    eps = float(torch.finfo(dtype).eps)
    assert abs(loss.double() - exact_loss) <= max(abs(ref_loss.double() - exact_loss), eps)
    ours = (grad.double() - exact_grad).abs().max()
    theirs = (ref_grad.double() - exact_grad).abs().max()
    assert ours <= 2 * theirs + eps * exact_grad.abs().max()


def test_upstream_gradient_of_one_returns_the_kept_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1])
    loss = ft.cross_entropy(x, y)
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, x, torch.tensor(3.0), retain_graph=True)
    (g3,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(g2, 3 * g1)
    torch.testing.assert_close(g3, g1)  # scaling for g2 did not touch the kept gradient


def test_double_backward_raises_a_clear_error():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(ft.cross_entropy(x, torch.tensor([0, 1, 2])), x,
                                  create_graph=True)
    assert grad.requires_grad
    with pytest.raises(RuntimeError, match="no second derivative"):
        grad.pow(2).sum().backward()


def test_weight_that_requires_grad_is_refused():
    weight = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="gradient with respect to weight"):
        ft.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), weight)
    with pytest.raises(ValueError, match="pos_weight"):
        ft.binary_cross_entropy_with_logits(torch.randn(2, 3), torch.rand(2, 3),
                                            pos_weight=weight)


# ---------------------------------------------------------------------------
# Training: the same parameters as with PyTorch's own loss
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,rtol", ((torch.float64, 1e-10), (torch.float32, 1e-4)))
@pytest.mark.parametrize("inplace", (False, True))
def test_optimizer_steps_give_torchs_parameters(dtype, rtol, inplace):
    """Ten Adam steps of a small MLP: parameters agree to ``rtol`` (relative to
    their largest entry) with those trained by torch.nn.CrossEntropyLoss."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, 5)).to(dtype)
    twin = copy.deepcopy(model)
    x = torch.randn(32, 8, dtype=dtype)
    y = torch.randint(0, 5, (32,))
    for net, loss_fn in ((model, torch.nn.CrossEntropyLoss(label_smoothing=0.1)),
                         (twin, ft.CrossEntropyLoss(label_smoothing=0.1, inplace=inplace))):
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(10):
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=rtol * float(p.detach().abs().max()))


# ---------------------------------------------------------------------------
# In-place mode
# ---------------------------------------------------------------------------

def test_inplace_writes_the_gradient_over_the_logits():
    torch.manual_seed(1)
    layer = torch.nn.Linear(6, 9)
    h, y = torch.randn(20, 6), torch.randint(0, 9, (20,))
    reference = F.cross_entropy(layer(h), y)
    reference.backward()
    expected = layer.weight.grad.clone()
    layer.zero_grad()
    logits = layer(h)
    seen = []
    logits.register_hook(lambda g: seen.append(g.data_ptr()))
    loss = ft.cross_entropy(logits, y, inplace=True)
    loss.backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(layer.weight.grad, expected)
    assert seen == [logits.data_ptr()]  # the gradient flowing back is the logits' memory


@pytest.mark.parametrize("fn,make", (
    (ft.cross_entropy, lambda x: x),
    (ft.binary_cross_entropy_with_logits, lambda x: x),
))
def test_inplace_on_a_non_contiguous_view_matches(fn, make):
    torch.manual_seed(2)
    layer = torch.nn.Linear(4, 12)
    h = torch.randn(6, 4)
    target = (torch.randint(0, 6, (12,)) if fn is ft.cross_entropy else torch.rand(12, 6))
    grads = []
    for inplace in (False, True):
        layer.zero_grad()
        fn(layer(h).t(), target, inplace=inplace).backward()  # (12, 6), column-major
        grads.append(layer.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])


def _leaf():
    return torch.randn(4, 3, requires_grad=True)


def _saved_by_producer():
    return torch.tanh(torch.randn(4, 3, requires_grad=True))


def _view_of_saved():
    return torch.exp(torch.randn(2, 2, 3, requires_grad=True)).view(4, 3)


def _expanded():
    return (torch.randn(1, 3, requires_grad=True) * 2).expand(4, 3)


@pytest.mark.parametrize("make,match", (
    (_leaf, "leaf tensor"),
    (_saved_by_producer, "TanhBackward0 saved it"),
    (_view_of_saved, "ExpBackward0 saved it"),
    (_expanded, "expanded"),
))
def test_inplace_is_refused_where_autograd_needs_the_logits(make, match):
    logits = make()
    before = logits.detach().clone()
    with pytest.raises(ValueError, match=match):
        ft.cross_entropy(logits, torch.tensor([0, 1, 2, 0]), inplace=True)
    assert torch.equal(logits.detach(), before)  # nothing was written


def test_inplace_refused_for_probabilities_from_sigmoid():
    probs = torch.sigmoid(torch.randn(4, 3, requires_grad=True))
    with pytest.raises(RuntimeError, match="SigmoidBackward0"):
        ft.binary_cross_entropy(probs, torch.rand(4, 3), inplace=True)


def test_inplace_makes_an_earlier_consumer_fail_instead_of_reading_gradients():
    logits = torch.nn.Linear(3, 4)(torch.randn(5, 3))
    penalty = logits.pow(2).mean()  # pow saved the logits
    loss = ft.cross_entropy(logits, torch.tensor([0, 1, 2, 3, 0]), inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + penalty).backward()


def test_inplace_detects_a_later_write_before_backward():
    logits = torch.nn.Linear(3, 4)(torch.randn(5, 3))
    loss = ft.cross_entropy(logits, torch.tensor([0, 1, 2, 3, 0]), inplace=True)
    logits.mul_(2)
    with pytest.raises(RuntimeError, match="modified in place since"):
        loss.backward()


def test_inplace_without_grad_writes_nothing():
    logits = torch.randn(4, 3)
    before = logits.clone()
    ft.cross_entropy(logits, torch.tensor([0, 1, 2, 0]), inplace=True)
    with torch.no_grad():
        ft.cross_entropy(torch.nn.Linear(3, 3)(logits), torch.tensor([0, 1, 2, 0]),
                         inplace=True)
    assert torch.equal(logits, before)


# ---------------------------------------------------------------------------
# Memory, errors, inputs left alone, torch.compile
# ---------------------------------------------------------------------------

def test_cpu_tensors_reach_the_kernels_without_copies(monkeypatch):
    import fastxent._api as api
    seen = {}
    original = api.cross_entropy

    def spy(input, target, *args, **kwargs):
        seen["input"], seen["target"] = input, target
        return original(input, target, *args, **kwargs)

    monkeypatch.setattr(api, "cross_entropy", spy)
    x = torch.randn(6, 5, dtype=torch.float64).t().requires_grad_()  # non-contiguous
    y = torch.tensor([0, 1, 2, 3, 4])
    ft.cross_entropy(x, y)
    assert seen["input"].__array_interface__["data"][0] == x.data_ptr()
    assert seen["target"].__array_interface__["data"][0] == y.data_ptr()


def test_inputs_are_left_unchanged():
    x = torch.randn(4, 3, requires_grad=True)
    p = torch.softmax(torch.randn(4, 3), 1).requires_grad_()
    w = torch.rand(3)
    saved = [t.detach().clone() for t in (x, p, w)]
    loss = ft.cross_entropy(x * 1, p, w, label_smoothing=0.3)
    loss.backward()
    for t, s in zip((x, p, w), saved):
        assert torch.equal(t.detach(), s)


def test_errors_name_the_problem():
    x = torch.randn(4, 3)
    with pytest.raises(IndexError, match="target value 7"):
        ft.cross_entropy(x, torch.tensor([0, 1, 7, 0]))
    with pytest.raises(ValueError, match="reduction"):
        ft.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(RuntimeError, match="label_smoothing"):  # PyTorch's exception type
        ft.cross_entropy(x, torch.tensor([0, 1, 2, 0]), label_smoothing=1.5)
    with pytest.raises(RuntimeError, match=r"\[0, 1\]"):
        ft.binary_cross_entropy(torch.full((3,), 1.5), torch.ones(3))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        ft.cross_entropy(np.zeros((2, 3)), torch.tensor([0, 1]))
    assert issubclass(ft.ArgumentError, ValueError) and issubclass(ft.ArgumentError,
                                                                   RuntimeError)


def test_all_ignored_batch_is_nan_as_in_torch():
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.full((3,), -100)
    loss, grad = _value_and_grad(ft.cross_entropy, x, y, grad_loss=torch.tensor(1.0))
    ref_loss, ref_grad = _value_and_grad(F.cross_entropy, x, y, grad_loss=torch.tensor(1.0))
    torch.testing.assert_close(loss, ref_loss, equal_nan=True)
    torch.testing.assert_close(grad, ref_grad, equal_nan=True)


def test_torch_compile_runs_the_loss_eagerly_between_graphs():
    dynamo = pytest.importorskip("torch._dynamo")
    torch.manual_seed(4)
    layer = torch.nn.Linear(5, 7)
    h, y = torch.randn(9, 5), torch.randint(0, 7, (9,))

    def step(h, y, loss_fn):
        return 2 * loss_fn(layer(h), y)

    grads = []
    for run, loss_fn in ((step, F.cross_entropy),
                         (torch.compile(step, backend="aot_eager"), ft.cross_entropy)):
        layer.zero_grad()
        loss = run(h, y, loss_fn)
        loss.backward()
        grads.append((loss.detach(), layer.weight.grad.clone()))
    torch.testing.assert_close(grads[1], grads[0])
    explained = dynamo.explain(step)(h, y, ft.cross_entropy)
    assert explained.graph_break_count == 1


def test_import_fastxent_torch_does_not_import_dynamo():
    import subprocess
    import sys
    code = ("import sys, torch, fastxent.torch as ft; "
            "ft.cross_entropy(torch.randn(2, 3, requires_grad=True), torch.tensor([0, 1]))"
            ".backward(); print('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("bf16_via", ("ml_dtypes", "float32 copy"))
def test_bfloat16_cpu_without_and_with_ml_dtypes(monkeypatch, bf16_via):
    if bf16_via == "float32 copy":
        monkeypatch.setattr(ft, "_NUMPY_BFLOAT16", None)
    elif ft._NUMPY_BFLOAT16 is None:
        pytest.skip("ml_dtypes is not installed")
    x = (3 * torch.randn(8, 6)).to(torch.bfloat16)
    y = torch.randint(0, 6, (8,))
    loss, grad = _value_and_grad(ft.cross_entropy, x, y, grad_loss=torch.tensor(1.0,
                                 dtype=torch.bfloat16))
    exact, exact_grad = _value_and_grad(F.cross_entropy, x.double(), y,
                                        grad_loss=torch.tensor(1.0, dtype=torch.float64))
    assert loss.dtype == grad.dtype == torch.bfloat16
    assert abs(float(loss) - float(exact)) <= 2 ** -8 * abs(float(exact))  # one rounding
    assert float((grad.double() - exact_grad).abs().max()) <= 2 ** -8 * 1 / 8


def test_docstring_example():
    import doctest
    result = doctest.testmod(ft, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
@pytest.mark.parametrize("shape", ((64, 1000), (4, 10, 6)))
@pytest.mark.parametrize("inplace", (False, True))
def test_cuda_tensors_on_a_side_stream(dtype, shape, inplace):
    gen = torch.Generator().manual_seed(5)
    x = (3 * torch.randn(shape, generator=gen)).to(dtype)
    target = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=gen)
    target.view(-1)[::7] = -100
    weight = torch.rand(shape[1], generator=gen) + 0.5
    exact = _value_and_grad(F.cross_entropy, x.double(), target, weight.double(),
                            label_smoothing=0.1, grad_loss=torch.tensor(1.0, dtype=torch.float64))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        layer_input = x.cuda().requires_grad_()
        logits = layer_input * 1  # a non-leaf, as the output of a layer would be
        loss = ft.cross_entropy(logits, target.cuda(), weight.cuda().to(dtype),
                                label_smoothing=0.1, inplace=inplace)
        loss.backward()
    stream.synchronize()
    assert loss.dtype == layer_input.grad.dtype == dtype and loss.is_cuda
    rtol = 1e-5 if dtype == torch.float32 else 2 ** -7
    torch.testing.assert_close(loss.double().cpu(), exact[0], rtol=rtol, atol=0)
    torch.testing.assert_close(layer_input.grad.double().cpu(), exact[1], rtol=0,
                               atol=rtol * float(exact[1].abs().max()))
