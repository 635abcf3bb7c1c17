"""Batch processing of a folder (``segment batch``): :mod:`.discover` finds the inputs,
:mod:`.jobs` plans one job per input and does its work (in a worker), :mod:`.engines` runs
jobs (in this process, a process pool, or Dask), :mod:`.shared` fits one model to the pixels
of all images, :mod:`.report` keeps report.csv / report.json, and :mod:`.run` ties them
together in :func:`run_batch`."""

from .discover import find_inputs
from .engines import default_workers
from .jobs import REPORT_FIELDS
from .report import BatchResult
from .run import BatchEvents, BatchInterrupted, run_batch
from .shared import SharedPixels, fit_shared

__all__ = [
    "REPORT_FIELDS",
    "BatchEvents",
    "BatchInterrupted",
    "BatchResult",
    "SharedPixels",
    "default_workers",
    "find_inputs",
    "fit_shared",
    "run_batch",
]
