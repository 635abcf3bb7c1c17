"""Output file names of an input (NAME.segmented.png, ..., NAME.model.json last), and the
checks before anything is written: never replace an input, never an existing file without
``overwrite``."""

import errno
from pathlib import Path

from ..errors import SegmentError, printable

OUTPUT_KINDS = ("segmented", "quantized", "labels", "loglik", "density", "model")


PLOT_KINDS = ("loglik", "density")


SOFT_KINDS = ("soft", "uncertainty", "outliers", "overlay")


def output_paths(out_dir, stem, *, plots=True, soft=False, masks=0, selection=False, animate=False):
    """Paths of the outputs of one input, keyed by kind; the model file comes last.

    ``masks`` is the number of components whose masks are written (NAME.mask00.png ...);
    ``animate`` adds NAME.em.gif (kind ``em``).
    """
    kinds = [k for k in OUTPUT_KINDS if plots or k not in PLOT_KINDS]
    kinds.remove("model")
    if plots and selection:
        kinds.append("bic")
    if soft:
        kinds += SOFT_KINDS
    kinds += [f"mask{k:02d}" for k in range(masks)]
    if animate:
        kinds.append("em")
    kinds.append("model")
    ext = {"model": "json", "em": "gif"}
    return {k: Path(out_dir) / f"{stem}.{k}.{ext.get(k, 'png')}" for k in kinds}


def check_outputs(paths, inputs, *, overwrite):
    """Refuse outputs that would replace an input, or (without ``overwrite``) any file."""
    resolved_inputs = {Path(p).resolve() for p in inputs}
    for p in paths:
        name = printable(p)
        try:
            if Path(p).resolve() in resolved_inputs:
                raise SegmentError(f"{name} is one of the inputs; choose another output folder.")
            if Path(p).is_dir():
                raise SegmentError(f"cannot write {name}: it is a directory.")
            if Path(p).exists() and not overwrite:
                raise SegmentError(f"{name} already exists; pass --overwrite to replace it.")
        except OSError as err:
            if getattr(err, "errno", None) == errno.ENAMETOOLONG:
                raise SegmentError(
                    f"cannot write {name}: the file name is too long; rename the input or "
                    "choose a shorter output folder."
                ) from None
            raise SegmentError(f"cannot write {name}: {err.strerror or err}.") from None


def make_dir(out_dir):
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SegmentError(
            f"cannot use {out_dir} as output folder: a file has that name."
        ) from None
    except OSError as err:
        raise SegmentError(f"cannot create the output folder {out_dir}: {err.strerror}.") from None
