"""One exception root; each subclass says how the process ends (its exit code).

Exit codes are public contract (DESIGN.md): 0 done, 1 error, 2 bad usage or config,
3 something was held.  Inventory problems are not errors at all: they become holds
in the plan (see ``inventory``), because "could not ask" never means "nothing there".
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_HELD = 3


class NfsExportdError(Exception):
    """Root of every error nfs-exportd raises on purpose."""

    exit_code = EXIT_ERROR


class ConfigError(NfsExportdError):
    """The config or the projects file is invalid: nothing is read, decided or changed."""

    exit_code = EXIT_USAGE


class UsageError(NfsExportdError):
    """The command line asks for something that cannot be done (e.g. root without --allow-root)."""

    exit_code = EXIT_USAGE


class StateError(NfsExportdError):
    """Files on disk that we own (managed exports files, state) cannot be read or written."""


class LockHeld(NfsExportdError):
    """Another writing command holds the state lock."""


class PlanMismatch(NfsExportdError):
    """`sync --plan-checksum` was given and the plan computed now differs."""


class ApplyError(NfsExportdError):
    """Applying failed; the files changed in this cycle were restored and re-applied."""


class BackendUnavailable(ApplyError):
    """The backend's command could not run at all (missing, not permitted, timed out)."""
