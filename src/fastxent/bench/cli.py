"""``python -m fastxent bench`` (or ``fastxent bench``): fastxent against
NumPy, SciPy, scikit-learn, PyTorch and Keras on the same data, checked,
then timed interleaved; one table per operation."""

import argparse
import os
import sys
import time

import fastxent

from . import report
from .implementations import INSTALL_HINTS, OPS, implementations, load_competitors, \
    make_problem
from .run import run_case

DEFAULT_SHAPES = ((65536, 10), (8192, 1000), (512, 32000))
QUICK_SHAPES = ((16384, 10), (2048, 1000))
COMPETITORS = ("torch", "sklearn", "scipy", "keras")


def _shape(text):
    try:
        rows, classes = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is ROWSxCLASSES, like 8192x1000: {text!r}")
    if rows < 1 or classes < 1:
        raise argparse.ArgumentTypeError(f"a shape needs at least one row and class: {text!r}")
    return rows, classes


def _choices(allowed, what):
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        wrong = [v for v in values if v not in allowed]
        if wrong or not values:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(wrong) or '(none given)'}; "
                f"choose from {', '.join(allowed)}")
        return values
    return parse


def parser():
    compiled = [name for name, status in fastxent.available_backends().items()
                if status.available and name != "numpy"]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count()
    p = argparse.ArgumentParser(prog="fastxent", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "bench", help="compare fastxent with NumPy, scikit-learn, PyTorch and Keras",
        description="Check, then time, fastxent and every installed competitor on the same "
                    "data; print one table per operation.")
    b.add_argument("--quick", action="store_true",
                   help=f"small shapes ({', '.join('x'.join(map(str, s)) for s in QUICK_SHAPES)}"
                        "), float32, 3 rounds: a check that everything runs")
    b.add_argument("--shapes", type=lambda t: [_shape(s) for s in t.split(",")],
                   help="comma-separated ROWSxCLASSES (default: "
                        f"{','.join('x'.join(map(str, s)) for s in DEFAULT_SHAPES)})")
    b.add_argument("--dtype", type=_choices(("float32", "float64"), "dtype"),
                   help="float32, float64 or both: float32,float64 (default: float32)")
    b.add_argument("--ops", type=_choices(OPS, "operation"), default=list(OPS),
                   help=f"comma-separated, from {', '.join(OPS)} (default: all)")
    b.add_argument("--threads", type=int, default=usable,
                   help=f"threads for every implementation that has them (default: {usable}, "
                        "the usable cores; NumPy runs on one)")
    b.add_argument("--backends", type=_choices(compiled + ["numpy"], "backend"),
                   default=compiled,
                   help=f"fastxent backends to time (default: {','.join(compiled)})")
    b.add_argument("--competitors", type=_choices(COMPETITORS, "competitor"),
                   default=list(COMPETITORS),
                   help="optional competitors to try (default: all that are installed)")
    b.add_argument("--repeat", type=int, help="rounds per case, at most (default: 7; --quick: 3)")
    b.add_argument("--budget", type=float, default=None,
                   help="seconds per case after which no round starts, beyond 3 (default: 2; "
                        "--quick: 0.5)")
    b.add_argument("--json", metavar="PATH", help="save every raw figure and the machine")
    b.add_argument("--plot", metavar="PATH.png", help="save a throughput plot (matplotlib)")
    return p


def bench(args):
    if args.threads < 1:
        raise SystemExit("fastxent bench: --threads must be at least 1")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("fastxent bench: --plot needs matplotlib: pip install matplotlib")
    shapes = args.shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    dtypes = args.dtype or ["float32"]
    repeat = args.repeat or (3 if args.quick else 7)
    budget = args.budget if args.budget is not None else (0.5 if args.quick else 2.0)

    competitors, missing = load_competitors(args.competitors)
    if "torch" in competitors:
        competitors["torch"].set_num_threads(args.threads)
    description = report.machine(args.threads)
    cases = [(op, shape, dtype) for op in args.ops for shape in shapes for dtype in dtypes]
    rows = []
    started = time.perf_counter()
    for k, (op, shape, dtype) in enumerate(cases, 1):
        problem = make_problem(op, shape, dtype)
        impls = implementations(op, args.backends, competitors, dtype)
        label = f"[{k}/{len(cases)}] {op} {problem.label} {dtype}"
        rows += run_case(problem, impls, args.threads, repeat, budget,
                         progress=lambda name, label=label: _progress(f"{label}: {name}"))
        del problem
    _progress(None)
    print(report.text(description, rows, args.ops, missing, INSTALL_HINTS))
    print(f"({time.perf_counter() - started:.0f} s)")
    settings = {"shapes": [list(s) for s in shapes], "dtypes": dtypes, "ops": args.ops,
                "threads": args.threads, "backends": args.backends, "repeat": repeat,
                "budget_s": budget, "competitors_missing": missing}
    if args.json:
        report.save_json(args.json, description, settings, rows)
        print(f"saved {args.json}")
    if args.plot:
        report.plot(args.plot, description, rows, args.ops)
        print(f"saved {args.plot}")
    mismatched = [r for r in rows if r.get("matches") is False or "failed" in r]
    return 1 if any(r["family"] == "fastxent" for r in mismatched) else 0


def _progress(message):
    """One line on stderr, rewritten in place on a terminal."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + (message or ""))
        if message is None:
            sys.stderr.write("\r")
    elif message is not None and message.endswith("timing"):
        sys.stderr.write(message + "\n")
    sys.stderr.flush()


def main(argv=None):
    return bench(parser().parse_args(argv))
