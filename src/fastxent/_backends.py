"""Backend registry: name -> lazily loaded kernel module, and why one is missing.

A backend module exposes, for each operation ``op`` of ``KERNEL_OPS``,
``{op}_serial`` and ``{op}_parallel`` with the arguments documented in
``_reference.py``. Adding a backend is one entry in ``_LOADERS``.
"""

import functools
import importlib
import os
import warnings
from collections import namedtuple

import numpy as np

from ._config import get_defaults
from ._validation import check_backend_name

KERNEL_OPS = ("xent_index", "xent_probs", "evaluate", "bce", "log_softmax", "softmax",
              "logsumexp")
KERNEL_LABEL_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))

BackendStatus = namedtuple("BackendStatus", ["available", "detail"])
BackendStatus.__doc__ = "Whether a backend runs here, and what it runs on (or why not)."


class BackendUnavailableError(RuntimeError):
    """A backend asked for by name cannot run here; the message says why."""


@functools.lru_cache(maxsize=None)
def load_cython_module():
    """The compiled kernels for this CPU: (module, description) or (None, reason).

    Two builds of the same source ship: a baseline one, and on x86-64 one
    compiled for AVX2+FMA that is used only when the CPU has both (and
    FASTXENT_DISABLE_AVX2 is not 1: that runs the baseline build, to test it).
    """
    try:
        generic = importlib.import_module("fastxent._cython._xent_generic")
    except ImportError as exc:
        return None, f"the compiled extension could not be imported ({exc})"
    module, isa = generic, "baseline instruction set"
    if generic.cpu_has_avx2_fma() and os.environ.get("FASTXENT_DISABLE_AVX2") != "1":
        try:
            module = importlib.import_module("fastxent._cython._xent_avx2")
            isa = "AVX2+FMA"
        except ImportError:
            pass
    if module.openmp_enabled():
        threads = "OpenMP"
    else:
        threads = "serial only: built without OpenMP, num_threads is ignored"
    return module, f"{threads}, {isa} kernels"


@functools.lru_cache(maxsize=None)
def _load_numba():
    try:
        module = importlib.import_module("fastxent._numba._cpu")
    except ImportError as exc:
        return None, f"Numba could not be imported ({exc}); pip install numba"
    import numba
    return module, f"Numba {numba.__version__}, compiled on first use (cached on disk)"


@functools.lru_cache(maxsize=None)
def load_cuda():
    """The CUDA kernels' interface for NumPy arrays: (module, description) or
    (None, reason). Imported only when asked for: never by ``import fastxent``."""
    try:
        from numba import cuda
    except ImportError as exc:
        return None, f"numba-cuda is not installed ({exc}); pip install 'fastxent[cuda]'"
    simulated = bool(getattr(importlib.import_module("numba").config, "ENABLE_CUDASIM", 0))
    try:
        available = cuda.is_available()
    except Exception as exc:  # a broken driver or toolkit says so in its own words
        return None, f"CUDA could not be initialised ({exc})"
    if not available:
        return None, ("no CUDA GPU or driver was found (NUMBA_ENABLE_CUDASIM=1 runs the "
                      "kernels in Numba's CUDA simulator, slowly)")
    # Small batches launch small grids; Numba's occupancy hint about them is noise.
    warnings.filterwarnings("ignore", message="Grid size .* will likely result in GPU "
                            "under-utilization", category=Warning)
    try:
        module = importlib.import_module("fastxent._cuda._host")
    except ImportError as exc:
        return None, f"the CUDA kernels could not be imported ({exc})"
    if simulated:
        return module, "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), for testing"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    return module, f"{name}, numba-cuda, kernels compiled on first use"


def _load_numpy():
    return importlib.import_module("fastxent._reference"), "plain NumPy reference"


_LOADERS = {
    "cython": load_cython_module,
    "numba": _load_numba,
    "cuda": load_cuda,
    "numpy": _load_numpy,
}

# "auto" takes the first available of these for CPU arrays.
_AUTO_ORDER = ("cython", "numba", "numpy")


def available_backends():
    """Which backends work here and, for any that does not, why.

    Returns
    -------
    dict
        Backend name -> ``BackendStatus(available, detail)``.

    Examples
    --------
    >>> import fastxent
    >>> fastxent.available_backends()["numpy"].available
    True
    """
    status = {}
    for name, loader in _LOADERS.items():
        module, detail = loader()
        status[name] = BackendStatus(module is not None, detail)
    return status


def resolve_name(backend):
    """``backend`` checked against the registry (``"auto"`` included)."""
    return check_backend_name(backend, ("auto",) + tuple(_LOADERS))


def resolve_backend(backend):
    """The concrete backend name for a call's ``backend`` argument."""
    backend = resolve_name(backend)
    if backend == "auto":
        backend = get_defaults()["backend"]
    if backend != "auto":
        return backend
    for name in _AUTO_ORDER:
        module, reason = _LOADERS[name]()
        if module is not None:
            return name
        _warn_fallback(name, reason)
    raise BackendUnavailableError("no backend can run here")  # numpy always can


@functools.lru_cache(maxsize=None)
def _warn_fallback(name, reason):
    warnings.warn(f"fastxent: the {name!r} backend is unavailable ({reason}); "
                  "using the next one", RuntimeWarning, stacklevel=4)


def label_stats(labels, n_classes, ignore_index, class_weight):
    """The one-pass label check of ``_reference.label_stats``, compiled where it
    can be: for the kernels' label dtypes, when the extension is there."""
    module, _ = load_cython_module()
    if module is None or labels.dtype not in KERNEL_LABEL_DTYPES:
        module = importlib.import_module("fastxent._reference")
    return module.label_stats(labels, n_classes, ignore_index, class_weight)


def first_outside_unit(values, num_threads):
    """The probabilities check of ``_reference.first_outside_unit``, compiled
    and threaded where it can be: for float32 and float64, with the extension."""
    module, _ = load_cython_module()
    if module is None or values.dtype not in (np.float32, np.float64):
        module = importlib.import_module("fastxent._reference")
    return module.first_outside_unit(values, num_threads)


def get_kernel(op, backend, num_threads):
    """The ``op`` kernel of a resolved backend: serial for one thread."""
    module, reason = _LOADERS[backend]()
    if module is None:
        raise BackendUnavailableError(f"backend {backend!r} cannot run here: {reason}")
    mode = "serial" if num_threads == 1 else "parallel"
    return getattr(module, f"{op}_{mode}")
