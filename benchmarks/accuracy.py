"""Float32 accuracy of fastxent and of PyTorch, against a float64 reference.

    python benchmarks/accuracy.py

For each shape and logit scale: the error of the mean loss, and the error of
the gradient as its largest absolute value and in float32 ulps of the
reference (median and 99th percentile), for fastxent's and PyTorch's
float32 results. Ulps are counted where |reference| >= 1e-30 (nearer
float32's underflow an ulp is no measure of precision); a few entries are
far off in both, the target's entry 1 - p_y when p_y rounds to 1 in float32,
which is why the table shows percentiles and the largest absolute error.
"""

import numpy as np
import torch
import torch.nn.functional as F

import fastxent

SHAPES = [(65536, 10), (16384, 1000), (4096, 32000), (512, 128256)]
SCALES = [1.0, 10.0]


def torch_loss_grad(logits, labels, dtype):
    z = torch.tensor(logits, dtype=dtype, requires_grad=True)
    loss = F.cross_entropy(z, torch.from_numpy(labels))
    loss.backward()
    return loss.item(), z.grad.numpy().astype(np.float64)


def ulps(grad, ref):
    normal = np.abs(ref) >= 1e-30
    spacing = np.spacing(np.abs(ref[normal]).astype(np.float32)).astype(np.float64)
    return np.abs(grad[normal] - ref[normal]) / spacing


def main():
    rng = np.random.default_rng(0)
    print(f"{'shape':>12} {'scale':>5} | {'loss error':^21} | {'grad max abs error':^21} | "
          f"{'grad ulps median/p99':^25}")
    print(f"{'':>18} | {'fastxent':>10} {'torch':>10} | {'fastxent':>10} {'torch':>10} | "
          f"{'fastxent':>11} {'torch':>11}")
    for n_rows, n_classes in SHAPES:
        for scale in SCALES:
            logits = (scale * rng.standard_normal((n_rows, n_classes))).astype(np.float32)
            labels = rng.integers(0, n_classes, n_rows)
            ref_loss, ref_grad = torch_loss_grad(logits, labels, torch.float64)
            t_loss, t_grad = torch_loss_grad(logits, labels, torch.float32)
            loss, grad = fastxent.cross_entropy(logits, labels, return_grad=True)
            grad = grad.astype(np.float64)
            ours_u, torch_u = ulps(grad, ref_grad), ulps(t_grad, ref_grad)
            print(f"{n_rows:>6}x{n_classes:<6} {scale:>4g} | {abs(float(loss) - ref_loss):10.2e} "
                  f"{abs(t_loss - ref_loss):10.2e} | {np.abs(grad - ref_grad).max():10.2e} "
                  f"{np.abs(t_grad - ref_grad).max():10.2e} | {np.median(ours_u):5.2f}/{np.percentile(ours_u, 99):<6.1f} "
                  f"{np.median(torch_u):5.2f}/{np.percentile(torch_u, 99):<6.1f}")


if __name__ == "__main__":
    main()
