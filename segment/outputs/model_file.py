"""NAME.model.json: the fitted mixture with the options, palettes and figures of a
segmentation (no timings: the same command gives the same bytes), and reading it back for
``segment apply``."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gmm

from .. import __version__
from ..color import rgb_to_uint8
from ..errors import SegmentError, printable
from ..features import FEATURE_NAMES, SPACE_RANGE
from ..imageio.files import MAX_MODEL_BYTES, load_json
from ..options import FitOptions
from .files import label_dtype, transparent_label, written_in_group

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
    icc_profile: bytes | None = None

    @classmethod
    def of(cls, image):
        return cls(
            Path(image.path),
            image.mode,
            image.format,
            int(image.frame),
            int(image.n_frames),
            getattr(image, "icc_profile", None),
        )


def image_input(image, shape):
    """The ``input`` part of an image's model file: the file, its size (H, W) and mode."""
    return {
        "path": str(image.path),
        "width": int(shape[1]),
        "height": int(shape[0]),
        "mode": image.mode,
        "format": image.format,
        "frame": int(image.frame),
    }


def model_document(model, *, input, options, space, xy, palette, figures, selection=None):
    """The content of NAME.model.json: the fitted ``model`` with the ``input`` it was fitted
    to (a dict), the options, the features (colour ``space``, position weight ``xy``), the
    palettes (``palette``: each component's colour, uint8), the history and the figures (no
    timings, so that the same command gives the same bytes), and the BIC table when the
    mixture was chosen among several."""
    k = model.n_components
    return {
        "format": MODEL_FORMAT,
        "segment_version": __version__,
        "input": input,
        "options": options.to_dict(),
        "features": {
            "space": space,
            "xy": xy,
            "names": [*FEATURE_NAMES[space], *(("x", "y") if xy else ())],
        },
        "labels": {
            "dtype": np.dtype(label_dtype(k)).name,
            "transparent_label": transparent_label(k),
            "order": "components sorted from dark to light",
        },
        "palette": {
            "segmented": segmented_palette(k).tolist(),
            "quantized": palette.tolist(),
        },
        "summary": {k: v for k, v in figures.items() if k not in ("seconds", "outputs", "input")},
        "history": [float(v) for v in model.history_],
        "selection": None if selection is None else selection.to_dict(),
        "gmm": model.to_dict(),
    }


def file_digest(path):
    """``{"bytes": size, "sha256": hex}`` of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return {"bytes": size, "sha256": h.hexdigest()}


def output_record(model_path):
    """The size and SHA-256 of every output written so far beside ``model_path`` in the
    current atomic group (the other outputs of its image or frame), by file name."""
    model_path = Path(model_path)
    prefix = model_path.name.removesuffix("model.json")
    return {
        path.name: file_digest(tmp)
        for tmp, path in written_in_group()
        if path.parent == model_path.parent and path.name.startswith(prefix) and path != model_path
    }


def load_model_file(model_path):
    """Read a NAME.model.json: the mixture and the options its features were made with.

    The file is read as hostile input (see :mod:`segment.imageio.files`: a regular file of
    bounded size, strict JSON) and the whole model is checked before use: the options, the
    mixture (finite, shapes, weights, positive definite covariances: see
    :meth:`gmm.GaussianMixture.from_dict`), the features it was fitted on, and means and
    spreads within reach of the colour space. Every refusal names the field.

    Raises
    ------
    SegmentError
    """
    name = printable(model_path)
    doc = load_json(model_path, limit=MAX_MODEL_BYTES, what="model file")
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise SegmentError(
            f"{name}: not a segment model file (expected a NAME.model.json "
            "written by 'segment image')."
        )
    try:
        model, options = check_model_document(doc)
    except SegmentError as err:
        raise SegmentError(
            f"{name}: the model file is damaged: {err}; write it again with 'segment image'."
        ) from None
    return model, options, doc


def check_model_document(doc):
    """The mixture and options of a parsed model document; SegmentError naming the field
    that is wrong."""
    opts = doc.get("options")
    if not isinstance(opts, dict):
        raise SegmentError("options is missing or not a JSON object")
    try:
        options = FitOptions(**opts).validate()
    except TypeError as err:  # an unknown or missing option
        raise SegmentError(f"options: {err}") from None
    except SegmentError as err:
        raise SegmentError(f"options: {str(err).rstrip('.')}") from None
    if "gmm" not in doc:
        raise SegmentError("gmm is missing")
    try:
        model = gmm.GaussianMixture.from_dict(doc["gmm"])
    except ValueError as err:
        detail = str(err).removeprefix("malformed model parameters: ")
        raise SegmentError(f"gmm.{detail}" if detail[:1].islower() else f"gmm: {detail}") from None
    _check_features(doc.get("features"), options, model)
    return model, options


#: Means and standard deviations of a mixture of pixels lie within the colour space's range
#: (1 for RGB, 100 for L*a*b*) and the position weight; this many times that is absurd.
FEATURE_REACH = 1000.0


def _check_features(features, options, model):
    D = model.means_.shape[1]
    if not isinstance(features, dict):
        raise SegmentError("features is missing or not a JSON object")
    space, names = features.get("space"), features.get("names")
    if space != options.space:
        raise SegmentError(f"features.space is {space!r} but options.space is {options.space!r}")
    expected = 3 + (2 if options.xy else 0)
    if D != expected or not isinstance(names, list) or len(names) != D:
        raise SegmentError(
            f"gmm.n_features is {D} but the options (space {options.space}, xy "
            f"{options.xy:g}) and features.names make {expected} features"
        )
    reach = FEATURE_REACH * SPACE_RANGE[options.space] * max(1.0, float(options.xy))
    far = float(np.abs(model.means_).max())
    if far > reach:
        raise SegmentError(
            f"gmm.means holds {far:.3g}, far outside the range of {options.space} features "
            f"(|value| <= {reach:g})"
        )
    full = gmm.full_covariances(model.covariance_type, model.covariances_, *model.means_.shape)
    spread = float(np.sqrt(np.diagonal(full, axis1=-2, axis2=-1).max()))
    if spread > reach:
        raise SegmentError(
            f"gmm.covariances holds a standard deviation of {spread:.3g}, far beyond the "
            f"range of {options.space} features (<= {reach:g})"
        )
