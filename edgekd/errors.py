"""One error type for bad user input: the message names the problem and the fix."""


class EdgeKDError(Exception):
    """Raised for input the user can correct; CLIs print it without a traceback (exit 2)."""
