"""``evaluate``: the loss and the usual metrics of a batch, from one read of the logits.

The ``evaluate`` kernel writes five values per row (loss, log-sum-exp,
entropy, argmax, the target's rank) and nothing of size N x C; the metrics
are weighted means of those, computed here. Rows go through the kernel in
chunks, so that arrays larger than memory (``np.memmap``) stream through.
"""

import math
import sys
import time

import numpy as np

from . import _validation as v
from ._api import _class_indices, _class_logits, _device_module, _divide, _kernel, _rows

# Per-row values are summed in blocks of REDUCE_ROWS rows, aligned on the
# whole batch, and the block sums are added exactly (math.fsum): the results
# do not depend on chunk_rows or num_threads.
REDUCE_ROWS = 1024
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
    progress : bool or writable text file, default False
        For long runs over host arrays: the share of rows done and the read
        rate, on one line of ``sys.stderr`` (or of this file) rewritten at most
        twice a second, and a last line when done.
    backend, num_threads : see ``cross_entropy``.

    Returns
    -------
    dict
        ``"loss"``, ``"accuracy"`` (of ``argmax``, the first maximum as
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
    if device is not None:
        shape = tuple(logits.shape)
        rows = device.evaluate_rows(logits, target, weight, ignore_index, sample_weight)
        total = _Totals(topk, shape[-1], ignore_index, per_sample, shape[:-1])
        class_weight = (None if weight is None else
                        np.asarray(rows["class_weight"], np.float64))
        total.add(0, rows["labels"], rows["sample_weight"], class_weight, rows)
        return total.result()

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
    sample_rows = (None if sample_weight is None
                   else v.check_sample_weight(sample_weight, batch_shape))
    # 2-D logits are read in place, chunk by chunk; others become rows first.
    rows = z.reshape(1, n_classes) if z.ndim == 1 else z if z.ndim == 2 else \
        _rows(z, axis, compute)
    n_rows = rows.shape[0]
    step = chunk_rows or max(1, CHUNK_ELEMENTS // n_classes)
    step = -(-step // REDUCE_ROWS) * REDUCE_ROWS
    kernel, num_threads = _kernel("evaluate", backend, num_threads,
                                  min(step, n_rows) * n_classes)

    # Everything is checked: from here on nothing raises.
    total = _Totals(topk, n_classes, ignore_index, per_sample, batch_shape)
    shown = _Progress(stream, n_rows, n_classes * rows.itemsize) if stream else None
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        chunk = _rows(rows[start:stop], 1, compute)
        out = _row_buffers(stop - start)
        kernel(chunk, labels[start:stop], class_weight, ignore_index, out["loss"],
               out["lse"], out["entropy"], out["argmax"], out["rank"], num_threads)
        total.add(start, labels[start:stop],
                  None if sample_rows is None else sample_rows[start:stop],
                  class_weight if weight is not None else None, out)
        if shown:
            shown.update(stop)
    if shown:
        shown.update(n_rows, final=True)
    return total.result()


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


def _row_buffers(n):
    return {"loss": np.empty(n), "lse": np.empty(n), "entropy": np.empty(n),
            "argmax": np.empty(n, np.int64), "rank": np.empty(n, np.int64)}


class _Totals:
    """The weighted sums of the metrics, block by block, and the per-sample values."""

    def __init__(self, topk, n_classes, ignore_index, per_sample, batch_shape):
        self.topk = topk
        self.n_classes = n_classes
        self.ignore_index = ignore_index
        self.batch_shape = batch_shape
        self.blocks = {name: [] for name in
                       ("loss", "loss_weight", "weight", "accuracy", "entropy", "lse")
                       + tuple(topk)}
        self.count = 0
        self.per_sample = ([] if per_sample else None)

    def add(self, start, labels, sample_weight, class_weight, rows):
        """The rows [start, start + len(labels)) of the batch (start a multiple of
        REDUCE_ROWS), with the kernel's per-row values ``rows``."""
        kept = labels != self.ignore_index
        n_kept = int(np.count_nonzero(kept))
        correct = rows["argmax"] == labels
        if n_kept < len(labels):
            correct &= kept
        # NaN and inf propagate as values, never as errors, whatever np.errstate
        # is: an ignored row's inf meets its weight 0 here.
        with np.errstate(invalid="ignore", over="ignore"):
            if sample_weight is None and class_weight is None and n_kept == len(labels):
                self._add_unweighted(kept, correct, rows)
            else:
                # Ignored rows weigh 0, whatever their sample weight (even nan).
                weights = kept.astype(np.float64) if sample_weight is None else \
                    np.where(kept, sample_weight, 0.0)
                self._add_sums(labels, weights, class_weight, kept, correct, rows)
        self.count += n_kept
        if self.per_sample is not None:
            self.per_sample.append({name: rows[name] for name in
                                    ("loss", "lse", "entropy", "argmax", "rank")}
                                   | {"correct": correct})

    def _hits(self, k, kept, correct, rows):
        """The rows whose label is among the top k."""
        # Two classes: scikit-learn scores the second class's column alone,
        # and a tie goes to the first class, as argmax takes it.
        if self.n_classes == 2:
            return correct if k == 1 else kept
        return rows["rank"] < k

    def _add_unweighted(self, kept, correct, rows):
        """_add_sums when every weight is 1: the same sums, bit for bit (a block
        of counts sums exactly), in fewer passes over the rows."""
        n = len(correct)
        counts = {"loss_weight": n, "weight": n, "accuracy": np.count_nonzero(correct)}
        for k in self.topk:
            counts[k] = np.count_nonzero(self._hits(k, kept, correct, rows))
        for name, count in counts.items():
            self.blocks[name].append(np.array([float(count)]))
        for name in ("loss", "entropy", "lse"):
            self._add_blocks(name, rows[name])

    def _add_sums(self, labels, weights, class_weight, kept, correct, rows):
        """Each metric's weighted values, summed in blocks of REDUCE_ROWS rows."""
        values = {
            "loss": weights * rows["loss"],
            "loss_weight": (weights if class_weight is None else
                            weights * class_weight[np.where(kept, labels, 0)]),
            "weight": weights,
            "accuracy": weights * correct,
            "entropy": np.where(kept, weights * rows["entropy"], 0.0),
            "lse": np.where(kept, weights * rows["lse"], 0.0),
        }
        for k in self.topk:
            values[k] = weights * self._hits(k, kept, correct, rows)
        for name, value in values.items():
            self._add_blocks(name, value)

    def _add_blocks(self, name, value):
        """The sums of ``value`` over blocks of REDUCE_ROWS rows."""
        if len(value):
            self.blocks[name].append(np.add.reduceat(value, np.arange(0, len(value),
                                                                      REDUCE_ROWS)))

    def result(self):
        sums = {name: _exact_sum(blocks) for name, blocks in self.blocks.items()}
        weight = sums["weight"]
        result = {
            "loss": _divide(sums["loss"], sums["loss_weight"]),
            "accuracy": _divide(sums["accuracy"], weight),
            "top_k_accuracy": {k: _divide(sums[k], weight) for k in self.topk},
            "entropy": _divide(sums["entropy"], weight),
            "logsumexp": _divide(sums["lse"], weight),
            "n_samples": self.count,
        }
        if self.per_sample is not None:
            parts = self.per_sample or [_row_buffers(0) | {"correct": np.empty(0, bool)}]
            joined = {name: np.concatenate([p[name] for p in parts]).reshape(self.batch_shape)
                      for name in parts[0]}
            result["per_sample"] = {
                "loss": joined["loss"], "entropy": joined["entropy"],
                "logsumexp": joined["lse"], "argmax": joined["argmax"],
                "correct": joined["correct"], "rank": joined["rank"]}
        return result


def _exact_sum(blocks):
    """The correctly rounded sum of the block sums (inf and nan propagate)."""
    if not blocks:
        return 0.0
    values = np.concatenate(blocks)
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):  # inf - inf, or an overflow on the way
        with np.errstate(invalid="ignore", over="ignore"):
            return float(np.sum(values))
