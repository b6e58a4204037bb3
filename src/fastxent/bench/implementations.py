"""The operations of ``fastxent bench`` and every implementation of each.

An implementation is prepared for one problem: ``prepare(problem, threads)``
returns ``call``, the work that is timed, and ``collect``, which turns what
``call`` returned into NumPy values (loss, gradient or output) for the check
against the float64 reference. Competitors are written as their users write
them; the optional ones are imported here, never by ``import fastxent``.
"""

import importlib
import os
from dataclasses import dataclass, field

import numpy as np

import fastxent

OPS = ("loss", "loss+grad", "evaluate", "log_softmax", "bce_logits")
OP_TITLES = {
    "loss": "cross-entropy, loss only (mean)",
    "loss+grad": "cross-entropy, loss + gradient (mean)",
    "evaluate": "evaluation: mean loss, accuracy, top-5 accuracy, entropy, logsumexp",
    "log_softmax": "log_softmax over the last axis",
    "bce_logits": "binary cross-entropy with logits, loss + gradient (mean)",
}


@dataclass
class Problem:
    """One operation on one shape and dtype: its inputs, and the bytes that
    any implementation must move (read the inputs, write the outputs)."""
    op: str
    shape: tuple
    dtype: np.dtype
    x: np.ndarray        # logits, or the input of the binary loss
    target: np.ndarray   # class indices (int64), or binary targets of x's dtype
    bytes_moved: int = field(init=False)

    def __post_init__(self):
        written = {"loss": 0, "evaluate": 0, "loss+grad": self.x.nbytes, "log_softmax": self.x.nbytes,
                   "bce_logits": self.x.nbytes}[self.op]
        read = self.x.nbytes + (self.target.nbytes if self.op != "log_softmax" else 0)
        self.bytes_moved = read + written

    @property
    def label(self):
        return "x".join(map(str, self.shape))


def make_problem(op, shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    x = rng.standard_normal(shape, dtype=dtype)
    if op == "bce_logits":
        target = (rng.random(shape) < 0.5).astype(dtype)
    else:
        target = rng.integers(0, shape[1], shape[0])
    return Problem(op, tuple(shape), dtype, x, target)


# ------------------------------------------------------------------ NumPy

def numpy_loss(x, labels):
    """Cross-entropy as a NumPy user writes it."""
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    return np.mean(lse - x[np.arange(x.shape[0]), labels])


def numpy_loss_grad(x, labels):
    rows = np.arange(x.shape[0])
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, labels])
    grad = e / s
    grad[rows, labels] -= 1
    grad /= x.shape[0]
    return loss, grad


def numpy_log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def numpy_bce_logits(x, t):
    loss = np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))
    grad = (1 / (1 + np.exp(-x)) - t) / x.size
    return loss, grad


def numpy_evaluate(x, labels):
    """The metrics of fastxent.evaluate as a NumPy user computes them."""
    rows = np.arange(x.shape[0])
    m = x.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    logp = x - lse
    p = np.exp(logp)
    k = min(5, x.shape[1])
    top5 = np.argpartition(x, -k, axis=1)[:, -k:]
    return {"loss": float(np.mean(-logp[rows, labels])),
            "accuracy": float(np.mean(np.argmax(x, axis=1) == labels)),
            "top5": float(np.mean(np.any(top5 == labels[:, None], axis=1))),
            "entropy": float(np.mean(-np.sum(p * logp, axis=1))),
            "logsumexp": float(np.mean(lse))}


def _evaluation(result):
    """fastxent.evaluate's result as the metrics every implementation reports."""
    return {"loss": result["loss"], "accuracy": result["accuracy"],
            "top5": result["top_k_accuracy"][5], "entropy": result["entropy"],
            "logsumexp": result["logsumexp"]}


def reference(problem):
    """What every implementation is checked against: fastxent's plain NumPy
    specification (``backend="numpy"``, itself tested against PyTorch) on
    the inputs in float64."""
    x = problem.x.astype(np.float64)
    spec = dict(backend="numpy", num_threads=1)
    if problem.op == "loss":
        return fastxent.cross_entropy(x, problem.target, **spec), None
    if problem.op == "loss+grad":
        return fastxent.cross_entropy(x, problem.target, return_grad=True, **spec)
    if problem.op == "evaluate":
        return _evaluation(fastxent.evaluate(x, problem.target, **spec))
    if problem.op == "log_softmax":
        return fastxent.log_softmax(x, **spec), None
    return fastxent.binary_cross_entropy_with_logits(
        x, problem.target.astype(np.float64), return_grad=True, **spec)


# ---------------------------------------------------------- implementations

@dataclass
class Implementation:
    name: str
    family: str          # "fastxent", or the competitor's library
    prepare: object      # prepare(problem, threads) -> (call, collect)


def _loss_only(r):
    return float(r), None


def _loss_grad(r):
    return float(r[0]), np.asarray(r[1])


def _array(r):
    return np.asarray(r), None


def fastxent_implementations(op, backend):
    """fastxent with one backend: for loss + gradient, writing into a
    preallocated gradient (``out=``) and allocating a fresh one."""
    def prepare_loss(p, threads):
        return (lambda: fastxent.cross_entropy(p.x, p.target, backend=backend,
                                               num_threads=threads)), _loss_only

    def prepare_grad(out):
        def prepare(p, threads):
            g = np.empty_like(p.x) if out else None
            return (lambda: fastxent.cross_entropy(p.x, p.target, return_grad=True, out=g,
                                                   backend=backend, num_threads=threads)), \
                _loss_grad
        return prepare

    def prepare_log_softmax(p, threads):
        return (lambda: fastxent.log_softmax(p.x, backend=backend, num_threads=threads)), _array

    def prepare_evaluate(p, threads):
        return (lambda: fastxent.evaluate(p.x, p.target, backend=backend,
                                          num_threads=threads)), _evaluation

    def prepare_loss_metric(p, threads):  # the loss alone: what evaluate is measured against
        return (lambda: fastxent.cross_entropy(p.x, p.target, backend=backend,
                                               num_threads=threads)), \
            (lambda r: {"loss": float(r)})

    def prepare_bce(p, threads):
        g = np.empty_like(p.x)
        return (lambda: fastxent.binary_cross_entropy_with_logits(
            p.x, p.target, return_grad=True, out=g, backend=backend,
            num_threads=threads)), _loss_grad

    name = f"fastxent {backend}"
    if op == "loss":
        return [Implementation(name, "fastxent", prepare_loss)]
    if op == "loss+grad":
        return [Implementation(name + " out=", "fastxent", prepare_grad(True)),
                Implementation(name, "fastxent", prepare_grad(False))]
    if op == "log_softmax":
        return [Implementation(name, "fastxent", prepare_log_softmax)]
    if op == "evaluate":
        return [Implementation(name + " evaluate", "fastxent", prepare_evaluate),
                Implementation(name + " loss only", "fastxent", prepare_loss_metric)]
    return [Implementation(name + " out=", "fastxent", prepare_bce)]


def numpy_implementations(op):
    def prepare(p, threads):
        call = {"loss": lambda: numpy_loss(p.x, p.target),
                "loss+grad": lambda: numpy_loss_grad(p.x, p.target),
                "evaluate": lambda: numpy_evaluate(p.x, p.target),
                "log_softmax": lambda: numpy_log_softmax(p.x),
                "bce_logits": lambda: numpy_bce_logits(p.x, p.target)}[op]
        collect = {"loss": _loss_only, "log_softmax": _array,
                   "evaluate": lambda r: r}.get(op, _loss_grad)
        return call, collect
    return [Implementation("NumPy (1 thread)", "numpy", prepare)]


def scipy_implementations(op, special):
    if op != "log_softmax":
        return []

    def prepare(p, threads):
        return (lambda: special.log_softmax(p.x, axis=1)), _array
    return [Implementation("SciPy special.log_softmax", "scipy", prepare)]


def sklearn_implementations(op, sklearn_modules):
    """scikit-learn's fused Cython losses on raw predictions (``sklearn._loss``,
    private but what its estimators run), and ``log_loss`` on the softmax."""
    loss_module, metrics, special = sklearn_modules
    impls = []
    if op in ("loss", "loss+grad"):
        def prepare(p, threads):
            loss = loss_module.HalfMultinomialLoss(n_classes=p.shape[1])
            y = p.target.astype(p.dtype)
            loss_out = np.empty(p.shape[0], p.dtype)
            if op == "loss":
                def call():
                    return loss.loss(y_true=y, raw_prediction=p.x, loss_out=loss_out,
                                     n_threads=threads).mean()
                return call, _loss_only
            grad_out = np.empty_like(p.x)

            def call():
                return loss.loss_gradient(y_true=y, raw_prediction=p.x, loss_out=loss_out,
                                          gradient_out=grad_out, n_threads=threads)

            def collect(r):  # the gradient of the summed loss
                return float(r[0].mean()), r[1] / p.shape[0]
            return call, collect
        impls.append(Implementation("scikit-learn _loss", "sklearn", prepare))
    if op == "loss":
        def prepare_log_loss(p, threads):
            labels = np.arange(p.shape[1])
            return (lambda: metrics.log_loss(p.target, special.softmax(p.x, axis=1),
                                             labels=labels)), _loss_only
        impls.append(Implementation("scikit-learn log_loss(softmax)", "sklearn",
                                    prepare_log_loss))
    if op == "evaluate":
        def prepare_metrics(p, threads):
            labels = np.arange(p.shape[1])

            def call():
                proba = special.softmax(p.x, axis=1)
                return {"loss": metrics.log_loss(p.target, proba, labels=labels),
                        "accuracy": metrics.accuracy_score(p.target, np.argmax(p.x, axis=1)),
                        "top5": metrics.top_k_accuracy_score(p.target, p.x, k=5,
                                                             labels=labels),
                        "entropy": float(np.mean(special.entr(proba).sum(axis=1))),
                        "logsumexp": float(np.mean(special.logsumexp(p.x, axis=1)))}
            return call, lambda r: r
        impls.append(Implementation("scikit-learn metrics + SciPy", "sklearn", prepare_metrics))
    if op == "bce_logits":
        def prepare_bce(p, threads):
            loss = loss_module.HalfBinomialLoss()
            x, t = p.x.reshape(-1), p.target.reshape(-1)
            loss_out, grad_out = np.empty_like(x), np.empty_like(x)

            def call():
                return loss.loss_gradient(y_true=t, raw_prediction=x, loss_out=loss_out,
                                          gradient_out=grad_out, n_threads=threads)

            def collect(r):
                return float(r[0].mean()), (r[1] / x.size).reshape(p.shape)
            return call, collect
        impls.append(Implementation("scikit-learn _loss", "sklearn", prepare_bce))
    return impls


def torch_implementations(op, torch, device):
    """PyTorch eager: forward under no_grad for the loss and log_softmax,
    forward + backward for the gradients; on CUDA, timed to completion."""
    F = torch.nn.functional
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def to_numpy(t):
        return t.detach().cpu().numpy()

    def prepare(p, threads):
        x = torch.from_numpy(p.x).to(device)
        t = torch.from_numpy(p.target).to(device)

        def forward():
            with torch.no_grad():
                r = F.cross_entropy(x, t) if op == "loss" else F.log_softmax(x, dim=1)
            sync()
            return r

        def forward_backward():
            leaf = x.detach().requires_grad_()
            loss = (F.cross_entropy(leaf, t) if op == "loss+grad"
                    else F.binary_cross_entropy_with_logits(leaf, t))
            loss.backward()
            sync()
            return loss, leaf.grad

        def metrics():
            with torch.no_grad():
                lse = torch.logsumexp(x, dim=1)
                logp = x - lse[:, None]
                r = {"loss": F.nll_loss(logp, t),
                     "accuracy": (x.argmax(dim=1) == t).double().mean(),
                     "top5": (x.topk(min(5, x.shape[1]), dim=1).indices == t[:, None])
                     .any(dim=1).double().mean(),
                     "entropy": -(logp.exp() * logp).sum(dim=1).mean(),
                     "logsumexp": lse.mean()}
            sync()
            return r

        if op == "evaluate":
            return metrics, lambda r: {k: float(v) for k, v in r.items()}
        if op in ("loss", "log_softmax"):
            return forward, (lambda r: (float(r), None) if op == "loss" else (to_numpy(r), None))
        return forward_backward, lambda r: (float(r[0].detach()), to_numpy(r[1]))

    name = "PyTorch" + (" CUDA" if device == "cuda" else "") + \
        (" fwd+bwd" if op in ("loss+grad", "bce_logits") else "")
    return [Implementation(name, "torch", prepare)]


def keras_implementations(op, keras):
    """Keras 3 on the backend it is configured with: the loss and
    log_softmax only (a gradient would go through that backend's autograd)."""
    if op not in ("loss", "log_softmax"):
        return []

    def prepare(p, threads):
        if op == "loss":
            def call():
                return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
                    p.target, p.x, from_logits=True))
            return call, lambda r: (float(keras.ops.convert_to_numpy(r)), None)
        return (lambda: keras.ops.log_softmax(p.x, axis=-1)), \
            (lambda r: (keras.ops.convert_to_numpy(r), None))
    return [Implementation(f"Keras ({keras.backend.backend()})", "keras", prepare)]


# ------------------------------------------------------------- competitors

INSTALL_HINTS = {
    "torch": "pip install torch (a CPU build: pip install torch --index-url "
             "https://download.pytorch.org/whl/cpu)",
    "sklearn": "pip install scikit-learn",
    "scipy": "pip install scipy",
    "keras": "pip install keras (with a backend: torch, tensorflow or jax)",
}


def _try_import(name):
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # missing, or broken by its own dependencies
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def _load(family):
    """(modules, None), or (None, why not)."""
    if family == "sklearn":
        loss, why = _try_import("sklearn._loss.loss")
        metrics, why_metrics = _try_import("sklearn.metrics")
        special, why_scipy = _try_import("scipy.special")
        if loss and metrics and special:
            return (loss, metrics, special), None
        return None, why or why_metrics or why_scipy
    if family == "keras":
        os.environ.setdefault("KERAS_BACKEND", "torch")
    return _try_import({"scipy": "scipy.special"}.get(family, family))


def load_competitors(wanted):
    """{family: modules} for the optional competitors that import, and
    {family: why not} for the others. Keras is told to use PyTorch unless
    KERAS_BACKEND says otherwise."""
    found, missing = {}, {}
    for family in wanted:
        if family not in INSTALL_HINTS:
            raise ValueError(f"unknown competitor {family!r}")
        modules, why = _load(family)
        if modules is None:
            missing[family] = why
        else:
            found[family] = modules
    return found, missing


def implementations(op, backends, competitors, dtype):
    """Every implementation of op: fastxent's backends first, then the
    competitors that imported. Keras runs float32 only (its default float
    type; a float64 input would be computed in float32)."""
    impls = []
    for backend in backends:
        impls += fastxent_implementations(op, backend)
    impls += numpy_implementations(op)
    if "scipy" in competitors:
        impls += scipy_implementations(op, competitors["scipy"])
    if "sklearn" in competitors:
        impls += sklearn_implementations(op, competitors["sklearn"])
    if "torch" in competitors:
        torch = competitors["torch"]
        impls += torch_implementations(op, torch, "cpu")
        if torch.cuda.is_available():
            impls += torch_implementations(op, torch, "cuda")
    if "keras" in competitors and np.dtype(dtype) == np.float32:
        impls += keras_implementations(op, competitors["keras"])
    return impls
