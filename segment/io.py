"""Reading images and writing outputs safely.

Outputs are written atomically: into a temporary file in the target folder, flushed, then
renamed over the final name, so a reader never sees a half-written file and an interrupted
run leaves no partial output under the final name.
"""

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .errors import SegmentError

#: Prefix of temporary files; a leftover one (process killed) can be recognised and removed.
TEMP_PREFIX = ".segment-tmp-"


def _write_error(path, err):
    if isinstance(err, IsADirectoryError) or (Path(path).is_dir()):
        return SegmentError(f"cannot write {path}: it is a directory; choose a file name.")
    if isinstance(err, PermissionError):
        return SegmentError(
            f"cannot write {path}: permission denied; choose an output folder you can write to."
        )
    if isinstance(err, FileNotFoundError):
        return SegmentError(
            f"cannot write {path}: the folder {Path(path).parent} does not exist; create it first."
        )
    if getattr(err, "errno", None) == errno.ENOSPC:
        return SegmentError(f"cannot write {path}: no space left on the device; free some space.")
    if getattr(err, "errno", None) == errno.EROFS:
        return SegmentError(f"cannot write {path}: the file system is read-only.")
    return SegmentError(f"cannot write {path}: {err.strerror or err}.")


@contextlib.contextmanager
def atomic_write(path, *, overwrite=False):
    """Open a temporary file beside ``path`` for binary writing; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or Path
        Final name of the output.
    overwrite : bool
        Replace an existing ``path``; without it an existing file is an error.

    Raises
    ------
    SegmentError
        If ``path`` exists (and not ``overwrite``), is a directory, or cannot be written
        (permissions, missing folder, full disk). Nothing is left behind in any case.
    """
    path = Path(path)
    if path.is_dir():
        raise SegmentError(f"cannot write {path}: it is a directory; choose a file name.")
    if path.exists() and not overwrite:
        raise SegmentError(f"{path} already exists; pass --overwrite to replace it.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if not overwrite and path.exists():
            raise SegmentError(f"{path} already exists; pass --overwrite to replace it.")
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        raise _write_error(path, err) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink_quietly(p):
    with contextlib.suppress(OSError):
        os.unlink(p)
