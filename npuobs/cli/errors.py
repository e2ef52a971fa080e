"""The one exception type a CLI handler raises for bad input (shown as one line, exit 2)."""


class CliError(Exception):
    """Bad arguments, an unreadable file, an unknown device: said in one line, no traceback."""
