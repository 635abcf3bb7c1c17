"""The EM animation: bounded frames, a valid GIF, the fitted mixture last, atomic writes."""

import numpy as np
import pytest
from PIL import Image

import gmm
from segment.errors import SegmentError
from segment.outputs.animation import EMRecorder, block_covariances, thin, write_em_gif


@pytest.mark.parametrize("n", [1, 5, 40, 41, 1000])
def test_thinning_keeps_first_and_last_and_is_bounded(n):
    idx = thin(n, 40)
    assert idx[0] == 0 and idx[-1] == n - 1
    assert len(idx) <= 40 and idx == sorted(set(idx))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "tied_diag", "spherical"])
def test_block_covariances_match_full_matrices(covariance_type):
    rng = np.random.default_rng(0)
    X = rng.random((500, 4))
    m = gmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    full = gmm.full_covariances(covariance_type, m.covariances_, 3, 4)
    got = block_covariances(covariance_type, m.covariances_, 3, 4, [0, 2, 3])
    np.testing.assert_allclose(got, full[:, [0, 2, 3]][:, :, [0, 2, 3]])


def test_gif_is_valid_bounded_and_written_atomically(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.random((4, 3))
    X = np.clip(centres[rng.integers(0, 4, 3000)] + 0.05 * rng.normal(size=(3000, 3)), 0, 1)
    recorder = EMRecorder("full", [0, 1, 2])
    model = gmm.GaussianMixture(
        4, init="random_from_data", random_state=2, callback=recorder, tol=0, max_iter=25
    )
    with pytest.warns(gmm.ConvergenceWarning):
        model.fit(X)
    assert len(recorder.frames) == model.n_iter_
    np.testing.assert_array_equal(recorder.history, [f[1] for f in recorder.frames])
    final = (model.weights_, model.means_, model.covariances_)
    path = tmp_path / "x.em.gif"
    n = write_em_gif(path, X[:500], X[:500], recorder, final, names="RGB", max_frames=6)
    assert n == 6
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 6 and im.size == (600, 240)
        assert im.info["duration"] > 0
    before = path.read_bytes()
    with pytest.raises(SegmentError, match="already exists"):
        write_em_gif(path, X[:500], X[:500], recorder, final, names="RGB", max_frames=3)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.em.gif"]


def blobs(path, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((30, 40, 3))
    img[:, :20] = (200, 40, 40)
    img[:, 20:] = (40, 60, 210)
    img[10:20, 10:30] = (240, 230, 60)
    img += rng.normal(0, 8, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def test_segment_image_animate_writes_the_gif_with_the_fitted_mixture_last(tmp_path):
    from typer.testing import CliRunner

    from segment.cli import app

    runner = CliRunner()
    src = blobs(tmp_path / "x.png")
    out = tmp_path / "out"
    args = ["image", str(src), "-k", "3", "--xy", "0", "-o", str(out), "--no-plots"]
    r = runner.invoke(app, [*args, "--animate", "--json"])
    assert r.exit_code == 0, r.output
    gif = out / "x.em.gif"
    with Image.open(gif) as im:
        assert im.format == "GIF" and 2 <= im.n_frames <= 40
    assert '"em": ' in r.output  # listed among the outputs
    # An existing output is refused before anything is written.
    before = gif.read_bytes()
    r = runner.invoke(app, [*args, "--animate"])
    assert r.exit_code == 1 and "already exists" in r.output
    assert gif.read_bytes() == before
    # A range of k: several fits compete; no animation, and a note says so.
    r = runner.invoke(
        app, ["image", str(src), "-k", "2:3", "-o", str(tmp_path / "o2"), "--no-plots", "--animate"]
    )
    assert r.exit_code == 0 and "no animation" in r.output
    assert not (tmp_path / "o2" / "x.em.gif").exists()


def test_the_last_frame_is_the_mixture_of_the_model_file(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from segment.cli import app
    from segment.outputs import animation

    seen = {}
    original = animation.write_em_gif

    def capture(path, points, colours, recorder, final, **kwargs):
        seen.update(final=final, frames=list(recorder.frames))
        return original(path, points, colours, recorder, final, **kwargs)

    monkeypatch.setattr(animation, "write_em_gif", capture)
    src = blobs(tmp_path / "y.png", seed=1)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["image", str(src), "-k", "3", "-o", str(out), "--animate"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "y.model.json").read_text())
    model = gmm.GaussianMixture.from_dict(doc["gmm"])
    weights, means, covs = seen["final"]
    np.testing.assert_allclose(weights, model.weights_)
    np.testing.assert_allclose(means, model.means_[:, :3])
    full = gmm.full_covariances(model.covariance_type, model.covariances_, 3, means.shape[1])
    np.testing.assert_allclose(covs, full[:, :3, :3])
    assert len(seen["frames"]) == model.n_iter_
