"""Finding the image files of a folder (optionally recursive, filtered by a glob)."""

import fnmatch
import os
import re
from pathlib import Path

from ..imageio.files import not_a_file_reason
from ..imageio.read import READABLE_EXTENSIONS


def find_inputs(in_dir, *, recursive=False, pattern=None, exclude=(), skipped=None):
    """Image files of a folder, as paths relative to it, sorted.

    Parameters
    ----------
    in_dir : Path
    recursive : bool
        Descend into subfolders.
    pattern : str, optional
        Shell pattern matched, ignoring case, against the file name; or, when it contains a
        "/", against the path below ``in_dir`` (there "*" stays within a folder and "**/"
        spans any number of folders). Default: every extension Pillow can decode.
    exclude : iterable of Path
        Folders not to enter (the output tree when it lies inside the input tree).
    skipped : list, optional
        Receives ``(relative path, reason)`` of the entries that match but are not regular
        files (FIFOs, devices, sockets, broken links): they are not inputs, and a batch
        reports them as skipped with the reason.

    Notes
    -----
    Hidden files and folders (names starting with ".") are ignored, which also leaves out
    temporary files of interrupted runs.
    """
    in_dir = Path(in_dir)
    excluded = {Path(p).resolve() for p in exclude}
    matches = _matcher(pattern)
    found = []
    for dirpath, dirnames, filenames in os.walk(in_dir):
        base = Path(dirpath)
        dirnames[:] = (
            sorted(
                d
                for d in dirnames
                if not d.startswith(".") and (base / d).resolve() not in excluded
            )
            if recursive
            else []
        )
        for name in filenames:
            rel = (base / name).relative_to(in_dir)
            if name.startswith(".") or not matches(rel):
                continue
            reason = not_a_file_reason(base / name)
            if reason is None:
                found.append(rel)
            elif skipped is not None:
                skipped.append((rel, reason))
    if skipped is not None:
        skipped.sort(key=lambda entry: entry[0].as_posix())
    return sorted(found, key=lambda p: p.as_posix())


def _matcher(pattern):
    if pattern is None:
        return lambda rel: rel.suffix.lower() in READABLE_EXTENSIONS
    if "/" not in pattern:
        return lambda rel: fnmatch.fnmatchcase(rel.name.lower(), pattern.lower())
    regex = _path_regex(pattern)
    return lambda rel: regex.match(rel.as_posix()) is not None


def _path_regex(pattern):
    """A glob over "/"-separated paths as a regular expression (fnmatch's "*" would match
    across folders)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        c = pattern[i]
        end = pattern.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif end != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE)
