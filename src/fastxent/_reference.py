"""Plain NumPy kernels: the specification, and the ``"numpy"`` backend.

Every backend module exposes the same kernel functions, with the same
arguments, already validated by the API layer:

- ``logits``: (n_rows, n_classes) float32 or float64, rows contiguous.
- ``labels``: (n_rows,) int32 or int64 class indices, each in
  [0, n_classes) or equal to ``ignore_index``.
- ``probs``: (n_rows, n_classes) target probabilities, the logits' dtype.
- ``class_weight``: (n_classes,) of the logits' dtype, or empty for none.
- ``grad_scale``: (n_rows,) float64, the factor of each row's gradient.
- ``loss_out``: (n_rows,) float64, receives each row's loss.
- ``grad_out``: (n_rows, n_classes) of the logits' dtype, receives the
  gradient; an empty (0, 0) array means "loss only". It may be ``logits``.

Kernels never allocate outputs, validate or reduce. Each row's loss is
``sum_c w[c] * q[c] * (lse - z[c])`` where ``q`` is the (smoothed) target
distribution; its gradient is ``grad_scale * (sum_c w[c] q[c] * softmax(z) - w * q)``.
Here that is written out densely, the most direct transcription of the
formula; the compiled backends fuse it into one sweep per row.
"""

import numpy as np


def _log_softmax_rows(z):
    m = np.max(z, axis=1, keepdims=True)
    shifted = z - m
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def _target_distribution(labels, n_classes, label_smoothing, ignore_index, dtype):
    """Dense (n_rows, n_classes) smoothed one-hot targets; ignored rows are 0."""
    n_rows = labels.shape[0]
    keep = labels != ignore_index
    q = np.full((n_rows, n_classes), label_smoothing / n_classes, dtype=dtype)
    q[keep, labels[keep]] += 1.0 - label_smoothing
    q[~keep] = 0.0
    return q


def _loss_grad_from_distribution(logits, q, class_weight, grad_scale, loss_out, grad_out):
    logp = _log_softmax_rows(logits)
    wq = q if class_weight.size == 0 else q * class_weight
    # 0 * -inf is nan, as in PyTorch's sum(target * log_softmax).
    loss_out[:] = -np.sum(wq * logp, axis=1)
    if grad_out.size:
        total = np.sum(wq, axis=1, keepdims=True)
        grad_out[:] = grad_scale[:, None] * (total * np.exp(logp) - wq)


def _serial_and_parallel(kernel):
    """The NumPy backend has one implementation; num_threads is ignored."""
    return kernel, kernel


def _xent_index(logits, labels, class_weight, label_smoothing, ignore_index,
                grad_scale, loss_out, grad_out, num_threads):
    q = _target_distribution(labels, logits.shape[1], label_smoothing,
                             ignore_index, logits.dtype)
    _loss_grad_from_distribution(logits, q, class_weight, grad_scale, loss_out, grad_out)
    ignored = labels == ignore_index
    loss_out[ignored] = 0.0
    if grad_out.size:
        grad_out[ignored] = 0.0


def _xent_probs(logits, probs, class_weight, label_smoothing, grad_scale,
                loss_out, grad_out, num_threads):
    q = probs * (1.0 - label_smoothing) + label_smoothing / logits.shape[1]
    _loss_grad_from_distribution(logits, q.astype(logits.dtype, copy=False),
                                 class_weight, grad_scale, loss_out, grad_out)


def _log_softmax(logits, out, num_threads):
    out[:] = _log_softmax_rows(logits)


def _softmax(logits, out, num_threads):
    out[:] = np.exp(_log_softmax_rows(logits))


def _logsumexp(logits, lse_out, num_threads):
    # An infinite max is not subtracted (as in torch.logsumexp): an all -inf
    # row gives -inf and a +inf entry gives +inf, not nan.
    m = np.max(logits, axis=1)
    shift = np.where(np.isinf(m), 0.0, m)[:, None]
    with np.errstate(divide="ignore", over="ignore"):
        lse_out[:] = shift[:, 0] + np.log(np.sum(np.exp(logits - shift), axis=1))


xent_index_serial, xent_index_parallel = _serial_and_parallel(_xent_index)
xent_probs_serial, xent_probs_parallel = _serial_and_parallel(_xent_probs)
log_softmax_serial, log_softmax_parallel = _serial_and_parallel(_log_softmax)
softmax_serial, softmax_parallel = _serial_and_parallel(_softmax)
logsumexp_serial, logsumexp_parallel = _serial_and_parallel(_logsumexp)
