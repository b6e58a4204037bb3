"""``evaluate``: the loss and the usual metrics of a batch, from one read of the logits.

The ``evaluate`` kernel sums, block by block of rows, what the metrics are
means of (the weighted loss, hits, entropy, ...) and writes nothing of size
N x C, nor anything per row unless asked; the means are taken here. Rows go
through the kernel in chunks, so that arrays larger than memory
(``np.memmap``) stream through.
"""

import math
import sys
import time

import numpy as np

from . import _validation as v
from ._api import (_class_indices, _class_logits, _device_module, _divide, _kernel, _row_view,
                   _rows)
from ._reference import EVALUATE_SUMS, evaluate_block_sums, evaluate_row_buffers

# Rows are summed in blocks of a power of two rows, about BLOCK_ELEMENTS
# logits, at most MAX_BLOCK_ROWS (many blocks, for threads to share), aligned
# on the whole batch; the block sums are added exactly (math.fsum). The
# results do not depend on chunk_rows or num_threads.
BLOCK_ELEMENTS = 1 << 16
MAX_BLOCK_ROWS = 1024
# The default chunk: about this many logits (16 MiB of float32).
CHUNK_ELEMENTS = 1 << 22


def evaluate(logits, target, *, topk=(1, 5), weight=None, ignore_index=-100,
             sample_weight=None, per_sample=False, chunk_rows=None, progress=False,
             backend="auto", num_threads=None):
    """Mean loss, accuracy, top-k accuracies, entropy and log-sum-exp of a batch.

    One read of the logits and no write of their size: the cost of the loss
    alone, for all the metrics of an evaluation loop.

    Parameters
    ----------
    logits : array_like, shape (N, C), (C,) or (N, C, d1, ..., dk)
        Unnormalised scores; the class axis is axis 1 (axis 0 for 1-D input).
        A ``np.memmap`` larger than memory works: rows are read in chunks.
    target : array_like of integers, shape (N,), () or (N, d1, ..., dk)
        Class indices in [0, C), or ``ignore_index``.
    topk : int or sequence of int, default (1, 5)
        The k of each top-k accuracy.
    weight : array_like, shape (C,), optional
        Class weights of the loss, as in ``cross_entropy``: the mean loss is
        ``sum(sample_weight * weight[y] * loss) / sum(sample_weight * weight[y])``.
        The other metrics do not use them.
    ignore_index : int, default -100
        Samples with this target count in no metric.
    sample_weight : array_like of the target's shape, optional
        Every metric is the ``sample_weight``-weighted mean over the counted
        samples, as in scikit-learn's ``accuracy_score``, ``top_k_accuracy_score``
        and ``log_loss``.
    per_sample : bool, default False
        Also return each sample's values (without ``sample_weight``).
    chunk_rows : int, optional
        Rows per kernel call (rounded up to a multiple of 1024); by default
        about 4 million logits per call. The results do not depend on it.
        CUDA arrays go through in one call.
    progress : bool or writable text file, default False
        For long runs over host arrays: the share of rows done and the read
        rate, on one line of ``sys.stderr`` (or of this file) rewritten at most
        twice a second, and a last line when done.
    backend, num_threads : see ``cross_entropy``.

    Returns
    -------
    dict
        ``"loss"`` (not clipped: ``log_loss`` clips probabilities at the
        machine epsilon), ``"accuracy"`` (of ``argmax``, the first maximum as
        ``np.argmax`` takes it), ``"top_k_accuracy"`` (a dict k -> accuracy,
        ties counted as scikit-learn's ``top_k_accuracy_score`` counts them: a
        tie goes to the larger class index), ``"entropy"`` (of the softmax, in
        nats), ``"logsumexp"``: Python floats, nan when no sample counts;
        ``"n_samples"``: the number of counted samples. With ``per_sample``:
        ``"per_sample"``, a dict of NumPy arrays of the target's shape (on the
        host, for device input too): ``"loss"``, ``"entropy"``, ``"logsumexp"``,
        ``"argmax"``, ``"correct"`` (argmax is the target), ``"rank"`` (how
        many classes rank before the target).
        Ignored samples have loss 0, correct False and rank C.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [1.2, 0.4, 3.0]])
    >>> result = fastxent.evaluate(logits, [0, 2, 2], topk=(1, 2))
    >>> round(result["loss"], 4), round(result["accuracy"], 4)
    (1.0173, 0.6667)
    >>> result["top_k_accuracy"]
    {1: 0.6666666666666666, 2: 0.6666666666666666}
    """
    topk = v.check_topk(topk)
    ignore_index = v.check_ignore_index(ignore_index)
    chunk_rows = v.check_chunk_rows(chunk_rows)
    stream = _progress_stream(progress)
    device = _device_module(logits, backend)
    topk_array = np.array(topk, np.int64)
    if device is not None:
        shape = tuple(logits.shape)
        rows = device.evaluate_rows(logits, target, weight, ignore_index, sample_weight)
        block_rows = _block_rows(shape[-1])
        sums = _block_sums(len(rows["labels"]), block_rows, topk)
        per_row = {name: rows[name] for name in ("loss", "lse", "entropy", "argmax", "rank")}
        no_weight = np.empty(0)
        evaluate_block_sums(
            rows["labels"], no_weight if weight is None else rows["class_weight"],
            no_weight if sample_weight is None else rows["sample_weight"], ignore_index,
            topk_array, block_rows, sums, *per_row.values())
        return _result(sums, topk, shape[-1], rows["labels"], ignore_index, shape[:-1],
                       per_row if per_sample else None)

    z, compute, axis, batch_shape, class_weight = _class_logits(logits, "logits", weight)
    n_classes = z.shape[axis]
    t = v.as_array(target, "target")
    if t.dtype.kind not in "iu":
        raise TypeError(f"target of evaluate must hold integer class indices; got dtype "
                        f"{t.dtype} (for probabilities use cross_entropy)")
    if t.shape != batch_shape:
        raise ValueError(f"target must have shape {batch_shape} for logits of shape "
                         f"{z.shape}; got shape {t.shape}")
    labels, _ = _class_indices(t, n_classes, ignore_index, class_weight)
    sample_rows = (np.empty(0) if sample_weight is None
                   else v.check_sample_weight(sample_weight, batch_shape))
    # Rows are read in place, chunk by chunk: a row view of the logits, or for
    # (N, C, d1, ..., dk) logits with the class axis apart, each chunk gathered.
    rows = _row_view(z, axis)
    moved = np.moveaxis(z, axis, -1) if rows is None else None
    n_rows = math.prod(batch_shape)
    block_rows = _block_rows(n_classes)
    step = chunk_rows or max(1, CHUNK_ELEMENTS // n_classes)
    step = -(-step // MAX_BLOCK_ROWS) * MAX_BLOCK_ROWS  # whole blocks
    kernel, num_threads = _kernel("evaluate", backend, num_threads,
                                  min(step, n_rows) * n_classes)

    # Everything is checked: from here on nothing raises.
    sums = _block_sums(n_rows, block_rows, topk)
    per_row = evaluate_row_buffers(n_rows if per_sample else 0)
    gathered = None if moved is None else np.empty((min(step, n_rows), n_classes), compute)
    shown = _Progress(stream, n_rows, n_classes * z.itemsize) if stream else None
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        if moved is None:
            chunk = _rows(rows[start:stop], 1, compute)
        else:
            chunk = gathered[:stop - start]
            _gather_rows(moved, start, stop, chunk)
        kernel(chunk, labels[start:stop], class_weight,
               sample_rows[start:stop] if sample_rows.size else sample_rows, ignore_index,
               topk_array, block_rows, sums[start // block_rows:-(-stop // block_rows)],
               *(out[start:stop] if per_sample else out for out in per_row.values()),
               num_threads)
        if shown:
            shown.update(stop)
    if shown:
        shown.update(n_rows, final=True)
    return _result(sums, topk, n_classes, labels, ignore_index, batch_shape,
                   per_row if per_sample else None)


def _gather_rows(moved, start, stop, out):
    """Rows [start, stop) of ``moved`` (..., C), taken as rows in C order, into
    ``out``, reading only those: whole slices of the first axis, and the
    partial ones at either end from the axes after it."""
    if moved.ndim == 2:
        out[...] = moved[start:stop]
        return
    inner = math.prod(moved.shape[1:-1])
    done = 0
    while start < stop:
        first, offset = divmod(start, inner)
        if offset == 0 and stop - start >= inner:
            whole = (stop - start) // inner
            out[done:done + whole * inner].reshape((whole,) + moved.shape[1:])[...] = \
                moved[first:first + whole]
            count = whole * inner
        else:
            count = min(inner - offset, stop - start)
            _gather_rows(moved[first], offset, offset + count, out[done:done + count])
        start += count
        done += count


def _block_rows(n_classes):
    """Rows per block of sums: a power of two, about BLOCK_ELEMENTS logits."""
    rows = 1
    while rows < MAX_BLOCK_ROWS and 2 * rows * n_classes <= BLOCK_ELEMENTS:
        rows *= 2
    return rows


def _block_sums(n_rows, block_rows, topk):
    return np.empty((-(-n_rows // block_rows), len(EVALUATE_SUMS) + len(topk)))


def _progress_stream(progress):
    if progress is True:
        return sys.stderr
    if progress is False or progress is None:
        return None
    if callable(getattr(progress, "write", None)):
        return progress
    raise TypeError(f"progress must be True, False or a writable text file; got "
                    f"{type(progress).__name__}")


class _Progress:
    """'evaluate: 41.0% of 1000000 rows, 3.10 GB/s' on one line, rewritten at
    most twice a second."""

    def __init__(self, stream, n_rows, row_bytes):
        self.stream, self.n_rows, self.row_bytes = stream, n_rows, row_bytes
        self.start = self.last = time.perf_counter()

    def update(self, done, final=False):
        now = time.perf_counter()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        share = 100.0 * done / self.n_rows if self.n_rows else 100.0
        rate = done * self.row_bytes / max(now - self.start, 1e-9) / 1e9
        self.stream.write(f"\revaluate: {share:5.1f}% of {self.n_rows} rows, {rate:.2f} GB/s"
                          + ("\n" if final else ""))
        self.stream.flush()


def _result(block_sums, topk, n_classes, labels, ignore_index, batch_shape, per_row):
    """evaluate's dict, from the kernel's block sums (and each row's values, or None)."""
    sums = dict(zip(EVALUATE_SUMS + topk, map(_exact_sum, block_sums.T)))
    if n_classes == 2:
        # scikit-learn scores the second class's column alone, and a tie goes
        # to the first class, as argmax takes it: top-1 is the accuracy, and
        # any larger k counts every sample.
        sums |= {k: sums["correct"] if k == 1 else sums["weight"] for k in topk}
    weight = sums["weight"]
    result = {
        "loss": _divide(sums["loss"], sums["loss_weight"]),
        "accuracy": _divide(sums["correct"], weight),
        "top_k_accuracy": {k: _divide(sums[k], weight) for k in topk},
        "entropy": _divide(sums["entropy"], weight),
        "logsumexp": _divide(sums["lse"], weight),
        "n_samples": int(sums["count"]),
    }
    if per_row is not None:
        correct = (per_row["argmax"] == labels) & (labels != ignore_index)
        result["per_sample"] = {
            name: values.reshape(batch_shape) for name, values in
            (("loss", per_row["loss"]), ("entropy", per_row["entropy"]),
             ("logsumexp", per_row["lse"]), ("argmax", per_row["argmax"]),
             ("correct", correct), ("rank", per_row["rank"]))}
    return result


def _exact_sum(values):
    """The correctly rounded sum of ``values`` (inf and nan propagate)."""
    values = values.tolist()
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):  # inf - inf, or an overflow on the way
        with np.errstate(invalid="ignore", over="ignore"):
            return float(np.sum(values))
