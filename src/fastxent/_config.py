"""Defaults for ``backend`` and ``num_threads``, set for a block of code."""

import contextlib
import contextvars

from ._validation import check_num_threads

_defaults = contextvars.ContextVar("fastxent_defaults",
                                   default={"backend": "auto", "num_threads": None})


def get_defaults():
    return _defaults.get()


@contextlib.contextmanager
def config(*, backend=None, num_threads=None):
    """Set the default ``backend`` and ``num_threads`` inside a ``with`` block.

    Calls inside the block that leave ``backend="auto"`` or
    ``num_threads=None`` use these values. The setting is local to the
    thread (and asyncio task) that entered the block.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> with fastxent.config(backend="numpy", num_threads=1):
    ...     loss = fastxent.cross_entropy(np.zeros((2, 3)), [0, 1])
    """
    from ._backends import resolve_name  # the registry imports this module

    new = dict(_defaults.get())
    if backend is not None:
        new["backend"] = resolve_name(backend)
    if num_threads is not None:
        new["num_threads"] = check_num_threads(num_threads)
    token = _defaults.set(new)
    try:
        yield
    finally:
        _defaults.reset(token)
