"""Output names of several inputs written to one folder: distinct and predictable.

The rule (README, "Errors"):

1. An input's outputs are named after its stem: ``photo.jpg`` → ``photo.*``.
2. Inputs that share a stem use their whole file name instead: ``a.png`` and ``a.jpg`` →
   ``a.png.*`` and ``a.jpg.*``; so does an input whose stem is a name taken that way
   (``a.png.png`` next to those two → ``a.png.png.*``).
3. A name still shared (the same file name from two folders) is kept by the first input
   in order (command-line order; sorted order in a batch folder); the others get ``~2``,
   ``~3``, ... appended (``a.png~2.*``): the lowest number no other input uses.

An input named like another input's frame (``a.f000.png`` beside ``a.gif``: with
``--all-frames`` frames are named ``STEM.fNNN``) uses its whole name too, whatever the
options. In ``segment batch`` the top output folder holds the shared model's ``shared.*`` outputs:
there ``shared`` counts as taken (``shared.png`` → ``shared.png.*``). The same file given
twice is refused.
"""

import re
from collections import Counter
from pathlib import Path

from ..errors import SegmentError

__all__ = ["stems_for"]

_FRAME = re.compile(r"(.+)\.f\d{3,}")


def stems_for(inputs, reserved=()):
    """Output stem of each input (see the module's rule), in the order given. ``reserved``:
    stems taken by other outputs of the folder (an input with such a stem uses its name).

    Raises
    ------
    SegmentError
        If the same file is given twice.
    """
    inputs = [Path(p) for p in inputs]
    _refuse_repeats(inputs)
    count = Counter(p.stem for p in inputs)
    reserved = set(reserved)
    names = [p.stem if count[p.stem] == 1 and p.stem not in reserved else p.name for p in inputs]
    while True:  # a whole name may equal another input's stem: that one takes its name too
        whole = {n for n, p in zip(names, inputs, strict=True) if n == p.name}
        clash = [
            i
            for i, p in enumerate(inputs)
            if names[i] != p.name and (names[i] in whole or _frame_of(names[i], names, i))
        ]
        if not clash:
            break
        for i in clash:
            names[i] = inputs[i].name
    final = [None] * len(names)
    used = set(reserved)
    for i, n in enumerate(names):
        if n not in used:
            final[i] = n
            used.add(n)
    for i, n in enumerate(names):
        if final[i] is None:
            k = 2
            while f"{n}~{k}" in used:
                k += 1
            final[i] = f"{n}~{k}"
            used.add(final[i])
    return final


def _refuse_repeats(inputs):
    seen = set()
    for p in inputs:
        try:
            key = p.resolve()
        except OSError:
            key = p.absolute()
        if key in seen:
            raise SegmentError(f"{p} is given more than once; give each input once.")
        seen.add(key)


def _frame_of(name, names, i):
    """Whether ``name`` is what another input's frame would be called (``a.f000`` beside
    ``a``: ``--all-frames`` names frames STEM.fNNN)."""
    match = _FRAME.fullmatch(name)
    return bool(match) and any(j != i and n == match[1] for j, n in enumerate(names))
