"""GPU benchmark: fused cross-entropy loss + gradient on CUDA tensors.

    python benchmarks/bench_cuda.py [--shapes 16384x1000,4096x32000,8192x128256]
                                    [--dtypes float32,bfloat16] [--repeat 20]

For each shape and dtype: fastxent (gradient into a preallocated ``out=``),
PyTorch eager ``F.cross_entropy`` forward + backward, and Liger-Kernel's
cross-entropy where it is installed. Each is checked against a float64
reference first, then timed with CUDA events (median of ``--repeat`` calls
after warm-up). GB/s counts the bytes the operation must move: the logits
read once and the gradient written once (plus the labels); "% copy" compares
that with a device-to-device copy measured the same way.
"""

import argparse
import statistics

import numpy as np


def _events_ms(fn, repeat, warmup=3):
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(repeat):
    """GB/s of a device-to-device copy of 2 GiB, bytes read + written."""
    import torch
    src = torch.empty(2 << 30, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    ms = _events_ms(lambda: dst.copy_(src), repeat)
    return 2 * src.numel() / ms / 1e6


def implementations(x, t, out):
    import torch
    import torch.nn.functional as F

    import fastxent

    def fx():
        return fastxent.cross_entropy(x, t, return_grad=True, out=out)

    xt = x.detach().clone().requires_grad_(True)

    def torch_eager():
        xt.grad = None
        loss = F.cross_entropy(xt, t)
        loss.backward()
        return loss, xt.grad

    impls = {"fastxent cuda": fx, "PyTorch eager": torch_eager}
    try:
        from liger_kernel.transformers.cross_entropy import LigerCrossEntropyLoss
    except ImportError:
        LigerCrossEntropyLoss = None
    if LigerCrossEntropyLoss is not None:
        liger_loss = LigerCrossEntropyLoss()

        def liger():
            # Liger writes the gradient over its input in the forward pass,
            # so each call gets its own copy of the logits; the copy's time
            # is measured apart and subtracted.
            xl = x.detach().clone()
            xl.requires_grad_(True)
            loss = liger_loss(xl, t)
            loss.backward()
            return loss, xl.grad
        impls["Liger-Kernel"] = liger
    return impls


def reference(x, t):
    import torch
    x64 = x.double().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x64, t)
    loss.backward()
    return loss.detach(), x64.grad


def main(argv=None):
    import torch
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="16384x1000,4096x32000,8192x128256")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    copy = copy_bandwidth(args.repeat)
    print(f"device: {torch.cuda.get_device_name()}, copy bandwidth {copy:.0f} GB/s "
          f"(read + write)")
    rows = []
    for shape in args.shapes.split(","):
        n, c = map(int, shape.split("x"))
        for dtype_name in args.dtypes.split(","):
            dtype = getattr(torch, dtype_name)
            gen = torch.Generator(device="cuda").manual_seed(0)
            x = (3 * torch.randn(n, c, device="cuda", generator=gen)).to(dtype)
            t = torch.randint(0, c, (n,), device="cuda", generator=gen)
            out = torch.empty_like(x)
            ref_loss, ref_grad = reference(x, t)
            nbytes = 2 * x.numel() * x.element_size() + t.numel() * t.element_size()
            case = []
            for name, fn in implementations(x, t, out).items():
                loss, grad = fn()
                torch.cuda.synchronize()
                loss = loss.detach()
                rel = abs(float(loss) - float(ref_loss)) / abs(float(ref_loss))
                gerr = float((grad.double() - ref_grad).norm() / ref_grad.norm())
                ms = _events_ms(fn, args.repeat)
                if name == "Liger-Kernel":  # its per-call copy of the logits is not its work
                    ms -= _events_ms(lambda: x.detach().clone(), args.repeat)
                gbs = nbytes / ms / 1e6
                case.append([shape, dtype_name, name, ms, gbs, 100 * gbs / copy, rel, gerr])
                del loss, grad
            eager = next(r[3] for r in case if r[2] == "PyTorch eager")
            rows += [r + [eager / r[3]] for r in case]
            del x, t, out, ref_grad
            torch.cuda.empty_cache()
    header = ("shape", "dtype", "implementation", "ms", "GB/s", "% copy", "loss rel.err",
              "grad rel.err", "x faster than PyTorch")
    print(" | ".join(header))
    for shape, dt, name, ms, gbs, pct, rel, gerr, speed in rows:
        print(f"{shape} | {dt} | {name} | {ms:.3f} | {gbs:.0f} | {pct:.0f}% | {rel:.1e} | "
              f"{gerr:.1e} | {speed:.2f}")


if __name__ == "__main__":
    main()
