"""What ``--resume`` may trust: an input is skipped only when its outputs are complete,
unchanged since they were written, and made with the same options.

NAME.model.json, written last, records the options and the size and SHA-256 of every other
output of its image (or frame). Resuming reads it as hostile input (a bounded regular file,
strict JSON, a whole valid model) and compares: any difference (other options, a truncated
or replaced PNG, a garbage or older model file, a FIFO in place of a file) means the input
is done again, replacing its outputs.
"""

from ..errors import SegmentError
from ..imageio.files import MAX_MODEL_BYTES, load_json, not_a_file_reason
from ..outputs.model_file import MODEL_FORMAT, check_model_document, file_digest


def resume_problem(paths, options):
    """Why the outputs ``paths`` of one input cannot be kept, or None when they can.

    Parameters
    ----------
    paths : list of Path
        Every output of the input (all frames), model files included.
    options : FitOptions
        The options of this run.
    """
    models = [p for p in paths if p.name.endswith(".model.json")]
    if not models:
        return "no model file records how the outputs were made"
    recorded = {}
    for path in models:
        try:
            doc = load_json(path, limit=MAX_MODEL_BYTES, what="model file")
            if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
                return f"{path.name} is not a segment model file"
            _, made_with = check_model_document(doc)
        except SegmentError as err:
            return str(err)
        if made_with != options:
            return f"{path.name} was made with other options"
        outputs = doc.get("outputs")
        if not isinstance(outputs, dict):
            return f"{path.name} does not record its outputs (written by an older version)"
        recorded.update({path.parent / name: record for name, record in outputs.items()})
    for path in paths:
        if path in models:
            continue
        reason = not_a_file_reason(path)
        if reason is not None:
            return f"{path.name}: {reason}"
        if path not in recorded:
            return f"{path.name} is not recorded in the model file"
        try:
            if file_digest(path) != recorded[path]:
                return f"{path.name} is not the file that was written (truncated or replaced)"
        except OSError as err:
            return f"{path.name}: {err.strerror or err}"
    return None
