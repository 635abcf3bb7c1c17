"""Reading the small files a command is given (model files, reports of earlier runs) when
they may be anything: a FIFO, a device, an endless stream, a broken link, a sparse file of
gigabytes, or JSON built to break a parser (numbers of thousands of digits, nesting deeper
than the recursion limit).

Every path is checked to be a regular file before it is read, opened without blocking (a
FIFO with no writer would block ``open`` forever), and read up to a size limit; whatever is
wrong becomes one :class:`~segment.errors.SegmentError` line naming the file.
"""

import errno
import json
import os
import stat
import sys

from ..errors import SegmentError, printable

#: Largest model file read (a model of 256 full-covariance components is under 1 MiB; the
#: model-selection record adds a few kB per candidate).
MAX_MODEL_BYTES = 64 * 2**20

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def kind_of(mode):
    """What a file of this ``st_mode`` is, in words ("a FIFO (named pipe)", ...)."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def not_a_file_reason(path):
    """Why the directory entry ``path`` is not a file to read, or None when it is a regular
    file (or a link to one)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return "a broken symbolic link (its target does not exist)"
        return "it no longer exists"
    except OSError as err:  # a loop of links, a name too long, no permission on the folder
        return f"it cannot be examined ({err.strerror or err})"
    if stat.S_ISREG(st.st_mode):
        return None
    return f"{kind_of(st.st_mode)}, not a regular file"


def read_bounded(path, *, limit, what):
    """The bytes of the regular file ``path``, of at most ``limit`` bytes.

    Raises
    ------
    SegmentError
        Naming the file: missing, a broken link, a folder, a FIFO or device, too large, or
        unreadable.
    """
    name = printable(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        st = os.stat(path)  # before open: opening some devices has effects
        if not stat.S_ISREG(st.st_mode):
            raise SegmentError(_not_regular(name, st.st_mode, what))
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.islink(path):
            raise SegmentError(f"{name}: a broken symbolic link; pass a {what}.") from None
        raise SegmentError(f"{name}: no such {what}.") from None
    except PermissionError:
        raise SegmentError(f"{name}: permission denied; check the file's permissions.") from None
    except OSError as err:
        raise SegmentError(f"{name}: cannot read it ({err.strerror or err}).") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)  # the file opened, which may not be the one stat() saw
        if not stat.S_ISREG(st.st_mode):
            raise SegmentError(_not_regular(name, st.st_mode, what))
        if st.st_size > limit:
            raise SegmentError(_too_large(name, st.st_size, limit, what))
        try:
            data = f.read(limit + 1)
        except OSError as err:
            if err.errno == errno.EISDIR:
                raise SegmentError(f"{name}: is a folder, not a {what}.") from None
            raise SegmentError(f"{name}: cannot read it ({err.strerror or err}).") from None
    if len(data) > limit:  # it grew while we read
        raise SegmentError(_too_large(name, len(data), limit, what))
    return data


def _not_regular(name, mode, what):
    return f"{name}: {kind_of(mode)}, not a regular file; pass a {what}."


def _too_large(name, size, limit, what):
    return (
        f"{name}: too large for a {what} ({size:,} bytes; the limit is {limit:,}); "
        "check that you passed the right file."
    )


def load_json(path, *, limit=MAX_MODEL_BYTES, what="JSON file"):
    """Strict JSON (no NaN or Infinity) of a bounded regular file.

    Raises
    ------
    SegmentError
        For everything :func:`read_bounded` refuses, and text that is not UTF-8, not JSON,
        nested deeper than Python's recursion limit, or with numbers of over 4300 digits.
    """
    data = read_bounded(path, limit=limit, what=what)
    name = printable(path)
    if not data:
        raise SegmentError(f"{name}: the file is empty (0 bytes); pass a {what}.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SegmentError(
            f"{name}: not a {what}: not UTF-8 text (byte {err.start} is not valid)."
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise SegmentError(
            f"{name}: not a {what}: invalid JSON at line {err.lineno}, column {err.colno} "
            f"({err.msg})."
        ) from None
    except RecursionError:
        raise SegmentError(
            f"{name}: not a {what}: nested deeper than {sys.getrecursionlimit()} levels."
        ) from None
    except ValueError as err:  # an integer of over 4300 digits, NaN, Infinity
        raise SegmentError(f"{name}: not a {what}: {_value_error(err)}.") from None


class _NotJSON(ValueError):
    pass


def _reject_constant(token):
    raise _NotJSON(f"{token} is not a JSON number")


def _value_error(err):
    if isinstance(err, _NotJSON):
        return str(err)
    if "digits" in str(err):
        return "it holds a number of thousands of digits"
    return f"invalid JSON ({err})"
