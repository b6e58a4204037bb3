"""What ``fastxent bench`` prints and saves: the machine, one table per
operation, the raw figures as JSON, and a throughput plot."""

import datetime
import importlib.metadata
import json
import os
import platform

import fastxent

from .implementations import OP_TITLES

DISTRIBUTIONS = ("numpy", "numba", "torch", "scikit-learn", "scipy", "keras")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads):
    """The machine and the software that ran: what a reader of the figures
    needs to compare them with theirs."""
    versions = {"python": platform.python_version(), "fastxent": fastxent.__version__}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "cpu": cpu_name(), "cores": os.cpu_count(), "usable_cores": usable,
            "threads": threads, "platform": platform.platform(), "versions": versions,
            "backends": {name: status.detail
                         for name, status in fastxent.available_backends().items()}}


def _cell(row, key, fmt):
    value = row.get(key)
    return "" if value is None else fmt.format(value)


def table(op, rows):
    """The text table of one operation, cases separated by blank lines."""
    header = ("shape", "dtype", "implementation", "median ms", "spread", "GB/s", "% memcpy",
              "x fastxent", "check")
    lines = []
    case = None
    for row in rows:
        if (tuple(row["shape"]), row["dtype"]) != case:
            if case is not None:
                lines.append(None)
            case = (tuple(row["shape"]), row["dtype"])
        if "failed" in row:
            check = "FAILED: " + row["failed"]
        elif "matches" in row:
            check = "ok" if row["matches"] else f"MISMATCH (rel. error {row['error']:.1e})"
        else:
            check = ""
        lines.append(("x".join(map(str, row["shape"])), row["dtype"], row["implementation"],
                      f"{row['median_s'] * 1e3:.3f}" if "median_s" in row else "",
                      _cell(row, "spread", "±{:.0%}"), _cell(row, "gb_s", "{:.1f}"),
                      _cell(row, "roofline", "{:.0%}"), _cell(row, "vs_fastxent", "{:.2f}"),
                      check))
    widths = [max(len(h), *(len(line[i]) for line in lines if line)) for i, h in
              enumerate(header)]
    align = ["<", "<", "<", ">", ">", ">", ">", ">", "<"]

    def fmt(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    out = [OP_TITLES[op], fmt(header), fmt(["-" * w for w in widths])]
    out += ["" if line is None else fmt(line) for line in lines]
    return "\n".join(out)


FOOTNOTE = """\
median ms: of {rounds}, every implementation run once per round, in turn.
spread: interquartile range over the median.
GB/s: the bytes an operation must move (its inputs read once, its outputs written once)
over the median time; % memcpy: that against a copy of the logits on the same threads,
timed in the same rounds. x fastxent: median time over that of the first fastxent row
of the case.
check: against fastxent's plain NumPy specification run in float64 (largest error over
the largest value, at most 1e-4 for float32, 1e-9 for float64)."""


def text(description, rows, ops, missing, hints):
    head = (f"fastxent bench  {description['date']}  {description['cpu']}  "
            f"{description['threads']} thread(s) of {description['usable_cores']} usable")
    parts = [head, ""]
    for op in ops:
        op_rows = [r for r in rows if r["op"] == op]
        if op_rows:
            parts += [table(op, op_rows), ""]
    rounds = sorted({len(r["times_s"]) for r in rows if r.get("times_s")})
    parts.append(FOOTNOTE.format(
        rounds="-".join(map(str, [rounds[0], rounds[-1]] if len(set(rounds)) > 1 else rounds))
        or "0"))
    for family, why in missing.items():
        parts.append(f"skipped {family} ({why}): {hints[family]}")
    return "\n".join(parts)


def save_json(path, description, settings, rows):
    with open(path, "w") as f:
        json.dump({"machine": description, "settings": settings, "results": rows}, f,
                  indent=1)


def plot(path, description, rows, ops):
    """Throughput (GB/s) per case for every implementation, one panel per
    operation, with the memcpy roofline as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in ops if any(r["op"] == op and "gb_s" in r for r in rows)]
    fig, axes = plt.subplots(len(ops), 1, figsize=(11, 3.6 * len(ops)), squeeze=False)
    everyone = list(dict.fromkeys(r["implementation"] for r in rows
                                  if r["family"] != "roofline"))
    color = {name: f"C{k % 10}" for k, name in enumerate(everyone)}  # the same in every panel
    for ax, op in zip(axes[:, 0], ops):
        timed = [r for r in rows if r["op"] == op and "gb_s" in r]
        cases = list(dict.fromkeys(("x".join(map(str, r["shape"])), r["dtype"])
                                   for r in timed))
        names = list(dict.fromkeys(r["implementation"] for r in timed
                                   if r["family"] != "roofline"))
        width = 0.8 / max(len(names), 1)
        for k, name in enumerate(names):
            for i, case in enumerate(cases):
                row = next((r for r in timed if r["implementation"] == name
                            and ("x".join(map(str, r["shape"])), r["dtype"]) == case), None)
                if row is not None:
                    ax.bar(i - 0.4 + (k + 0.5) * width, row["gb_s"], width,
                           color=color[name], label=name)
        for i, case in enumerate(cases):
            copy = next(r for r in timed if r["family"] == "roofline"
                        and ("x".join(map(str, r["shape"])), r["dtype"]) == case)
            ax.hlines(copy["gb_s"], i - 0.45, i + 0.45, colors="black", linestyles="dashed")
        ax.set_xticks(range(len(cases)), [f"{s}\n{d}" for s, d in cases])
        ax.set_yscale("log")
        ax.set_ylabel("GB/s")
        ax.set_title(OP_TITLES[op] + "  (dashed: memcpy)")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="center left",
                  bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"fastxent bench, {description['cpu']}, {description['threads']} thread(s), "
                 f"{description['date'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
