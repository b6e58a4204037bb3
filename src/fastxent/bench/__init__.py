"""``fastxent bench``: the side-by-side comparison. Imports the optional
competitors (PyTorch, scikit-learn, SciPy, Keras) only when it runs."""

from .cli import main

__all__ = ["main"]
