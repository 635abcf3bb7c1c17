"""The application's one exception type."""


class SegmentError(Exception):
    """Something the user can fix: the message is one line that says what is wrong and what
    to do. The CLI prints it to stderr and exits with status 1."""


def printable(path):
    """A path (or any text) as one printable line: messages are one line, whatever a file
    name holds."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(path)) or "''"
