"""The same PyTorch MLP trained twice on scikit-learn's digits, from the same seed:
once with torch.nn.CrossEntropyLoss, once with fastxent.torch.CrossEntropyLoss.

Prints both loss curves side by side, the test accuracies and the median time
per epoch. The curves agree to float32 rounding: the two losses compute the
same function and gradient.

    python examples/torch_mlp.py [--epochs 30] [--batch-size 64]
"""

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastxent.torch


def load(seed):
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        (x / 16.0).astype(np.float32), y, test_size=0.25, random_state=seed, stratify=y)
    return (torch.from_numpy(x_train), torch.from_numpy(x_test),
            torch.from_numpy(y_train), torch.from_numpy(y_test))


def train(loss_fn, data, *, epochs, batch_size, seed):
    x_train, x_test, y_train, y_test = data
    torch.manual_seed(seed)  # the same weights and batch order for every loss
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    curve, seconds = [], []
    for _ in range(epochs):
        start, total = time.perf_counter(), 0.0
        for batch in torch.randperm(len(x_train)).split(batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        seconds.append(time.perf_counter() - start)
        curve.append(total / len(x_train))
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return curve, accuracy, float(np.median(seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load(args.seed)
    results = {}
    for name, loss_fn in (("torch.nn.CrossEntropyLoss", torch.nn.CrossEntropyLoss()),
                          ("fastxent.torch.CrossEntropyLoss",
                           fastxent.torch.CrossEntropyLoss())):
        results[name] = train(loss_fn, data, epochs=args.epochs, batch_size=args.batch_size,
                              seed=args.seed)
    (a, (curve_a, acc_a, sec_a)), (b, (curve_b, acc_b, sec_b)) = results.items()
    print(f"{'epoch':>5}  {a:>26}  {b:>31}")
    for epoch in sorted({0, 1, 2, len(curve_a) // 2, len(curve_a) - 1}):
        print(f"{epoch + 1:>5}  {curve_a[epoch]:>26.6f}  {curve_b[epoch]:>31.6f}")
    gap = max(abs(x - y) / abs(x) for x, y in zip(curve_a, curve_b))
    print(f"largest relative gap between the curves: {gap:.1e}")
    for name, (_, accuracy, per_epoch) in results.items():
        print(f"{name}: test accuracy {accuracy:.1%}, {per_epoch * 1e3:.1f} ms per epoch")
    return results


if __name__ == "__main__":
    main()
