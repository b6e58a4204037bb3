"""The ``"cuda"`` backend's kernel interface for NumPy arrays (see
``_reference.py``): each call copies its inputs to the device, runs the CUDA
kernels and copies the results back. CUDA arrays themselves go through
``_device.py``, which copies nothing.
"""

import numpy as np
from numba import cuda

from .._reference import check_evaluate_buffers, evaluate_block_sums, evaluate_row_buffers
from . import _launch as L
from ._kernels import CHUNK


def _to_device(array, stream):
    return cuda.to_device(np.ascontiguousarray(array), stream=stream)


def _copy_back(device, host, stream):
    if host.size:
        host[...] = device.copy_to_host(stream=stream)


def _grad_scale(grad_scale, stream):
    """grad_scale on the device: one value when the API passed it repeated."""
    if grad_scale.shape[0] and grad_scale.strides[0] == 0:
        grad_scale = grad_scale[:1]
    return _to_device(grad_scale if grad_scale.size else np.zeros(1), stream)


def _grad(grad_out, stream):
    if grad_out.size:
        return cuda.device_array(grad_out.shape, grad_out.dtype, stream=stream)
    return L.empty(grad_out.dtype, 2)


def _xent_index(logits, labels, class_weight, label_smoothing, ignore_index, z_loss, softcap,
                grad_scale, loss_out, grad_out, num_threads):
    stream = cuda.stream()
    z = _to_device(logits, stream)
    loss = cuda.device_array(loss_out.shape, np.float64, stream=stream)
    g = _grad(grad_out, stream)
    L.xent_index(z, _to_device(labels, stream), _to_device(class_weight, stream),
                 label_smoothing, ignore_index, z_loss, softcap, _grad_scale(grad_scale, stream),
                 L.empty(np.float64), 1.0, loss, g, stream)
    _copy_back(loss, loss_out, stream)
    _copy_back(g, grad_out, stream)
    stream.synchronize()


def _xent_probs(logits, probs, class_weight, label_smoothing, z_loss, softcap, grad_scale,
                loss_out, grad_out, num_threads):
    stream = cuda.stream()
    z = _to_device(logits, stream)
    loss = cuda.device_array(loss_out.shape, np.float64, stream=stream)
    g = _grad(grad_out, stream)
    L.xent_probs(z, _to_device(probs, stream), _to_device(class_weight, stream),
                 label_smoothing, z_loss, softcap, _grad_scale(grad_scale, stream),
                 L.empty(np.float64), 1.0, loss, g, stream)
    _copy_back(loss, loss_out, stream)
    _copy_back(g, grad_out, stream)
    stream.synchronize()


def _evaluate(logits, labels, class_weight, sample_weight, ignore_index, topk, block_rows,
              block_sums, loss_out, lse_out, entropy_out, argmax_out, rank_out, num_threads):
    """Each row's values on the device; their block sums here, on the host."""
    check_evaluate_buffers(logits.shape[0], labels, sample_weight, topk, block_rows, block_sums,
                           (loss_out, lse_out, entropy_out, argmax_out, rank_out))
    hosts = ((loss_out, lse_out, entropy_out, argmax_out, rank_out) if loss_out.size else
             tuple(evaluate_row_buffers(logits.shape[0]).values()))
    stream = cuda.stream()
    outs = [cuda.device_array(host.shape, host.dtype, stream=stream) for host in hosts]
    L.evaluate(_to_device(logits, stream), _to_device(labels, stream),
               _to_device(class_weight, stream), ignore_index, *outs, stream)
    for device, host in zip(outs, hosts):
        _copy_back(device, host, stream)
    stream.synchronize()
    evaluate_block_sums(labels, class_weight, sample_weight, ignore_index, topk, block_rows,
                        block_sums, *hosts)


def _bce(input, target, weight, pos_weight, from_logits, grad_scale, grad_output, block,
         block_sums, loss_out, grad_out, num_threads):
    if block != CHUNK:
        raise ValueError(f"the CUDA kernels sum blocks of {CHUNK} elements, not {block}")
    stream = cuda.stream()
    sums = cuda.device_array(block_sums.shape, np.float64, stream=stream)
    loss = (cuda.device_array(loss_out.shape, loss_out.dtype, stream=stream) if loss_out.size
            else L.empty(loss_out.dtype))
    g = (cuda.device_array(grad_out.shape, grad_out.dtype, stream=stream) if grad_out.size
         else L.empty(grad_out.dtype))
    go = _to_device(grad_output, stream) if grad_output.size else L.empty(np.float64)
    L.bce(_to_device(input, stream), _to_device(target, stream), _to_device(weight, stream),
          _to_device(pos_weight, stream), from_logits, grad_scale, go, sums, loss, g, stream)
    _copy_back(sums, block_sums, stream)
    _copy_back(loss, loss_out, stream)
    _copy_back(g, grad_out, stream)
    stream.synchronize()


def _transform(log):
    def kernel(logits, out, num_threads):
        stream = cuda.stream()
        result = cuda.device_array(out.shape, out.dtype, stream=stream)
        L.transform(_to_device(logits, stream), result, log, stream)
        _copy_back(result, out, stream)
        stream.synchronize()
    return kernel


def _logsumexp(logits, lse_out, num_threads):
    stream = cuda.stream()
    lse = cuda.device_array(lse_out.shape, np.float64, stream=stream)
    L.logsumexp(_to_device(logits, stream), lse, stream)
    _copy_back(lse, lse_out, stream)
    stream.synchronize()


# The GPU runs every kernel with all its threads: num_threads plays no part.
xent_index_serial = xent_index_parallel = _xent_index
xent_probs_serial = xent_probs_parallel = _xent_probs
evaluate_serial = evaluate_parallel = _evaluate
bce_serial = bce_parallel = _bce
log_softmax_serial = log_softmax_parallel = _transform(True)
softmax_serial = softmax_parallel = _transform(False)
logsumexp_serial = logsumexp_parallel = _logsumexp
