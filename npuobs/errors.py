"""Exception bases shared across packages (kept here so that no import cycle is needed to share them)."""


class StackError(RuntimeError):
    """A stack component failed to start, became unready or answered with an error."""
