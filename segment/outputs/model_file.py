"""NAME.model.json: the fitted mixture with the options, palettes and figures of a
segmentation (no timings: the same command gives the same bytes), and reading it back for
``segment apply``."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gmm

from .. import __version__
from ..color import rgb_to_uint8
from ..errors import SegmentError
from ..features import FEATURE_NAMES
from ..options import FitOptions
from .files import label_dtype, transparent_label

MODEL_FORMAT = "segment.model/1"


def segmented_palette(k):
    from ..color import default_component_colors

    return rgb_to_uint8(default_component_colors(k))


@dataclass(frozen=True)
class ImageInfo:
    """What the outputs need to know of an input once its pixels are gone."""

    path: Path
    mode: str
    format: str
    frame: int
    n_frames: int

    @classmethod
    def of(cls, image):
        return cls(
            Path(image.path), image.mode, image.format, int(image.frame), int(image.n_frames)
        )


def model_document(seg, image, options, figures):
    """The content of NAME.model.json: parameters, options, history, figures (no timings,
    so that the same command gives the same bytes)."""
    m = seg.model
    return {
        "format": MODEL_FORMAT,
        "segment_version": __version__,
        "input": {
            "path": str(image.path),
            "width": int(seg.data.shape[1]),
            "height": int(seg.data.shape[0]),
            "mode": image.mode,
            "format": image.format,
            "frame": int(image.frame),
        },
        "options": options.to_dict(),
        "features": {
            "space": seg.data.space,
            "xy": seg.data.xy,
            "names": [*FEATURE_NAMES[seg.data.space], *(("x", "y") if seg.data.xy else ())],
        },
        "labels": {
            "dtype": np.dtype(label_dtype(seg.k)).name,
            "transparent_label": transparent_label(seg.k),
            "order": "components sorted from dark to light",
        },
        "palette": {
            "segmented": segmented_palette(seg.k).tolist(),
            "quantized": seg.quantized_palette.tolist(),
        },
        "summary": {k: v for k, v in figures.items() if k not in ("seconds", "outputs", "input")},
        "history": [float(v) for v in m.history_],
        "selection": None if seg.selection is None else seg.selection.to_dict(),
        "gmm": m.to_dict(),
    }


def load_model_file(model_path):
    """Read a NAME.model.json: the mixture and the options its features were made with."""
    model_path = Path(model_path)
    try:
        doc = json.loads(model_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegmentError(f"{model_path}: no such model file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SegmentError(f"{model_path}: not a readable model file ({err}).") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise SegmentError(
            f"{model_path}: not a segment model file (expected a NAME.model.json "
            "written by 'segment image')."
        )
    try:
        model = gmm.GaussianMixture.from_dict(doc["gmm"])
        options = FitOptions(**doc["options"]).validate()
    except (ValueError, KeyError, TypeError) as err:
        raise SegmentError(f"{model_path}: the model file is damaged ({err}).") from None
    return model, options, doc
