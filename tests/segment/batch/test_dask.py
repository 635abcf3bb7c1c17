"""Dask: ``gmm.fit_dask`` equals the in-memory fit, ``segment batch --scheduler`` gives the
outputs of the local pool, and the shared model fitted on a cluster equals the local one.

Needs the optional extra (``pip install '.[dask]'``); without it these tests skip.
A LocalCluster on loopback stands in for a real cluster: one worker *process*, so that
everything the tasks need really goes through serialisation.
"""

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gmm
from segment.batch import SharedPixels, engines, fit_shared, run_batch
from segment.cli import app
from segment.options import FitOptions
from tests.support.images import stripes

DASK_REASON = "needs the dask extra: pip install '.[dask]'"
pytestmark = pytest.mark.dask

RED, GREEN, BLUE = (200, 40, 40), (40, 160, 60), (50, 60, 210)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed", reason=DASK_REASON)
    environ = dict(os.environ)
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    # The nanny wrote its workers' variables (MALLOC_TRIM_THRESHOLD_, ...) into this
    # process's environment: later tests must not inherit them.
    os.environ.clear()
    os.environ.update(environ)
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def da():
    return pytest.importorskip("dask.array", reason=DASK_REASON)


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    stripes(src / "a.png", [RED, GREEN, BLUE], seed=0)
    stripes(src / "b.png", [BLUE, RED], seed=1)
    stripes(src / "sub" / "c.png", [GREEN, BLUE, RED, GREEN], seed=2)
    (src / "broken.png").write_bytes((src / "a.png").read_bytes()[:120])
    return src


def files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(("report.", "."))
    }


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (700, 3)), rng.normal(4, 0.6, (500, 3))])
    return X, rng.integers(1, 4, len(X)).astype(np.float64)


def model(**kw):
    start = {
        "weights_init": [0.5, 0.5],
        "means_init": [[-0.5, 0.0, 0.5], [3.0, 3.5, 4.0]],
        "precisions_init": np.stack([np.eye(3)] * 2),
    }
    return gmm.GaussianMixture(2, dtype=np.float64, tol=0.0, max_iter=10, **start, **kw)


def fitted(X, w=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmm.ConvergenceWarning)
        if kw:
            return gmm.fit_dask(model(), X, w, **kw)
        return model().fit(X, sample_weight=w)


def assert_same_fit(a, b, rtol=1e-8):
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=rtol)
    np.testing.assert_allclose(a.means_, b.means_, rtol=rtol, atol=1e-12)
    scale = np.abs(b.covariances_).max()  # near-zero off-diagonals: absolute error
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=rtol, atol=rtol * scale)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=rtol)


# ---------------------------------------------------------------------------------------------
# gmm.fit_dask


def test_gmm_imports_and_fits_without_dask():
    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
        "import numpy as np, gmm\n"
        "gmm.GaussianMixture(2, random_state=0).fit(np.random.default_rng(0).random((50, 2)))\n"
        "try:\n"
        "    gmm.DaskSource(None)\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install" in out.stdout


def test_fit_dask_on_a_cluster_equals_the_in_memory_fit(client, da, monkeypatch):
    X, w = blobs()
    calls = []
    real = gmm.DaskSource.accumulate
    monkeypatch.setattr(gmm.DaskSource, "accumulate", lambda s, k: calls.append(1) or real(s, k))
    ref = fitted(X, w)
    got = fitted(da.from_array(X, chunks=(300, 3)), da.from_array(w, chunks=300), scheduler=client)
    assert_same_fit(got, ref)
    # Every E-step was a map-reduce on the cluster (one more when EM stops on a plateau).
    assert got.n_iter_ <= len(calls) <= got.n_iter_ + 1


def test_gaussian_mixture_fit_takes_a_dask_array(da):
    X, w = blobs(1)
    ref = fitted(X, w)
    # NumPy weights are split like the rows; the default (threaded) scheduler runs it.
    got = fitted(da.from_array(X, chunks=(250, 3)), w)
    assert_same_fit(got, ref)
    np.testing.assert_array_equal(got.predict(da.from_array(X, chunks=(250, 3))), ref.predict(X))


def test_unknown_chunk_sizes(da):
    import dask

    X, w = blobs(2)
    parts = [(X[:400], w[:400]), (X[400:], w[400:])]
    xs = da.concatenate([da.from_delayed(dask.delayed(x), (np.nan, 3), X.dtype) for x, _ in parts])
    ws = da.concatenate([da.from_delayed(dask.delayed(v), (np.nan,), w.dtype) for _, v in parts])
    assert_same_fit(fitted(xs, ws), fitted(X, w))
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        gmm.DaskSource(xs, w)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda da: da.zeros(10, chunks=5), "2-D array"),
        (lambda da: da.zeros((10, 2), dtype=complex, chunks=5), "real numbers"),
    ],
)
def test_dask_source_errors(da, make, match):
    with pytest.raises(ValueError, match=match):
        gmm.DaskSource(make(da))


# ---------------------------------------------------------------------------------------------
# segment batch on Dask


def test_batch_on_dask_gives_the_outputs_of_the_local_pool(folder, tmp_path, client):
    options = FitOptions(k=3, xy=0.0)
    local = run_batch(folder, tmp_path / "local", options, recursive=True, workers=1, plots=False)
    remote = run_batch(
        folder, tmp_path / "dask", options, recursive=True, plots=False, scheduler=client
    )
    assert (
        remote.counts
        == local.counts
        == {"ok": 3, "failed": 1, "skipped": 0, "pending": 0, "interrupted": 0}
    )
    assert files(tmp_path / "dask") == files(tmp_path / "local")
    for a, b in zip(remote.rows, local.rows, strict=True):
        assert {**a, "seconds": None} == {**b, "seconds": None}


def test_cli_scheduler_address(folder, tmp_path, client):
    address = client.scheduler.address
    r = CliRunner().invoke(
        app,
        [
            "batch",
            str(folder),
            "-o",
            str(tmp_path / "out"),
            "-k",
            "3",
            "--no-plots",
            "--scheduler",
            address,
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 1 and "2 ok, 1 failed" in r.output
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["engine"].startswith("Dask (tcp://127.0.0.1")


def test_unreachable_scheduler_is_a_one_line_error(folder, tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason=DASK_REASON)
    monkeypatch.setattr(engines, "DASK_CONNECT_TIMEOUT", "0.5s")
    r = CliRunner().invoke(
        app,
        ["batch", str(folder), "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"],
        catch_exceptions=False,
    )
    assert r.exit_code == 1
    (line,) = r.output.strip().splitlines()
    assert line.startswith("segment: error: cannot connect to the Dask scheduler")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The shared model on Dask


def start(D):
    means = np.array([[0.7, 0.2, 0.2], [0.2, 0.6, 0.3], [0.25, 0.25, 0.75]])
    means = np.hstack([means, np.full((3, D - 3), 0.3)])
    return {
        "weights_init": np.full(3, 1 / 3),
        "means_init": means,
        "precisions_init": np.stack([np.eye(D) * 30.0] * 3),
    }


@pytest.mark.parametrize("xy", [0.0, 0.5], ids=["histogram", "streamed"])
def test_shared_fit_on_dask_equals_the_local_fit(folder, client, xy):
    paths = sorted(p for p in folder.rglob("*.png") if p.name != "broken.png")
    options = FitOptions(k=3, xy=xy, max_iter=8, tol=0.0)
    source = SharedPixels.from_files(paths, options, root=folder)
    init = start(source.n_features)
    local, _, _ = fit_shared(source, options, dtype=np.float64, init=init)
    remote, _, _ = fit_shared(source, options, dtype=np.float64, init=init, scheduler=client)
    assert_same_fit(remote, local)


def test_shared_model_batch_on_dask_matches_local(folder, tmp_path, client):
    options = FitOptions(k=3, xy=0.0)
    local = run_batch(
        folder,
        tmp_path / "local",
        options,
        recursive=True,
        workers=1,
        plots=False,
        shared_model=True,
    )
    remote = run_batch(
        folder,
        tmp_path / "dask",
        options,
        recursive=True,
        plots=False,
        shared_model=True,
        scheduler=client,
    )
    assert remote.counts == local.counts
    a, b = (json.loads(r.shared_model.read_text())["gmm"] for r in (remote, local))
    np.testing.assert_allclose(a["means"], b["means"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a["weights"], b["weights"], rtol=1e-4)
    for rel in ("a", "b", "sub/c"):
        la, lb = (
            np.asarray(Image.open(Path(tmp_path, d, f"{rel}.labels.png")))
            for d in ("dask", "local")
        )
        np.testing.assert_array_equal(la, lb)


def test_local_cluster_workers_keep_the_adaptive_malloc(tmp_path):
    pytest.importorskip("distributed", reason=DASK_REASON)
    before = dict(os.environ)
    with engines.DaskEngine("local", 1) as engine:
        env = engine.client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert dict(os.environ) == before  # and ours is left as it was
    assert list(env.values()) == [None]
