"""The application's one exception type."""


class SegmentError(Exception):
    """Something the user can fix: the message is one line that says what is wrong and what
    to do. The CLI prints it to stderr and exits with status 1."""
