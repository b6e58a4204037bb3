"""Train softmax regression and a small MLP on scikit-learn's digits with NumPy only.

fastxent.cross_entropy(logits, labels, return_grad=True) gives the mean loss
and its gradient with respect to the logits in one pass; the rest of the
backward pass is two matrix products per layer.

    python examples/numpy_training.py [--epochs 30] [--batch-size 64]
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastxent


def load(seed):
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)  # pixel values are 0..16
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def init_layers(sizes, rng):
    """He-initialised (weight, bias) pairs for layers of the given widths."""
    return [(rng.standard_normal((n_in, n_out)).astype(np.float32) * np.sqrt(2.0 / n_in),
             np.zeros(n_out, np.float32)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def forward(layers, x):
    """Logits, and the input of each layer (kept for backward)."""
    inputs = []
    for i, (w, b) in enumerate(layers):
        inputs.append(x)
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)  # ReLU
    return x, inputs


def backward(layers, inputs, grad):
    """Gradients of each (weight, bias), from the gradient of the logits."""
    grads = []
    for i in reversed(range(len(layers))):
        w, _ = layers[i]
        grads.append((inputs[i].T @ grad, grad.sum(axis=0)))
        if i:
            grad = (grad @ w.T) * (inputs[i] > 0)  # through the previous ReLU
    return grads[::-1]


def train(sizes, data, *, epochs, batch_size, lr, seed):
    x_train, x_test, y_train, y_test = data
    rng = np.random.default_rng(seed)
    layers = init_layers(sizes, rng)
    velocity = [(np.zeros_like(w), np.zeros_like(b)) for w, b in layers]
    curve, seconds = [], []
    for _ in range(epochs):
        start, total = time.perf_counter(), 0.0
        order = rng.permutation(len(x_train))
        for begin in range(0, len(order), batch_size):
            batch = order[begin:begin + batch_size]
            logits, inputs = forward(layers, x_train[batch])
            loss, grad = fastxent.cross_entropy(logits, y_train[batch], return_grad=True)
            total += float(loss) * len(batch)
            for (w, b), (vw, vb), (gw, gb) in zip(layers, velocity,
                                                   backward(layers, inputs, grad)):
                vw *= 0.9
                vw -= lr * gw  # SGD with momentum, in place
                vb *= 0.9
                vb -= lr * gb
                w += vw
                b += vb
        seconds.append(time.perf_counter() - start)
        curve.append(total / len(x_train))
    logits, _ = forward(layers, x_test)
    accuracy = float(np.mean(logits.argmax(axis=1) == y_test))
    test_loss = float(fastxent.cross_entropy(logits, y_test))
    return curve, accuracy, test_loss, float(np.median(seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load(args.seed)
    results = {}
    for name, sizes, lr in (("softmax regression", (64, 10), 0.1),
                            ("MLP 64-128-10", (64, 128, 10), 0.05)):
        curve, accuracy, test_loss, per_epoch = train(
            sizes, data, epochs=args.epochs, batch_size=args.batch_size, lr=lr, seed=args.seed)
        results[name] = dict(curve=curve, accuracy=accuracy, test_loss=test_loss)
        shown = ", ".join(f"{v:.3f}" for v in curve[:3])
        print(f"{name}: training loss by epoch {shown}, ..., {curve[-1]:.4f}")
        print(f"  test loss {test_loss:.4f}, test accuracy {accuracy:.1%}, "
              f"{per_epoch * 1e3:.1f} ms per epoch")
    return results


if __name__ == "__main__":
    main()
