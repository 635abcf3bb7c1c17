"""The images of one segmentation: what each output carries besides its pixels."""

import numpy as np
from PIL import Image as PILImage
from PIL import ImageCms

from segment.options import FitOptions
from segment.outputs.model_file import load_model_file
from segment.pipeline import apply_file, segment_file


def _photo_with_profile(path):
    rng = np.random.default_rng(0)
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30] = [200, 40, 40]
    pixels[:, 30:] = [40, 60, 210]
    pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    PILImage.fromarray(pixels).save(path, icc_profile=icc)
    return icc


def test_quantized_image_keeps_the_inputs_colour_profile(tmp_path):
    """The quantised colours are the input's own values, so they keep its ICC profile; the
    display colours of the segmented image and the label numbers carry none."""
    icc = _photo_with_profile(tmp_path / "in.png")
    options = FitOptions(k=2)
    segment_file(tmp_path / "in.png", tmp_path / "out", options, plots=False)
    out = tmp_path / "out"
    assert PILImage.open(out / "in.quantized.png").info.get("icc_profile") == icc
    assert "icc_profile" not in PILImage.open(out / "in.segmented.png").info
    assert "icc_profile" not in PILImage.open(out / "in.labels.png").info
    model, opts, _ = load_model_file(out / "in.model.json")
    apply_file(model, opts, tmp_path / "in.png", tmp_path / "applied", plots=False)
    applied = PILImage.open(tmp_path / "applied" / "in.quantized.png")
    assert applied.info.get("icc_profile") == icc


def test_no_profile_in_no_profile_out(tmp_path):
    PILImage.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "plain.png")
    segment_file(tmp_path / "plain.png", tmp_path / "out", FitOptions(k=1), plots=False)
    assert "icc_profile" not in PILImage.open(tmp_path / "out" / "plain.quantized.png").info
