"""A bigram language model over a 32000-token vocabulary, where the loss dominates.

The model is an embedding and a linear layer back to the vocabulary (width 32),
trained on a synthetic token stream (each token is followed by one of a few
tokens, with Zipf-like odds). With a small width, the logits (batch x 32000)
are by far the largest tensor of a step, and the cross-entropy over them costs
more than both matrix products. The same model is trained from the same seed
with torch.nn.CrossEntropyLoss, with fastxent.torch.CrossEntropyLoss, and with
fastxent writing the gradient over the logits (inplace=True); the script prints
the loss curves and the median time of a whole training step.

    python examples/bigram_lm.py [--steps 30] [--batch-size 1024]
"""

import argparse
import time

import numpy as np
import torch

import fastxent.torch

VOCAB = 32000
WIDTH = 32


def token_stream(n_tokens, seed, successors=4):
    """A Markov chain: token t is followed by successors[t, k] with odds 1/(k+1)."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, VOCAB, size=(VOCAB, successors))
    odds = 1.0 / np.arange(1, successors + 1)
    choice = rng.choice(successors, size=n_tokens, p=odds / odds.sum())
    stream = np.empty(n_tokens, np.int64)
    token = 0
    for i in range(n_tokens):
        stream[i] = token = table[token, choice[i]]
    return torch.from_numpy(stream)


def train(loss_fn, stream, *, steps, batch_size, seed):
    torch.manual_seed(seed)  # the same weights and batches for every loss
    model = torch.nn.Sequential(torch.nn.Embedding(VOCAB, WIDTH), torch.nn.Linear(WIDTH, VOCAB))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    curve, seconds = [], []
    for _ in range(steps):
        at = torch.randint(0, len(stream) - 1, (batch_size,))
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(stream[at]), stream[at + 1])
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        curve.append(loss.item())
    return curve, float(np.median(seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    stream = token_stream(args.tokens, args.seed)
    losses = {"torch.nn.CrossEntropyLoss": torch.nn.CrossEntropyLoss(),
              "fastxent.torch.CrossEntropyLoss": fastxent.torch.CrossEntropyLoss(),
              "fastxent.torch, inplace=True": fastxent.torch.CrossEntropyLoss(inplace=True)}
    results = {name: train(loss_fn, stream, steps=args.steps, batch_size=args.batch_size,
                           seed=args.seed) for name, loss_fn in losses.items()}
    print(f"batch {args.batch_size} x vocabulary {VOCAB}, width {WIDTH}, "
          f"{torch.get_num_threads()} threads")
    shown = sorted({0, 1, args.steps // 2, args.steps - 1})
    print(f"{'step':>4}  " + "  ".join(f"{name:>31}" for name in results))
    for step in shown:
        print(f"{step + 1:>4}  " + "  ".join(f"{curve[step]:>31.5f}"
                                             for curve, _ in results.values()))
    baseline = results["torch.nn.CrossEntropyLoss"][1]
    for name, (_, step_time) in results.items():
        print(f"{name}: {step_time * 1e3:.1f} ms per training step "
              f"({baseline / step_time:.2f}x torch's)")
    return results


if __name__ == "__main__":
    main()
