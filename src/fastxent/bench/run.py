"""One benchmark case: check every implementation against the float64
reference, then time them all, interleaved, with the memcpy roofline."""

import numpy as np

from .implementations import reference
from .timing import Copy, interleaved, summary

TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


def relative_error(found, expected):
    """max |found - expected| over max |expected| (or over 1 where that is 0)."""
    found, expected = np.asarray(found, np.float64), np.asarray(expected, np.float64)
    if found.shape != expected.shape:
        return np.inf
    scale = np.max(np.abs(expected), initial=0.0) or 1.0
    return float(np.max(np.abs(found - expected), initial=0.0) / scale)


def check(result, expected):
    """The largest relative error of (loss or output, gradient or None), or of
    each metric an implementation reports (a dict, a subset of the expected)."""
    if isinstance(expected, dict):
        errors = [relative_error(value, expected[name]) for name, value in result.items()]
    else:
        errors = [relative_error(r, e) for r, e in zip(result, expected) if e is not None]
    return max(errors) if errors else 0.0


def run_case(problem, impls, threads, repeat, budget_s, progress=lambda name: None):
    """A list of result rows (dicts), the first fastxent implementation's
    median as the unit of ``vs_fastxent``, and a "memcpy" row last."""
    expected = reference(problem)
    tolerance = TOLERANCE[problem.dtype]
    calls, rows = {}, []
    for impl in impls:
        progress(impl.name)
        row = {"op": problem.op, "shape": list(problem.shape), "dtype": problem.dtype.name,
               "implementation": impl.name, "family": impl.family}
        try:
            call, collect = impl.prepare(problem, threads)
            result = call()  # also compiles (Numba) and warms up, before any timing
            row["error"] = check(collect(result), expected)
            call()
        except Exception as exc:
            row["failed"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            rows.append(row)
            continue
        row["matches"] = bool(row["error"] <= tolerance)
        calls[impl.name] = call
        rows.append(row)
    copy = Copy(problem.x, threads)
    copy()
    calls["memcpy"] = copy
    progress("timing")
    try:
        times = interleaved(calls, repeat, budget_s)
    finally:
        copy.close()
    copy_times = times.pop("memcpy")
    copy_median, copy_spread = summary(copy_times)
    copy_bandwidth = 2 * problem.x.nbytes / copy_median
    rows.append({"op": problem.op, "shape": list(problem.shape), "dtype": problem.dtype.name,
                 "implementation": "memcpy", "family": "roofline", "times_s": copy_times,
                 "median_s": copy_median, "spread": copy_spread,
                 "bytes": 2 * problem.x.nbytes, "gb_s": copy_bandwidth / 1e9,
                 "roofline": 1.0})
    summaries = {name: summary(seconds) for name, seconds in times.items()}
    unit = next((summaries[r["implementation"]][0] for r in rows
                 if r["family"] == "fastxent" and r["implementation"] in summaries), None)
    for row in rows:
        name = row["implementation"]
        if name not in summaries:
            continue
        median, spread = summaries[name]
        row.update(times_s=times[name], median_s=median, spread=spread,
                   bytes=problem.bytes_moved, gb_s=problem.bytes_moved / median / 1e9,
                   roofline=problem.bytes_moved / median / copy_bandwidth,
                   vs_fastxent=median / unit if unit else None)
    return rows
