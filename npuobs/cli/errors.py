"""The one exception type a CLI handler raises for bad input (shown as one line, exit 2)."""

from npuobs.errors import UsageError


class CliError(UsageError):
    """Bad arguments, an unreadable file, an unknown device: said in one line, no traceback."""
