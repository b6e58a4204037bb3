"""CUDA arrays of any library as Numba device arrays, without copies, and new
arrays of the caller's library on the caller's stream.

PyTorch tensors run on PyTorch's current stream, CuPy arrays on CuPy's, and
other ``__cuda_array_interface__`` producers on the stream they name (else the
default stream). Nothing here synchronises: Numba's import-time sync is off.
bfloat16 tensors travel as their uint16 bits (the kernels convert).
"""

import numpy as np
from numba import cuda

from .._validation import is_cuda_array  # noqa: F401 (used here and by _device)

BF16 = "bfloat16"


class DeviceArray:
    """A caller's CUDA array: ``nb`` (a Numba view of it), ``dtype`` (NumPy
    dtype, or the string "bfloat16"), ``shape``, ``lib`` and ``stream``."""

    def __init__(self, obj, name):
        self.obj = obj
        self.name = name
        module = type(obj).__module__
        if module.startswith("torch"):
            self.lib = "torch"
            self._init_torch(obj)
        elif module.startswith(("numba.cuda", "numba_cuda")):
            self.lib = "numba"
            self.nb = obj
            self.dtype = np.dtype(obj.dtype)
            self.stream = getattr(obj, "stream", 0) or cuda.default_stream()
        else:
            self.lib = "cupy" if module.startswith("cupy") else "other"
            desc = obj.__cuda_array_interface__
            self.nb = cuda.from_cuda_array_interface(desc, owner=obj, sync=False)
            self.dtype = np.dtype(self.nb.dtype)
            self.stream = _stream_of(obj, desc)
        self.shape = tuple(self.nb.shape)

    def _init_torch(self, t):
        import torch
        self.stream = _external_stream(torch.cuda.current_stream(t.device).cuda_stream)
        if t.dtype == torch.bfloat16:
            self.dtype = BF16
            desc = dict(t.view(torch.int16).__cuda_array_interface__, typestr="<u2")
        else:
            desc = t.__cuda_array_interface__
            self.dtype = np.dtype(desc["typestr"])
        desc = dict(desc, stream=None)  # the stream is PyTorch's current one, above
        self.nb = cuda.from_cuda_array_interface(desc, owner=t, sync=False)

    def new(self, shape, dtype):
        """An uninitialised array of this array's library, and its Numba view."""
        if self.lib == "torch":
            import torch
            torch_dtype = torch.bfloat16 if dtype == BF16 else getattr(torch, np.dtype(dtype).name)
            with torch.cuda.device(self.obj.device):
                out = torch.empty(shape, dtype=torch_dtype, device=self.obj.device)
            return out, DeviceArray(out, "out").nb
        if self.lib == "cupy":
            import cupy
            out = cupy.empty(shape, dtype)
            return out, DeviceArray(out, "out").nb
        out = cuda.device_array(shape, np.dtype(dtype), stream=self.stream)
        return out, out

    def allocator(self, shape, dtype, stream):
        """``new`` for kernels' scratch: only the Numba view."""
        return self.new(shape, dtype)[1]

    def scalar(self, dtype):
        """A 0-d array of this library, and a 1-element Numba view to write it."""
        out, nb = self.new((1,), dtype)
        return out.reshape(()), nb


def _stream_of(obj, desc):
    if type(obj).__module__.startswith("cupy"):
        import cupy
        ptr = cupy.cuda.get_current_stream().ptr
    else:
        ptr = desc.get("stream") or 0
    # 1 and 2 name the legacy and per-thread default streams (CUDA array interface v3)
    if ptr == 1:
        return cuda.legacy_default_stream()
    if ptr == 2:
        return cuda.per_thread_default_stream()
    return _external_stream(ptr) if ptr else cuda.default_stream()


_streams = {}


def _external_stream(ptr):
    """Numba's handle on a stream of another library (made once per stream)."""
    stream = _streams.get(ptr)
    if stream is None:
        stream = _streams[ptr] = cuda.external_stream(ptr)
    return stream


def to_device(values, like, dtype, name):
    """``values`` (a host value or a CUDA array of this process) on the device,
    as a contiguous Numba array of ``dtype``; small arguments only (weights)."""
    if is_cuda_array(values):
        arr = DeviceArray(values, name)
        if arr.dtype == np.dtype(dtype) and arr.nb.is_c_contiguous():
            return arr.nb
        host = host_copy(arr)
    else:
        host = np.asarray(values)
    return cuda.to_device(np.ascontiguousarray(host, dtype), stream=like.stream)


def host_copy(arr):
    """A DeviceArray's values in a NumPy array (bfloat16 as float32); waits."""
    if arr.dtype == BF16:
        bits = arr.nb.copy_to_host(stream=arr.stream).astype(np.uint32) << 16
        arr.stream.synchronize()
        return bits.view(np.float32)
    host = arr.nb.copy_to_host(stream=arr.stream)
    arr.stream.synchronize()
    return host


def overlaps(a, b):
    """Whether two Numba device arrays share any byte (conservatively)."""
    if hasattr(a, "_ary") and hasattr(b, "_ary"):  # the simulator's arrays
        return np.may_share_memory(a._ary, b._ary)

    def extent(x):
        desc = x.__cuda_array_interface__
        start = desc["data"][0]
        span = sum((n - 1) * abs(st) for n, st in zip(x.shape, x.strides))
        low = start + sum((n - 1) * st for n, st in zip(x.shape, x.strides) if st < 0)
        return low, low + span + x.dtype.itemsize if x.size else low

    (a0, a1), (b0, b1) = extent(a), extent(b)
    return a0 < b1 and b0 < a1


def same_view(a, b):
    if hasattr(a, "_ary") and hasattr(b, "_ary"):
        return (a._ary.__array_interface__ == b._ary.__array_interface__)
    return (a.shape == b.shape and a.strides == b.strides
            and a.__cuda_array_interface__["data"][0] == b.__cuda_array_interface__["data"][0])
