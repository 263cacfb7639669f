"""The one exception users see: a one-line message naming the file, key or value at fault."""


class VaekitError(Exception):
    """Bad input or state that a user can fix; the CLI prints it as one line and exits non-zero."""
