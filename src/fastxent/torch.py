"""PyTorch's cross-entropy losses, computed by fastxent's fused kernels, with autograd.

``cross_entropy``, ``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``
take ``torch.nn.functional``'s arguments; ``CrossEntropyLoss``, ``BCELoss`` and
``BCEWithLogitsLoss`` are ``torch.nn``'s modules with their constructor
arguments. The forward pass computes the loss and its gradient in one fused
pass and keeps the gradient; backward only scales it by the upstream gradient
(and does nothing when that is 1 on the CPU).

CPU tensors reach the CPU kernels as NumPy views of their memory (bfloat16
through ``ml_dtypes`` when it is installed, else as a float32 copy); CUDA
tensors go to the CUDA backend on PyTorch's current stream. Every function
also takes ``inplace``, ``backend`` and ``num_threads`` (keyword only):
``inplace=True`` writes the gradient over the input instead of allocating it,
and is refused where autograd could still need the input's values.

Under ``torch.compile`` each call is a graph break: it runs eagerly between
compiled graphs.

>>> import torch, fastxent.torch as ft
>>> logits = torch.tensor([[1.2, -0.5, 0.1]], requires_grad=True)
>>> loss = ft.cross_entropy(logits, torch.tensor([0]))
>>> loss.backward()
>>> round(loss.item(), 4), logits.grad.shape
(0.4158, torch.Size([1, 3]))
"""

import numpy as np
import torch

from . import _api

try:
    from ml_dtypes import bfloat16 as _NUMPY_BFLOAT16
except ImportError:  # bfloat16 CPU tensors are then computed from a float32 copy
    _NUMPY_BFLOAT16 = None

__all__ = [
    "ArgumentError",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
]


class ArgumentError(ValueError, RuntimeError):
    """A bad argument: fastxent raises ValueError where PyTorch raises RuntimeError,
    so here the error is both."""


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------

def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0, *, sample_weight=None,
                  z_loss=0.0, softcap=None, inplace=False, backend="auto", num_threads=None):
    """``torch.nn.functional.cross_entropy``, fused: loss and gradient in one pass.

    Parameters
    ----------
    input : Tensor, shape (N, C), (C,) or (N, C, d1, ..., dk)
        Logits; float16, bfloat16, float32 or float64, on the CPU or a CUDA device.
    target : Tensor
        Class indices (any integer dtype) of shape (N,), () or (N, d1, ..., dk),
        or class probabilities of ``input``'s shape (differentiable).
    weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As in PyTorch.
    sample_weight : Tensor of the target's batch shape, optional
        One weight per sample (not differentiated).
    z_loss : float, default 0.0
        Coefficient of ``logsumexp(input)**2`` added to each counted sample's loss.
    softcap : float, optional
        The logits become ``softcap * tanh(input / softcap)`` first.
        ``sample_weight``, ``z_loss`` and ``softcap`` are those of
        ``fastxent.cross_entropy`` (normalisation included).
    inplace : bool, default False
        Write the gradient over ``input`` instead of new memory. Refused (with
        ArgumentError, before anything is written) when ``input`` is a leaf
        that requires grad, has overlapping elements, or was saved for backward
        by the op that made it; other ops that saved it fail in backward with
        PyTorch's "modified by an inplace operation" error. After the call
        ``input`` holds the gradient, not the logits.
    backend, num_threads
        As in ``fastxent.cross_entropy``.

    Returns
    -------
    Tensor in ``input``'s dtype: 0-d for "mean" and "sum", of the target's
    shape for "none".
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    args = (input, target, weight, sample_weight, ignore_index, reduction, label_smoothing,
            z_loss, softcap, inplace, backend, num_threads)
    if torch.compiler.is_compiling():
        return _cross_entropy_eager(*args)
    return _cross_entropy(*args)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean", *, inplace=False, backend="auto",
                         num_threads=None):
    """``torch.nn.functional.binary_cross_entropy``: probabilities in [0, 1],
    each log clamped at -100. ``target`` is differentiable; ``inplace``,
    ``backend`` and ``num_threads`` as in ``cross_entropy``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    args = (False, input, target, weight, None, reduction, inplace, backend, num_threads)
    if torch.compiler.is_compiling():
        return _binary_eager(*args)
    return _binary(*args)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None, *,
                                     inplace=False, backend="auto", num_threads=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits``, in a stable form.
    ``target`` is differentiable; ``inplace``, ``backend`` and ``num_threads``
    as in ``cross_entropy``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    args = (True, input, target, weight, pos_weight, reduction, inplace, backend, num_threads)
    if torch.compiler.is_compiling():
        return _binary_eager(*args)
    return _binary(*args)


# ---------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------

class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by ``fastxent.torch.cross_entropy``;
    also takes ``z_loss``, ``softcap``, ``inplace``, ``backend`` and
    ``num_threads`` (keyword only), and ``forward`` a ``sample_weight``."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0, *, z_loss=0.0, softcap=None,
                 inplace=False, backend="auto", num_threads=None):
        super().__init__(weight, size_average, ignore_index, reduce, reduction,
                         label_smoothing)
        self.z_loss, self.softcap = z_loss, softcap
        self.inplace, self.backend, self.num_threads = inplace, backend, num_threads

    def forward(self, input, target, sample_weight=None):
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             sample_weight=sample_weight, z_loss=self.z_loss,
                             softcap=self.softcap, inplace=self.inplace, backend=self.backend,
                             num_threads=self.num_threads)

    def extra_repr(self):
        return _extra_repr(self)


class BCELoss(torch.nn.BCELoss):
    """``torch.nn.BCELoss`` computed by ``fastxent.torch.binary_cross_entropy``."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", *,
                 inplace=False, backend="auto", num_threads=None):
        super().__init__(weight, size_average, reduce, reduction)
        self.inplace, self.backend, self.num_threads = inplace, backend, num_threads

    def forward(self, input, target):
        return binary_cross_entropy(input, target, self.weight, reduction=self.reduction,
                                    inplace=self.inplace, backend=self.backend,
                                    num_threads=self.num_threads)

    def extra_repr(self):
        return _extra_repr(self)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` computed by
    ``fastxent.torch.binary_cross_entropy_with_logits``."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None, *, inplace=False, backend="auto", num_threads=None):
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        self.inplace, self.backend, self.num_threads = inplace, backend, num_threads

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight,
            inplace=self.inplace, backend=self.backend, num_threads=self.num_threads)

    def extra_repr(self):
        return _extra_repr(self)


def _extra_repr(module):
    parts = [f"reduction={module.reduction!r}"]
    for name in ("ignore_index", "label_smoothing"):
        if hasattr(module, name):
            parts.append(f"{name}={getattr(module, name)!r}")
    if getattr(module, "z_loss", 0.0):
        parts.append(f"z_loss={module.z_loss!r}")
    if getattr(module, "softcap", None) is not None:
        parts.append(f"softcap={module.softcap!r}")
    parts += [f"inplace={module.inplace}", f"backend={module.backend!r}"]
    if module.num_threads is not None:
        parts.append(f"num_threads={module.num_threads}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------
# Autograd functions: the gradient is computed forward and scaled backward
# ---------------------------------------------------------------------------

class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, sample_weight, options):
        (ignore_index, reduction, label_smoothing, z_loss, softcap, inplace, backend,
         num_threads) = options
        needs_grad = ctx.needs_input_grad[0]
        inplace = inplace and needs_grad
        axis = 0 if input.ndim == 1 else 1
        # CUDA kernels take the class axis last: (N, C, d1, ..., dk) goes as rows.
        as_rows = input.is_cuda and input.ndim > 2
        x = _class_rows(input) if as_rows else input
        t, sw = target, sample_weight
        if as_rows:
            t = _class_rows(target) if target.is_floating_point() else target.reshape(-1)
            sw = None if sw is None else sw.reshape(-1)
        core_axis = -1 if as_rows else axis
        target_grad = None
        if ctx.needs_input_grad[1]:  # read the logits before an in-place write
            capped = x if softcap is None else \
                softcap * torch.tanh(x.detach().to(_compute_dtype(x)) / softcap)
            log_probs = _call(_api.log_softmax, capped, axis=core_axis, backend=backend,
                              num_threads=num_threads)
            target_grad = _soft_target_grad(_unrows(log_probs, input) if as_rows else log_probs,
                                            target, weight, sample_weight, axis, reduction,
                                            label_smoothing)
        loss, grad = _call(_api.cross_entropy, x, t, weight, inplace=inplace,
                           return_grad=needs_grad, ignore_index=ignore_index,
                           reduction=reduction, label_smoothing=label_smoothing,
                           sample_weight=sw, z_loss=z_loss, softcap=softcap,
                           backend=backend, num_threads=num_threads)
        if as_rows:
            loss = loss.reshape(target.shape) if reduction == "none" else loss
            grad = None if grad is None else _unrows(grad, input)
        return _finish_forward(ctx, input, loss, grad, target_grad, inplace, axis)

    @staticmethod
    def backward(ctx, grad_loss):
        return _backward(ctx, grad_loss) + (None, None, None)


class _Binary(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, options):
        from_logits, reduction, inplace, backend, num_threads = options
        inplace = inplace and ctx.needs_input_grad[0]
        target_grad = None
        if ctx.needs_input_grad[1]:
            target_grad = _binary_target_grad(from_logits, input, target, weight, pos_weight,
                                              reduction)
        fn = _api.binary_cross_entropy_with_logits if from_logits else _api.binary_cross_entropy
        extra = {"pos_weight": pos_weight} if from_logits else {}
        loss, grad = _call(fn, input, target, weight, inplace=inplace,
                           return_grad=ctx.needs_input_grad[0], reduction=reduction,
                           backend=backend, num_threads=num_threads, **extra)
        return _finish_forward(ctx, input, loss, grad, target_grad, inplace, None)

    @staticmethod
    def backward(ctx, grad_loss):
        return _backward(ctx, grad_loss) + (None, None, None)


def _cross_entropy(input, target, weight, sample_weight, ignore_index, reduction,
                   label_smoothing, z_loss, softcap, inplace, backend, num_threads):
    _check_tensors(input=input, target=target, weight=weight, sample_weight=sample_weight)
    _check_no_grad(weight=weight, sample_weight=sample_weight)
    if target.is_floating_point() and ignore_index != -100:
        raise ArgumentError("ignore_index is not supported for floating point target "
                            "(class probabilities), as in PyTorch")
    if inplace:
        _check_inplace(input)
    options = (ignore_index, reduction, label_smoothing, z_loss, softcap, inplace, backend,
               num_threads)
    return _CrossEntropy.apply(input, target, weight, sample_weight, options)


def _binary(from_logits, input, target, weight, pos_weight, reduction, inplace, backend,
            num_threads):
    _check_tensors(input=input, target=target, weight=weight, pos_weight=pos_weight)
    _check_no_grad(weight=weight, pos_weight=pos_weight)
    if inplace:
        _check_inplace(input)
    options = (from_logits, reduction, inplace, backend, num_threads)
    return _Binary.apply(input, target, weight, pos_weight, options)


# Under torch.compile the losses run eagerly, outside the graph (a graph break).
# torch._disable_dynamo wraps now and imports torch._dynamo only when first called,
# which happens only while compiling.
_cross_entropy_eager = torch._disable_dynamo(_cross_entropy)
_binary_eager = torch._disable_dynamo(_binary)


def _finish_forward(ctx, input, loss, grad, target_grad, inplace, axis):
    """Keep the gradients for backward; the loss in ``input``'s dtype, as PyTorch."""
    ctx.inplace, ctx.class_axis = inplace, axis
    if inplace:
        if grad.data_ptr() != input.data_ptr():
            input.detach().copy_(grad)  # computed elsewhere: a bfloat16 copy, class-last rows
        grad = input.detach()  # input's memory and version counter
        # Ops that saved the old values now fail in backward instead of reading gradients.
        torch.autograd.graph.increment_version(input)
    ctx.save_for_backward(grad, target_grad)
    return loss if loss.dtype == input.dtype else loss.to(input.dtype)


def _backward(ctx, grad_loss):
    with torch.no_grad():
        grads = _scaled_grads(ctx, grad_loss)
    if not torch.is_grad_enabled():
        return grads
    # create_graph=True: the kept gradient has no graph of its own, so differentiating
    # it again raises (when it happens) instead of silently giving zero.
    live = [g for g in grads if g is not None]
    error = torch._C._functions.DelayedError(
        b"fastxent.torch losses have no second derivative (their gradient is computed "
        b"in the forward pass); use torch.nn.functional's loss where you differentiate "
        b"twice", len(live))
    wrapped = error(*[g.detach().requires_grad_() for g in live])
    wrapped = iter((wrapped,) if isinstance(wrapped, torch.Tensor) else wrapped)
    return tuple(None if g is None else next(wrapped) for g in grads)


def _scaled_grads(ctx, grad_loss):
    """Each kept gradient times the upstream gradient: one elementwise product."""
    try:
        saved = ctx.saved_tensors
    except RuntimeError as exc:
        if not ctx.inplace:
            raise
        raise RuntimeError(
            "the input of a fastxent.torch loss called with inplace=True holds the gradient "
            "until backward runs, and it was modified in place since then; call the loss "
            "without inplace=True, or leave its input alone until backward") from exc
    return tuple(None if g is None else _scale(g, grad_loss, ctx.class_axis) for g in saved)


def _scale(grad, grad_loss, class_axis):
    if grad_loss.ndim == 0:
        # A CPU scalar costs nothing to read; reading a CUDA one would wait for the GPU.
        if not grad_loss.is_cuda and grad_loss.item() == 1.0:
            return grad
        return grad * grad_loss
    if class_axis is not None:
        grad_loss = grad_loss.unsqueeze(class_axis)
    return grad * grad_loss


# ---------------------------------------------------------------------------
# Gradients with respect to the targets (only computed when asked for)
# ---------------------------------------------------------------------------

def _soft_target_grad(log_probs, target, weight, sample_weight, axis, reduction,
                      label_smoothing):
    """d(loss)/d(target) for class probabilities: -(1 - eps) w sw log_softmax(input) / D,
    D the number of samples, or the sum of sample_weight (log_softmax of the capped
    logits with softcap; z_loss does not depend on the target)."""
    grad = log_probs.to(_compute_dtype(log_probs)) * -(1.0 - label_smoothing)
    if weight is not None:
        shape = [1] * grad.ndim
        shape[axis] = -1
        grad = grad * weight.detach().to(grad.dtype).reshape(shape)
    if sample_weight is not None:
        sw = sample_weight.detach().to(grad.dtype)
        grad = grad * sw.unsqueeze(axis)
        if reduction == "mean":
            grad = grad / sw.sum()
    elif reduction == "mean":
        grad = grad / max(1, grad.numel() // grad.shape[axis])
    return grad.to(target.dtype)


def _binary_target_grad(from_logits, input, target, weight, pos_weight, reduction):
    """d(loss)/d(target) of the binary losses, as PyTorch's formulas give it."""
    x = input.detach().to(_compute_dtype(input))
    if from_logits:
        grad = -x
        if pos_weight is not None:
            pw = pos_weight.detach().to(x.dtype)
            grad = grad - (pw - 1) * torch.nn.functional.logsigmoid(x)
    else:
        grad = torch.log1p(-x).clamp_min(-100) - torch.log(x).clamp_min(-100)
    if weight is not None:
        grad = grad * weight.detach().to(x.dtype)
    if reduction == "mean":
        grad = grad / max(1, input.numel())
    return grad.to(target.dtype)


def _compute_dtype(tensor):
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------
# Tensors to the core and back
# ---------------------------------------------------------------------------

def _call(fn, input, *args, inplace=False, return_grad=None, **kwargs):
    """``fn`` of the core on tensors: CPU tensors as NumPy views, CUDA tensors as they
    are; results as tensors. Returns (loss, grad or None) when ``return_grad`` is given."""
    x = _to_core(input)
    arrays = [None if a is None else _to_core(a) for a in args]
    if return_grad is not None:
        kwargs["return_grad"] = return_grad
        if return_grad and inplace:
            kwargs["out"] = x
    for name in ("weight", "pos_weight", "sample_weight"):
        if kwargs.get(name) is not None:
            kwargs[name] = _to_core(kwargs[name])
    try:
        result = fn(x, *arrays, **kwargs)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from exc
    if return_grad is None:
        return _from_core(result)
    loss, grad = result if return_grad else (result, None)
    loss = _from_core(loss)
    if grad is not None:
        grad = _from_core(grad)
    return loss, grad


def _to_core(tensor):
    tensor = tensor.detach()
    if tensor.is_cuda:
        return tensor
    if tensor.dtype == torch.bfloat16:
        if _NUMPY_BFLOAT16 is None:
            return tensor.float().numpy()
        return tensor.view(torch.int16).numpy().view(_NUMPY_BFLOAT16)
    return tensor.resolve_conj().resolve_neg().numpy()


def _from_core(result):
    """A core result as a tensor, sharing memory where possible."""
    if isinstance(result, torch.Tensor):
        return result
    result = np.asarray(result)  # a NumPy scalar as a 0-d array
    if result.dtype.kind == "V":  # ml_dtypes' bfloat16
        return torch.from_numpy(result.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(result)


def _class_rows(tensor):
    """(N, C, d1, ..., dk) as (N * d1 * ... * dk, C): the class axis last."""
    return tensor.movedim(1, -1).reshape(-1, tensor.shape[1])


def _unrows(rows, like):
    """The inverse of ``_class_rows``, to ``like``'s shape."""
    moved = (like.shape[0],) + tuple(like.shape[2:]) + (like.shape[1],)
    return rows.reshape(moved).movedim(-1, 1)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

def _legacy_reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return torch.nn._reduction.legacy_get_string(size_average, reduce)  # warns, as torch
    return reduction


def _check_tensors(**tensors):
    for name, value in tensors.items():
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")


def _check_no_grad(**tensors):
    for name, value in tensors.items():
        if value is not None and value.requires_grad and torch.is_grad_enabled():
            raise ArgumentError(
                f"the gradient with respect to {name} is not implemented; pass "
                f"{name}.detach()")



def _check_inplace(input):
    """Refuse ``inplace=True`` where writing the gradient over ``input`` could lose values
    that autograd, or the caller's parameters, still need."""
    if not (input.requires_grad and torch.is_grad_enabled()):
        return  # nothing is written: no gradient is computed
    if input.is_leaf:
        raise ArgumentError(
            "inplace=True would write the gradient over input, a leaf tensor that requires "
            "grad (a parameter, or made with requires_grad=True): its values would be lost; "
            "use inplace=False")
    if any(stride == 0 and size > 1 for stride, size in zip(input.stride(), input.shape)):
        raise ArgumentError(
            "inplace=True needs an input whose elements do not share memory; this one is "
            "expanded (a stride is 0): use inplace=False or pass input.contiguous()")
    for tensor in (input, input._base):
        saver = tensor is not None and _saved_by(tensor.grad_fn, input)
        if saver:
            raise ArgumentError(
                f"inplace=True would write the gradient over input, but {saver} saved it "
                f"for its own backward, which would then read the gradient instead of the "
                f"logits; use inplace=False")


def _saved_by(node, tensor):
    """The name of ``node`` when it saved a tensor that shares ``tensor``'s memory."""
    if node is None:
        return None
    storage = tensor.untyped_storage().data_ptr()
    names = [n for n in dir(node) if n.startswith("_saved_")] + ["saved_tensors"]
    for name in names:
        try:
            value = getattr(node, name)
        except (AttributeError, RuntimeError):
            continue
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if (isinstance(item, torch.Tensor)
                    and item.untyped_storage().data_ptr() == storage):
                return node.name()
    return None
