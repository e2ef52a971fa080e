"""Exception bases shared across packages (kept here so that no import cycle is needed to share them)."""


class StackError(RuntimeError):
    """A stack component failed to start, became unready or answered with an error."""


class UsageError(Exception):
    """Bad input (an argument, a file, a directory) that the user must fix, named in one line.

    The project's input error types (``CliError``, exporter ``ConfigError``, SLO ``SpecError``,
    simulator ``StateError``/``FaultError``, ``DocumentError``) derive from it, so ``npuobs``'s
    entry point turns any of them into one ``npuobs: error: ...`` line and exit status 2 without
    each command catching each type.
    """
