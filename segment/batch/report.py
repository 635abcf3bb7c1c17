"""OUT_DIR/report.csv and report.json: one row per input, rewritten atomically as jobs
finish; and the rows of inputs an earlier run finished."""

import contextlib
import csv
import io as _io
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from ..errors import SegmentError
from ..imageio.files import MAX_MODEL_BYTES, load_json
from ..outputs.files import atomic_write, jsonable
from .jobs import REPORT_FIELDS

REPORT_FORMAT = "segment.batch-report/1"


REPORT_NAMES = ("report.csv", "report.json")


#: Seconds between two rewrites of the report while jobs finish.
REPORT_INTERVAL = 1.0


@dataclass
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    rows : list of dict
        One per input, in input order, with the :data:`REPORT_FIELDS` (and ``notes``).
    counts : dict
        Inputs per status: ``ok``, ``failed``, ``skipped``, and ``interrupted`` (inputs not
        done because the run was stopped).
    interrupted_by : int or None
        The signal that stopped the run.
    seconds : float
    report_csv, report_json : Path
    shared_model : Path or None
        OUT_DIR/shared.model.json when a shared model was used.
    """

    rows: list
    counts: dict
    interrupted_by: int | None
    seconds: float
    report_csv: Path
    report_json: Path
    shared_model: Path | None = None

    @property
    def exit_code(self):
        """128 + the signal if interrupted, 1 if any input failed, else 0."""
        if self.interrupted_by is not None:
            return 128 + int(self.interrupted_by)
        return 1 if self.counts.get("failed") else 0


def utc_now():
    return datetime.now(UTC).isoformat(timespec="seconds")


class Report:
    """One row per input, kept in input order, written as CSV and JSON."""

    def __init__(self, out_dir, jobs, meta, not_files=()):
        self.csv_path = out_dir / "report.csv"
        self.json_path = out_dir / "report.json"
        self.meta = meta
        self.rows = [self._blank(job.rel) for job in jobs]
        # Entries of the folder that are not files (FIFOs, devices, broken links): listed
        # after the inputs, skipped, with the reason.
        self.not_files = [
            self._blank(Path(rel).as_posix(), "skipped", f"not read: {reason}")
            for rel, reason in not_files
        ]
        self._written = 0.0

    def all_rows(self):
        return self.rows + self.not_files

    @staticmethod
    def _blank(rel, status="pending", error=""):
        row = dict.fromkeys(REPORT_FIELDS)
        row.update(path=rel, status=status, error=error, notes=[])
        return row

    def set(self, job, result):
        row = self._blank(job.rel)
        row.update({k: v for k, v in result.items() if k in row})
        self.rows[job.index] = row

    def counts(self):
        counts = dict.fromkeys(("ok", "failed", "skipped", "pending", "interrupted"), 0)
        for row in self.all_rows():
            counts[row["status"]] += 1
        return counts

    def discard(self):
        """Remove the report files (best effort): when the final state cannot be written,
        no file may go on saying that the batch is running."""
        for path in (self.json_path, self.csv_path):
            with contextlib.suppress(OSError):
                path.unlink()

    def write(self, state, *, force=True):
        """Rewrite both files (at most once per REPORT_INTERVAL unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._written < REPORT_INTERVAL:
            return
        self._written = now
        doc = {
            "format": REPORT_FORMAT,
            "segment_version": __version__,
            **self.meta,
            "state": state,
            "updated": utc_now(),
            "counts": self.counts(),
            "rows": self.all_rows(),
        }
        text = json.dumps(jsonable(doc), indent=1, allow_nan=False) + "\n"
        with atomic_write(self.json_path, overwrite=True) as f:
            f.write(text.encode("utf-8"))
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, REPORT_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.all_rows())
        with atomic_write(self.csv_path, overwrite=True) as f:
            f.write(buf.getvalue().encode("utf-8"))


def written_since(paths, t):
    """Whether every output exists and the model file(s), written last, are newer than t."""
    try:
        return (
            bool(paths)
            and all(p.stat().st_mtime >= t for p in paths if p.name.endswith(".model.json"))
            and all(p.exists() for p in paths)
        )
    except OSError:
        return False


def finished_row(paths, status="skipped"):
    """A finished input's row, with the figures its NAME.model.json recorded."""
    row = {"status": status, "error": "", "seconds": 0.0 if status == "skipped" else None}
    model_files = [p for p in paths if p.name.endswith(".model.json")]
    row["frames"] = len(model_files)
    with contextlib.suppress(SegmentError, ValueError, TypeError, KeyError, IndexError):
        doc = load_json(model_files[0], limit=MAX_MODEL_BYTES, what="model file")
        summary = doc.get("summary", {})
        row.update(
            k=summary.get("k"),
            iterations=summary.get("iterations", doc["gmm"].get("n_iter")),
            converged=summary.get("converged", doc["gmm"].get("converged")),
            log_likelihood=summary.get("log_likelihood"),
            bic=summary.get("bic"),
            psnr_db=summary.get("psnr_db"),
            notes=summary.get("notes", []),
        )
    return row
