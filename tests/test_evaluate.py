"""fastxent.evaluate against each metric computed on its own: scikit-learn's
accuracy_score, top_k_accuracy_score and log_loss, and NumPy / SciPy for the
per-sample values; on random and adversarial inputs (ties, -inf and NaN
logits, ignored and all-ignored batches, N = 0), for every backend."""

import io
import tracemalloc

import numpy as np
import pytest

import fastxent
from conftest import make_logits, make_targets, make_weight, snapshot, assert_unchanged

metrics = pytest.importorskip("sklearn.metrics")
special = pytest.importorskip("scipy.special")


def numpy_metrics(z, y, topk, ignore_index=-100, sample_weight=None, weight=None):
    """Each metric on its own, in float64, with scikit-learn where it has one."""
    z = np.asarray(z, np.float64)
    kept = y != ignore_index
    zk, yk = z[kept], y[kept]
    sw = None if sample_weight is None else np.asarray(sample_weight, np.float64)[kept]
    n_classes = z.shape[1]
    labels = np.arange(n_classes)
    p = special.softmax(zk, axis=1)
    logp = special.log_softmax(zk, axis=1)
    ce = -logp[np.arange(len(yk)), yk]
    wy = np.ones(len(yk)) if weight is None else np.asarray(weight, np.float64)[yk]
    sw_or_1 = np.ones(len(yk)) if sw is None else sw
    if n_classes == 2:  # scikit-learn scores binary problems by the second column
        top = {k: metrics.top_k_accuracy_score(yk, zk[:, 1] - zk[:, 0], k=k, labels=labels,
                                               sample_weight=sw) for k in topk}
    else:
        top = {k: metrics.top_k_accuracy_score(yk, zk, k=k, labels=labels, sample_weight=sw)
               for k in topk}
    return {
        "loss": np.sum(sw_or_1 * wy * ce) / np.sum(sw_or_1 * wy),
        "log_loss": metrics.log_loss(yk, p, labels=labels, sample_weight=sw),
        "accuracy": metrics.accuracy_score(yk, np.argmax(zk, axis=1), sample_weight=sw),
        "top_k_accuracy": top,
        "entropy": np.average(-np.sum(np.where(p == 0, 0.0, p * logp), axis=1),
                              weights=sw),
        "logsumexp": np.average(special.logsumexp(zk, axis=1), weights=sw),
    }


def rank_by_argsort(z, y):
    """The target's position in np.argsort(kind="stable")[::-1]: scikit-learn's order."""
    order = np.argsort(z, axis=1, kind="stable")[:, ::-1]
    return np.argmax(order == y[:, None], axis=1)


def assert_matches(result, expected, dtype):
    rtol = 1e-12 if np.dtype(dtype) == np.float64 else 2e-6
    for name in ("loss", "entropy", "logsumexp"):
        assert result[name] == pytest.approx(expected[name], rel=rtol, abs=rtol), name
    assert result["loss"] == pytest.approx(expected["log_loss"], rel=1e-6)  # log_loss clips
    assert result["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-14)
    assert result["top_k_accuracy"] == pytest.approx(expected["top_k_accuracy"], rel=1e-14)


@pytest.mark.filterwarnings("ignore:'k' .* greater than or equal to 'n_classes'")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [2, 3, 10, 40, 1500])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("with_sw", [False, True])
def test_metrics_match_scikit_learn(backend, rng, dtype, n_classes, ties, with_sw):
    n = 300
    z = make_logits(rng, (n, n_classes), dtype)
    if ties:  # many equal logits, the target's among them
        z = np.round(z / 2).astype(dtype)
    y = make_targets(rng, (n, n_classes), n_ignore=20)
    sw = 0.1 + rng.random(n) if with_sw else None
    topk = (1, 2, 5, n_classes)
    snaps = snapshot(z, y)
    result = fastxent.evaluate(z, y, topk=topk, sample_weight=sw, backend=backend,
                               per_sample=True)
    assert_unchanged((z, y), snaps)
    expected = numpy_metrics(z, y, topk, sample_weight=sw)
    assert_matches(result, expected, dtype)
    if sw is None:  # sums of 0 and 1, exact in any order
        assert result["accuracy"] == expected["accuracy"]
        assert result["top_k_accuracy"] == expected["top_k_accuracy"]
    assert result["n_samples"] == np.count_nonzero(y != -100)
    # Without per-sample values the kernels skip what the means do not need
    # (the argmax of rows whose target is not a maximum): the same means.
    alone = fastxent.evaluate(z, y, topk=topk, sample_weight=sw, backend=backend)
    assert alone == {name: value for name, value in result.items() if name != "per_sample"}

    each = result["per_sample"]
    kept = y != -100
    np.testing.assert_array_equal(each["argmax"], np.argmax(z, axis=1))
    np.testing.assert_array_equal(each["correct"], kept & (np.argmax(z, axis=1) == y))
    np.testing.assert_array_equal(each["rank"][kept], rank_by_argsort(z[kept], y[kept]))
    assert np.all(each["rank"][~kept] == n_classes) and np.all(each["loss"][~kept] == 0)
    z64 = z.astype(np.float64)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    # lse = m + log(s) cancels where it is near 0: a few ulps of 1 + max|z| absolute
    atol = 8 * np.finfo(dtype).eps * (1 + np.max(np.abs(z64)))
    np.testing.assert_allclose(each["logsumexp"], special.logsumexp(z64, axis=1), rtol=rtol,
                               atol=atol)
    p = special.softmax(z64, axis=1)
    np.testing.assert_allclose(each["entropy"], special.entr(p).sum(axis=1), rtol=rtol,
                               atol=atol)
    loss = fastxent.cross_entropy(z, y, reduction="none", backend=backend)
    np.testing.assert_allclose(each["loss"], loss, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_is_not_clipped_as_log_loss_clips(backend, dtype):
    # Targets of probability about 1e-22 (below float64's epsilon) and 1 - 1e-43.
    z = np.array([[0.0, -50.0, 0.0], [100.0, 0.0, 0.0]], dtype)
    y = np.array([1, 0])
    exact = -special.log_softmax(z.astype(np.float64), axis=1)[[0, 1], y]
    result = fastxent.evaluate(z, y, backend=backend)
    assert result["loss"] == pytest.approx(exact.mean(), rel=1e-7)
    p = special.softmax(z.astype(np.float64), axis=1)
    assert metrics.log_loss(y, p, labels=[0, 1, 2]) < exact.mean() - 7


def test_class_weight_weighs_the_loss_only(backend, rng):
    z = make_logits(rng, (200, 6))
    y = make_targets(rng, (200, 6), n_ignore=10)
    w = make_weight(rng, 6)
    sw = rng.random(200)
    result = fastxent.evaluate(z, y, weight=w, sample_weight=sw, backend=backend)
    expected = numpy_metrics(z, y, (1, 5), sample_weight=sw, weight=w)
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-12)
    assert result["loss"] == pytest.approx(
        fastxent.cross_entropy(z, y, w, sample_weight=sw, backend="numpy"), rel=1e-12)
    assert result["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adversarial_rows(backend, dtype):
    inf, nan = np.inf, np.nan
    z = np.array([
        [0.0, -inf, 1.0, -inf],    # -inf logits: entropy without nan
        [2.0, 2.0, 2.0, 2.0],      # all tied
        [-inf, -inf, -inf, -inf],  # nothing finite: nan loss, lse -inf
        [1.0, nan, 3.0, nan],      # NaN: argmax is the first NaN, as np.argmax
        [nan, 1.0, 2.0, 0.0],      # a NaN target
        [inf, 0.0, 1.0, inf],      # +inf: lse inf, loss nan
        [5.0, 5.0, 1.0, 0.0],      # ignored
    ])
    y = np.array([2, 1, 0, 2, 0, 1, -100])
    # three copies: rows in full tiles of 16 and in a partial one
    result = fastxent.evaluate(np.tile(z, (3, 1)).astype(dtype), np.tile(y, 3), topk=(1, 2, 3),
                               per_sample=True, backend=backend)
    each = {name: values[:7] for name, values in result["per_sample"].items()}
    for name, values in result["per_sample"].items():
        np.testing.assert_array_equal(values.reshape(3, 7), np.tile(values[:7], (3, 1)), name)
    np.testing.assert_array_equal(each["argmax"], np.argmax(z, axis=1))
    np.testing.assert_array_equal(each["rank"][:-1], rank_by_argsort(z[:-1], y[:-1]))
    assert each["rank"][-1] == 4 and each["loss"][-1] == 0 and not each["correct"][-1]
    with np.errstate(all="ignore"):
        lse = special.logsumexp(z, axis=1)
    lse[3] = lse[4] = nan  # scipy gives nan for a NaN too
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(each["logsumexp"], lse, rtol=rtol)
    np.testing.assert_allclose(each["entropy"][:2], [special.entr([1 / (1 + np.e ** -1),
                                                                   1 / (1 + np.e)]).sum(),
                                                     np.log(4)], rtol=rtol)
    assert np.isnan(each["entropy"][2:6]).all()
    np.testing.assert_allclose(each["loss"][:2], [np.log1p(np.e ** -1), np.log(4)], rtol=rtol)
    assert np.isnan(each["loss"][2:6]).all()
    assert np.isnan(result["loss"]) and np.isnan(result["entropy"])
    assert result["n_samples"] == 18


@pytest.mark.parametrize("target", [np.full(5, -100), np.empty(0, np.int64)])
def test_nothing_to_count_gives_nan(backend, target):
    z = np.zeros((len(target), 3))
    result = fastxent.evaluate(z, target, backend=backend, per_sample=True)
    assert result["n_samples"] == 0
    for name in ("loss", "accuracy", "entropy", "logsumexp"):
        assert np.isnan(result[name]), name
    assert all(np.isnan(v) for v in result["top_k_accuracy"].values())
    assert result["per_sample"]["loss"].shape == target.shape


# Rows in tiles, rows one by one; blocks of sums of 1024 rows, and of 128.
@pytest.mark.parametrize("n_classes", [5, 37, 300])
def test_results_do_not_depend_on_chunks_threads_or_per_sample(backend, rng, n_classes):
    z = make_logits(rng, (5000, n_classes), np.float32)
    y = make_targets(rng, (5000, n_classes), n_ignore=100)
    sw = rng.random(5000)
    first = fastxent.evaluate(z, y, sample_weight=sw, backend=backend, per_sample=True)
    for chunk_rows, num_threads, per_sample in ((1, 1, True), (1500, 2, False),
                                                (4096, 1, False), (10 ** 6, 2, True)):
        other = fastxent.evaluate(z, y, sample_weight=sw, backend=backend,
                                  per_sample=per_sample, chunk_rows=chunk_rows,
                                  num_threads=num_threads)
        for name in ("loss", "accuracy", "top_k_accuracy", "entropy", "logsumexp",
                     "n_samples"):
            assert other[name] == first[name], (name, chunk_rows, num_threads)
        if per_sample:
            for name, values in first["per_sample"].items():
                np.testing.assert_array_equal(other["per_sample"][name], values)


@pytest.mark.parametrize("n_classes", [2, 5, 37])
@pytest.mark.parametrize("n_ignored", [0, 7])
def test_weights_of_one_give_the_same_bits(backend, rng, n_classes, n_ignored):
    # A weight of 1 multiplies exactly: the block sums are the same bits.
    z = make_logits(rng, (5000, n_classes), np.float32)
    y = make_targets(rng, (5000, n_classes), n_ignore=0)
    y[:n_ignored] = -100
    plain = fastxent.evaluate(z, y, backend=backend, chunk_rows=1024)
    for kwargs in (dict(sample_weight=np.ones(5000)), dict(weight=np.ones(n_classes)),
                   dict(chunk_rows=10 ** 6)):
        other = fastxent.evaluate(z, y, backend=backend, **({"chunk_rows": 1024} | kwargs))
        for name in ("loss", "accuracy", "top_k_accuracy", "entropy", "logsumexp",
                     "n_samples"):
            assert other[name] == plain[name], (name, kwargs)


def test_progress_shows_the_rows_done_and_changes_nothing(rng, capsys):
    z = make_logits(rng, (5000, 7), np.float32)
    y = make_targets(rng, (5000, 7))
    plain = fastxent.evaluate(z, y)
    assert capsys.readouterr().err == ""
    assert fastxent.evaluate(z, y, progress=True, chunk_rows=1024) == plain
    err = capsys.readouterr().err
    assert err.startswith("\revaluate: ") and err.endswith("\n")
    assert err.split("\r")[-1].startswith("evaluate: 100.0% of 5000 rows, ")
    stream = io.StringIO()
    fastxent.evaluate(z, y, progress=stream)
    assert "100.0% of 5000 rows" in stream.getvalue()
    with pytest.raises(TypeError, match="progress must be"):
        fastxent.evaluate(z, y, progress="yes")


def test_memory_mapped_logits_stream_through(rng, tmp_path):
    z = make_logits(rng, (3000, 50), np.float32)
    y = make_targets(rng, (3000, 50))
    path = tmp_path / "logits.f32"
    z.tofile(path)
    mapped = np.memmap(path, np.float32, mode="r", shape=z.shape)
    streamed = fastxent.evaluate(mapped, y, chunk_rows=1024)
    assert streamed == fastxent.evaluate(z, y)
    del mapped


@pytest.mark.parametrize("shape", [(600, 50, 10, 4), (2, 50, 3000, 4)])
def test_memory_mapped_logits_with_the_class_axis_apart_stream_through(rng, tmp_path, shape):
    # The rows of (N, C, d1, d2) logits are not a view: each chunk gathers its
    # own, across samples and within one, and nothing holds all the logits.
    z = make_logits(rng, shape, np.float32)
    y = make_targets(rng, shape, n_ignore=30)
    path = tmp_path / "logits.f32"
    z.tofile(path)
    mapped = np.memmap(path, np.float32, mode="r", shape=z.shape)
    tracemalloc.start()
    try:
        streamed = fastxent.evaluate(mapped, y, chunk_rows=1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < z.nbytes / 4
    assert streamed == fastxent.evaluate(z, y)
    streamed = fastxent.evaluate(mapped, y, chunk_rows=1024, per_sample=True)
    whole = fastxent.evaluate(z, y, per_sample=True)
    for name, values in whole["per_sample"].items():
        np.testing.assert_array_equal(streamed["per_sample"][name], values)
    assert {k: v for k, v in streamed.items() if k != "per_sample"} == \
        {k: v for k, v in whole.items() if k != "per_sample"}
    rows = np.moveaxis(z, 1, -1).reshape(-1, shape[1])
    assert fastxent.evaluate(rows, y.reshape(-1)) == fastxent.evaluate(mapped, y, chunk_rows=2048)
    del mapped


def test_shapes_of_per_sample_values(rng):
    z = make_logits(rng, (4, 6, 3, 2))
    y = make_targets(rng, (4, 6, 3, 2), n_ignore=2)
    result = fastxent.evaluate(z, y, per_sample=True)
    rows = np.moveaxis(z, 1, -1).reshape(-1, 6)
    flat = fastxent.evaluate(rows, y.reshape(-1), per_sample=True)
    for name, values in result["per_sample"].items():
        assert values.shape == (4, 3, 2)
        np.testing.assert_array_equal(values.reshape(-1), flat["per_sample"][name])
    one = fastxent.evaluate(z[0, :, 0, 0], y[0, 0, 0] if y[0, 0, 0] >= 0 else 1, topk=1,
                            per_sample=True)
    assert one["per_sample"]["loss"].shape == ()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(target=np.zeros(4)), TypeError, "integer class indices"),
    (dict(target=np.zeros(3, np.int64)), ValueError, "shape"),
    (dict(target=np.array([0, 1, 6, 2])), IndexError, "target value 6"),
    (dict(topk=0), ValueError, "topk"),
    (dict(topk=(1, "a")), TypeError, "topk"),
    (dict(topk=True), TypeError, "topk"),
    (dict(topk=(1, np.True_)), TypeError, "topk"),
    (dict(chunk_rows=0), ValueError, "chunk_rows"),
    (dict(sample_weight=np.ones(5)), ValueError, "sample_weight"),
    (dict(weight=np.ones(3)), ValueError, "weight"),
    (dict(backend="fast"), ValueError, "backend"),
])
def test_bad_arguments(rng, kwargs, error, match):
    args = dict(logits=make_logits(rng, (4, 6)), target=np.array([0, 1, 5, 2]))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fastxent.evaluate(args.pop("logits"), args.pop("target"), **args)
