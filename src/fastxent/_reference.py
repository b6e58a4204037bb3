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
- ``softcap``: 0.0 for none; else c > 0, and every logit z is replaced by
  ``c * tanh(z / c)`` before anything else (its gradient is multiplied by
  ``1 - tanh(z / c)**2``).
- ``z_loss``: >= 0; each row that has a target gets ``z_loss * lse**2`` added
  to its loss (lse of the capped logits) and ``2 z_loss lse softmax(z)`` to
  its gradient (times ``grad_scale``).

``evaluate`` reads (logits, labels, class_weight, ``sample_weight`` (n_rows,)
float64 or empty for ones, ignore_index, ``topk`` (K,) int64, ``block_rows``)
and computes, for each row, its loss (w_y (lse - z_y), 0 where ignored), lse
(as ``logsumexp``), entropy (-sum p log p), argmax (``np.argmax`` of the
row: the first maximum, or the first NaN) and the target's rank (how many
classes come before it when the row is sorted as
``np.argsort(row, kind="stable")[::-1]`` sorts it: by value descending, NaN
first, ties broken by the larger index; n_classes where ignored). It writes
them into float64 ``loss_out``, ``lse_out``, ``entropy_out`` and int64
``argmax_out``, ``rank_out`` (each (n_rows,), or all empty for none), and
into ``block_sums`` (ceil(n_rows / block_rows), 7 + K) float64, row b, the
sums over the rows of block b, [b * block_rows, (b + 1) * block_rows), that
are not ignored, of the values named in ``EVALUATE_SUMS``, each times the
row's sample weight v (but the count), then of v [rank < k] for each k of
``topk``. Rows that are ignored add nothing (not even a NaN weight).

The binary cross-entropy kernel ``bce`` is elementwise over flat arrays:
``input`` and ``target`` (n,) of one float dtype; ``weight`` and
``pos_weight`` (period,) or empty, element j taking entry j % period;
``from_logits`` picks the loss; the gradient is ``grad_scale`` times
``grad_output`` (n,) float64 (or 1 where empty) times dloss/dinput, written
into ``grad_out`` (n,) or nothing when empty (it may be ``input``); each
element's loss goes into ``loss_out`` (n,) unless empty, and the sum of
block b, elements [b * block, (b + 1) * block), into ``block_sums[b]``.

Kernels never allocate their outputs, and reduce only into block sums;
the compiled ones check lengths (they run without bounds checks), these do
not. Each row's loss is
``sum_c v[c] * (lse - z[c])`` with ``v = w * q``, ``q`` the (smoothed) target
distribution; its gradient is ``grad_scale * (sum(v) * softmax(z) - v)``.
Here the losses are PyTorch's formulas written out with NumPy; the compiled
backends fuse them into one sweep per row.
"""

import functools

import numpy as np


def _log_softmax_rows(z):
    m = np.max(z, axis=1, keepdims=True, initial=-np.inf)  # C = 0: -inf
    shifted = z - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def label_stats(labels, n_classes, ignore_index, class_weight):
    """(position of the first label outside [0, n_classes) that is not
    ignore_index, or -1; summed weight of the labels that are not ignored)."""
    kept = labels != ignore_index
    bad = np.flatnonzero(kept & ((labels < 0) | (labels >= n_classes)))
    if bad.size:
        return int(bad[0]), 0.0
    if class_weight.size == 0:
        return -1, float(np.count_nonzero(kept))
    return -1, float(np.sum(class_weight[labels[kept]], dtype=np.float64))


def first_outside_unit(values, num_threads):
    """Position of the first value outside [0, 1] (NaN counts as inside), or -1."""
    bad = np.flatnonzero((values < 0) | (values > 1))
    return int(bad[0]) if bad.size else -1


def _serial_and_parallel(kernel):
    """The NumPy backend has one implementation; num_threads is ignored.

    NaN and inf propagate, whatever ``np.errstate`` the caller has set.
    """
    @functools.wraps(kernel)
    def run(*args):
        with np.errstate(all="ignore"):
            kernel(*args)

    return run, run


def _capped(logits, softcap):
    """(logits after the soft cap, d(capped)/d(logits)); (logits, None) without one."""
    if not softcap:
        return logits, None
    t = np.tanh(logits / softcap)
    return softcap * t, 1.0 - t * t


def _lse_rows(z):
    """logsumexp of each row of z (an infinite max is subtracted, as log_softmax does)."""
    m = np.max(z, axis=1, initial=-np.inf)
    return m + np.log(np.sum(np.exp(z - m[:, None]), axis=1))


def _xent_index(logits, labels, class_weight, label_smoothing, ignore_index, z_loss,
                softcap, grad_scale, loss_out, grad_out, num_threads):
    """PyTorch's formula: (1 - eps) w_y (-logp_y) + eps / C sum_c w_c (-logp_c),
    plus z_loss lse**2."""
    n_rows, n_classes = logits.shape
    eps = label_smoothing
    w = class_weight if class_weight.size else np.ones(n_classes, logits.dtype)
    rows = np.flatnonzero(labels != ignore_index)
    y = labels[rows]
    z, dcap = _capped(logits[rows], softcap)
    logp = _log_softmax_rows(z)
    loss = -(1.0 - eps) * w[y] * logp[np.arange(rows.size), y]
    if eps:  # only then do the other classes' weights take part (a nan weight stays out)
        loss = loss - eps / n_classes * np.sum(w * logp, axis=1)
    if z_loss:
        lse = _lse_rows(z)
        loss = loss + z_loss * lse * lse
    loss_out[:] = 0.0
    loss_out[rows] = loss
    if grad_out.size:
        # The row's loss is sum_c v_c (lse - z_c), so its gradient is T softmax - v.
        v = np.zeros_like(logp)
        v[np.arange(rows.size), y] = (1.0 - eps) * w[y]
        if eps:
            v += eps / n_classes * w
        total = np.sum(v, axis=1, keepdims=True)
        if z_loss:
            total = total + 2.0 * z_loss * lse[:, None]
        grad = grad_scale[rows, None] * (total * np.exp(logp) - v)
        grad_out[:] = 0.0
        grad_out[rows] = grad if dcap is None else grad * dcap


def _xent_probs(logits, probs, class_weight, label_smoothing, z_loss, softcap, grad_scale,
                loss_out, grad_out, num_threads):
    """PyTorch's formula: -sum_c w_c q_c logp_c with q = (1 - eps) t + eps / C,
    plus z_loss lse**2."""
    n_classes = logits.shape[1]
    q = probs * (1.0 - label_smoothing) + label_smoothing / n_classes
    v = q if class_weight.size == 0 else q * class_weight
    z, dcap = _capped(logits, softcap)
    logp = _log_softmax_rows(z)
    loss = -np.sum(v * logp, axis=1)  # 0 * -inf is nan, as in PyTorch
    if z_loss:
        lse = _lse_rows(z)
        loss = loss + z_loss * lse * lse
    loss_out[:] = loss
    if grad_out.size:
        total = np.sum(v, axis=1, keepdims=True)
        if z_loss:
            total = total + 2.0 * z_loss * lse[:, None]
        grad = grad_scale[:, None] * (total * np.exp(logp) - v)
        grad_out[:] = grad if dcap is None else grad * dcap


EVALUATE_SUMS = ("count", "loss", "loss_weight", "weight", "correct", "entropy", "lse")


def evaluate_row_buffers(n):
    """Empty per-row outputs of evaluate for n rows, in the kernel's order."""
    return {"loss": np.empty(n), "lse": np.empty(n), "entropy": np.empty(n),
            "argmax": np.empty(n, np.int64), "rank": np.empty(n, np.int64)}


def check_evaluate_buffers(n_rows, labels, sample_weight, topk, block_rows, block_sums,
                           row_outs):
    """ValueError unless evaluate's arrays have the lengths that its kernels
    write and read without bounds checks (row_outs: the five per-row outputs)."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be positive; got {block_rows}")
    shape = ((n_rows + block_rows - 1) // block_rows, len(EVALUATE_SUMS) + topk.shape[0])
    if tuple(block_sums.shape) != shape:
        raise ValueError(f"block_sums must have shape {shape}; got {tuple(block_sums.shape)}")
    rows = n_rows if row_outs[0].shape[0] else 0
    for array, name, length in ((labels, "labels", n_rows),
                                (sample_weight, "sample_weight",
                                 n_rows if sample_weight.shape[0] else 0),
                                *zip(row_outs, ("loss_out", "lse_out", "entropy_out",
                                                "argmax_out", "rank_out"), [rows] * 5)):
        if array.shape[0] != length:
            raise ValueError(f"{name} must have length {length}; got {array.shape[0]}")


def _evaluate(logits, labels, class_weight, sample_weight, ignore_index, topk, block_rows,
              block_sums, loss_out, lse_out, entropy_out, argmax_out, rank_out, num_threads):
    """Each row's loss, logsumexp, entropy, argmax and the target's rank, and
    their sums by blocks."""
    n_rows, n_classes = logits.shape
    if not loss_out.size:
        loss_out, lse_out, entropy_out, argmax_out, rank_out = \
            evaluate_row_buffers(n_rows).values()
    w = class_weight if class_weight.size else np.ones(n_classes, logits.dtype)
    _logsumexp(logits, lse_out, num_threads)
    logp = _log_softmax_rows(logits)
    p = np.exp(logp)
    entropy_out[:] = -np.sum(np.where(p == 0, 0.0, p * logp), axis=1)  # 0 log 0 = 0
    argmax_out[:] = np.argmax(logits, axis=1) if n_classes else 0
    kept = labels != ignore_index
    rows = np.flatnonzero(kept)
    y = labels[rows]
    loss_out[:] = 0.0
    loss_out[rows] = -w[y] * logp[rows, y]
    z = logits[rows]
    zy = z[np.arange(rows.size), y][:, None]
    z_nan, zy_nan = np.isnan(z), np.isnan(zy)
    above = (z > zy) | (z_nan & ~zy_nan)
    tie = (z == zy) | (z_nan & zy_nan)
    later = np.arange(n_classes) > y[:, None]
    rank_out[:] = n_classes
    rank_out[rows] = np.sum(above | (tie & later), axis=1)
    evaluate_block_sums(labels, class_weight, sample_weight, ignore_index, topk, block_rows,
                        block_sums, loss_out, lse_out, entropy_out, argmax_out, rank_out)


def evaluate_block_sums(labels, class_weight, sample_weight, ignore_index, topk, block_rows,
                        block_sums, loss, lse, entropy, argmax, rank):
    """``block_sums`` of evaluate (see above) from each row's values."""
    kept = labels != ignore_index
    v = sample_weight if sample_weight.size else np.ones(labels.shape[0])
    w_y = (class_weight[np.where(kept, labels, 0)].astype(np.float64) if class_weight.size
           else 1.0)
    with np.errstate(all="ignore"):  # NaN and inf are values here
        values = [np.ones_like(v), v * loss, v * w_y, v, v * (argmax == labels), v * entropy,
                  v * lse] + [v * (rank < k) for k in topk]
    if labels.shape[0]:
        counted = np.where(kept[:, None], np.stack(values, axis=1), 0.0)
        block_sums[:] = np.add.reduceat(counted, np.arange(0, labels.shape[0], block_rows))


# The floor of x (1 - x) in PyTorch's gradient: 1e-12, as a float32.
BCE_EPS = float(np.float32(1e-12))


def _bce(input, target, weight, pos_weight, from_logits, grad_scale, grad_output, block,
         block_sums, loss_out, grad_out, num_threads):
    """PyTorch's losses, in float64: each log clamped at -100 for
    probabilities; (1 - y) x - lw log(sigmoid(x)), lw = 1 + (pw - 1) y, for
    logits."""
    n = input.shape[0]
    x = input.astype(np.float64)
    y = target.astype(np.float64)
    w = np.resize(weight, n) if weight.size else 1.0
    if from_logits:
        pw = np.resize(pos_weight, n) if pos_weight.size else 1.0
        lw = 1.0 + (pw - 1.0) * y
        # (1 - y) x - lw log_sigmoid(x) rearranged so that no two terms
        # cancel (they do for x << 0); at x = -inf the definition itself in
        # IEEE arithmetic, as in PyTorch: NaN for y <= 1, +inf for y > 1
        loss = (lw * np.log1p(np.exp(-np.abs(x))) + (1.0 - y) * np.maximum(x, 0.0)
                - (lw - 1.0 + y) * np.minimum(x, 0.0))
        loss = w * np.where(x > -np.inf, loss, (1.0 - y) * x + lw * np.inf)
        grad = w * (lw / (1.0 + np.exp(-x)) - pw * y)
    else:
        loss = -w * (y * np.maximum(np.log(x), -100.0)
                     + (1.0 - y) * np.maximum(np.log1p(-x), -100.0))
        grad = w * (x - y) / np.maximum(x * (1.0 - x), BCE_EPS)
    if loss_out.size:
        loss_out[:] = loss
    if n:
        block_sums[:] = np.add.reduceat(loss, np.arange(0, n, block))
    if grad_out.size:
        grad_out[:] = grad_scale * (grad_output if grad_output.size else 1.0) * grad


def _log_softmax(logits, out, num_threads):
    out[:] = _log_softmax_rows(logits)


def _softmax(logits, out, num_threads):
    out[:] = np.exp(_log_softmax_rows(logits))


def _logsumexp(logits, lse_out, num_threads):
    # An infinite max is not subtracted (as in torch.logsumexp): an all -inf
    # row gives -inf and a +inf entry gives +inf, not nan.
    m = np.max(logits, axis=1, initial=-np.inf)  # C = 0: -inf, as torch.logsumexp
    shift = np.where(np.isinf(m), 0.0, m)[:, None]
    lse_out[:] = shift[:, 0] + np.log(np.sum(np.exp(logits - shift), axis=1))


xent_index_serial, xent_index_parallel = _serial_and_parallel(_xent_index)
xent_probs_serial, xent_probs_parallel = _serial_and_parallel(_xent_probs)
evaluate_serial, evaluate_parallel = _serial_and_parallel(_evaluate)
bce_serial, bce_parallel = _serial_and_parallel(_bce)
log_softmax_serial, log_softmax_parallel = _serial_and_parallel(_log_softmax)
softmax_serial, softmax_parallel = _serial_and_parallel(_softmax)
logsumexp_serial, logsumexp_parallel = _serial_and_parallel(_logsumexp)
