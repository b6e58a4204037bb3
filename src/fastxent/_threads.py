"""How many threads a call uses."""

import os

from ._validation import check_num_threads


def usable_cores():
    """The number of cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def effective_num_threads(num_threads):
    """``None`` means every usable core; otherwise the validated count."""
    if num_threads is None:
        return usable_cores()
    return check_num_threads(num_threads)


def openmp_enabled():
    """True when the Cython extension was compiled with OpenMP."""
    from ._backends import load_cython_module

    module, _ = load_cython_module()
    return module is not None and bool(module.openmp_enabled())
