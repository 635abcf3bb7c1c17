"""SSIM over visible pixels (issue 13, class 13): scikit-image's map when every pixel is
visible, and blind to what transparent pixels hold."""

import numpy as np
from skimage.metrics import structural_similarity

from segment.metrics import image_figures
from segment.ssim import masked_ssim_map


def pair(seed=0, shape=(30, 40, 3)):
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    return x, np.clip(x + rng.normal(0, 0.1, shape), 0, 1)


def test_all_visible_is_scikit_image_map():
    x, y = pair()
    _, expected = structural_similarity(x, y, channel_axis=-1, data_range=1.0, full=True)
    S, defined = masked_ssim_map(x, y, np.ones(x.shape[:2], bool))
    assert defined.all()
    np.testing.assert_allclose(S, expected, rtol=0, atol=1e-12)


def test_hidden_pixels_do_not_count():
    x, y = pair(1)
    visible = np.ones(x.shape[:2], bool)
    visible[10:20, 12:25] = False
    visible[0, 0] = False
    S, defined = masked_ssim_map(x, y, visible)
    x2, y2 = x.copy(), y.copy()
    x2[~visible], y2[~visible] = 0.0, 1.0
    S2, defined2 = masked_ssim_map(x2, y2, visible)
    assert (defined == defined2).all() and not defined[~visible].any()
    np.testing.assert_allclose(S[defined], S2[defined], rtol=0, atol=1e-12)


def test_naive_window_at_one_pixel():
    """One pixel's SSIM from its window's visible pixels, by the formula directly."""
    x, y = pair(2, (15, 15, 1))
    visible = np.random.default_rng(3).random((15, 15)) > 0.3
    visible[7, 7] = True
    S, _ = masked_ssim_map(x, y, visible)
    win = visible[4:11, 4:11]
    a, b = x[4:11, 4:11, 0][win], y[4:11, 4:11, 0][win]
    C1, C2 = 0.01**2, 0.03**2
    cov = np.cov(a, b)  # sample (co)variances over the visible pixels
    ux, uy = a.mean(), b.mean()
    expected = ((2 * ux * uy + C1) * (2 * cov[0, 1] + C2)) / (
        (ux**2 + uy**2 + C1) * (cov[0, 0] + cov[1, 1] + C2)
    )
    assert abs(S[7, 7, 0] - expected) < 1e-12


def test_image_figures_ignore_hidden_colours():
    x, y = pair(4, (40, 48, 3))
    visible = np.ones(x.shape[:2], bool)
    visible[12:28, 16:32] = False
    x2 = x.copy()
    x2[~visible] = 0.0
    one = image_figures(x.astype(np.float32), y.astype(np.float32), visible)
    two = image_figures(x2.astype(np.float32), y.astype(np.float32), visible)
    assert one["ssim"] == two["ssim"]
    # Without transparency, unchanged: scikit-image's figure.
    ref = structural_similarity(x, y, channel_axis=-1, data_range=1.0)
    assert abs(image_figures(x, y)["ssim"] - ref) < 1e-9
