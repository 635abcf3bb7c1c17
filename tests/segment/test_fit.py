"""The mixture fit of an image: its regularisation and clipped colours."""

import numpy as np
import pytest

from segment.features import SPACE_RANGE, pixel_data, quantisation_variance
from segment.fit import fit_data, gmm_options
from segment.imageio import Image
from segment.options import FitOptions


def image_of(pixels):
    return Image(
        pixels=pixels, alpha=None, path=None, format="array", mode="RGB", frame=0, n_frames=1
    )


@pytest.mark.parametrize("space", ["rgb", "lab"])
def test_default_regularisation_is_the_variance_of_one_8_bit_step(space):
    step = SPACE_RANGE[space] / 255.0
    assert quantisation_variance(space) == pytest.approx(step * step / 12.0, rel=1e-15)
    # Uniform noise over one step, measured.
    u = (np.arange(100_000) + 0.5) / 100_000 * step
    assert np.var(u) == pytest.approx(quantisation_variance(space), rel=1e-6)
    assert gmm_options(FitOptions(space=space))["reg_covar"] == quantisation_variance(space)
    assert gmm_options(FitOptions(space=space, reg_covar=1e-3))["reg_covar"] == 1e-3


def test_clipped_pixels_are_one_component_not_a_collapse():
    """A third of the pixels pure black (clipped shadows) beside textured colour: the
    default fit (CIELAB, float32) converges without restarting the component on the black
    pixels, and without a note that the objective decreased."""
    rng = np.random.default_rng(1)
    H, W = 120, 150
    yy, xx = np.mgrid[:H, :W]
    base = np.stack([80 + xx, 60 + yy, 200 - xx // 2], axis=2).astype(float)
    pixels = np.clip(base + rng.normal(0, 12, (H, W, 3)), 0, 255).astype(np.uint8)
    pixels[:, : W // 3] = 0
    options = FitOptions(k=6)
    seg = fit_data(pixel_data(image_of(pixels), space=options.space), options)
    assert seg.model.n_resets_ == 0
    assert seg.model.converged_
    assert not [n for n in seg.notes if "decreased" in n]
    black = np.flatnonzero(np.abs(seg.model.means_).sum(axis=1) < 0.5)
    assert len(black) == 1
    assert seg.model.covariances_[black[0]].trace() < 3 * SPACE_RANGE["lab"]
