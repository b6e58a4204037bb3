"""The worked examples of ../shared/seeds, reproduced through fastxent.cross_entropy."""

import numpy as np
import pytest

import fastxent


def test_seed_000_cross_entropy_loss(backend):
    # nn.CrossEntropyLoss()(tensor([[1.2, -0.5, 0.1]]), tensor([0])).item() -> 0.4158
    logits = np.array([[1.2, -0.5, 0.1]], dtype=np.float32)   # torch.tensor default dtype
    loss = fastxent.cross_entropy(logits, np.array([0]), backend=backend)
    assert loss.dtype == np.float32
    assert f"{loss.item():.4f}" == "0.4158"


def test_seed_002_functional_cross_entropy(backend):
    # F.cross_entropy(tensor([[1.5, -0.5], [0.5, 1.5]]), tensor([0, 1])).item()
    # printed 0.22009485960006714: a float32 result printed as a Python float.
    printed = 0.22009485960006714
    logits = np.array([[1.5, -0.5], [0.5, 1.5]], dtype=np.float32)
    loss = fastxent.cross_entropy(logits, np.array([0, 1]), backend=backend)
    assert loss.dtype == np.float32
    # to float32 precision: within one float32 ulp of the printed value
    assert abs(loss.item() - printed) <= np.spacing(np.float32(printed))
    # in float64: the exact value, of which torch's float32 print is within an ulp
    loss64 = fastxent.cross_entropy(logits.astype(np.float64), [0, 1], backend=backend)
    exact = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    assert loss64 == pytest.approx(exact, rel=1e-15)
    assert abs(exact - printed) <= np.spacing(np.float32(printed))


def test_seed_002_multiclass_ce_identity(backend):
    # Seed 002 computes CE = -mean(sum(onehot * log(p))) from normalised
    # probabilities p; cross_entropy of the logits log(p) is the same number
    # (log_softmax(log p) = log p), and so is cross_entropy with one-hot targets.
    rng = np.random.default_rng(2)
    n = 1000
    p = rng.random((n, 3))
    p /= p.sum(axis=1, keepdims=True)
    y = rng.integers(0, 3, n)
    onehot = np.eye(3)[y]
    ce_numpy = -np.mean(np.sum(onehot * np.log(p), axis=1))
    assert fastxent.cross_entropy(np.log(p), y, backend=backend) == pytest.approx(ce_numpy,
                                                                                 rel=1e-13)
    assert fastxent.cross_entropy(np.log(p), onehot, backend=backend) == pytest.approx(
        ce_numpy, rel=1e-13)
    # Two classes: the binary cross-entropy of the seed is the 2-class CE.
    q = rng.random(n) * 0.98 + 0.01
    y2 = rng.integers(0, 2, n)
    bce = -np.mean(y2 * np.log(q) + (1 - y2) * np.log(1 - q))
    two = np.log(np.column_stack([1 - q, q]))
    assert fastxent.cross_entropy(two, y2, backend=backend) == pytest.approx(bce, rel=1e-13)


def test_seed_000_bce_loss(backend):
    # nn.BCELoss()(tensor([0.8]), tensor([1.0])).item() -> 0.2231
    loss = fastxent.binary_cross_entropy(np.float32([0.8]), np.float32([1.0]), backend=backend)
    assert loss.dtype == np.float32
    assert f"{loss.item():.4f}" == "0.2231"


def test_seed_002_functional_binary_cross_entropy(backend):
    # F.binary_cross_entropy(tensor([0.7, 0.3]), tensor([1., 0.])).item()
    # printed 0.3566749691963196, a float32 printed as a Python float.
    printed = 0.3566749691963196
    loss = fastxent.binary_cross_entropy(np.float32([0.7, 0.3]), np.float32([1.0, 0.0]),
                                         backend=backend)
    assert loss.dtype == np.float32
    assert abs(loss.item() - printed) <= np.spacing(np.float32(printed))
    # Its gradient, as autograd gives it: (x - y) / (x (1 - x)) / N.
    _, grad = fastxent.binary_cross_entropy(np.float32([0.7, 0.3]), np.float32([1.0, 0.0]),
                                            return_grad=True, backend=backend)
    np.testing.assert_allclose(grad, [-0.3 / 0.21 / 2, 0.3 / 0.21 / 2], rtol=1e-6)
