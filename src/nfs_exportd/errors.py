"""One exception root; each subclass says how the process ends (its exit code).

Exit codes are public contract (scripts and systemd act on them): 0 done, 1 error,
2 bad usage or config, 3 something was held.  Inventory problems are not errors at
all: they become holds in the plan (see ``read.inventory``), because "could not ask"
never means "nothing there".
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


class NotRecorded(StateError):
    """The cycle applied (or verified) the exports in force, but state_dir could not
    record it (journal, counters, last verified files, status): exit 1, never silent."""


class LockHeld(NfsExportdError):
    """Another writing command holds the state lock."""


class PlanMismatch(NfsExportdError):
    """`sync --plan-checksum` was given and the plan computed now differs."""


class ApplyError(NfsExportdError):
    """Applying failed; the files changed in this cycle were restored and re-applied."""


class BackendUnavailable(ApplyError):
    """The backend's command could not run at all (missing, not permitted, timed out)."""


class InventoryError(NfsExportdError):
    """The cloud could not be read completely.  Never an exit by itself: the read layer
    turns it into unknown data (the whole snapshot, or one project) and the cycle holds.

    ``request`` names the request that failed (``GET https://.../servers/detail``).
    """

    exit_code = EXIT_HELD

    def __init__(self, message: str, request: str = "") -> None:
        super().__init__(f"{message} ({request})" if request else message)
        self.request = request


class InventoryAuthError(InventoryError):
    """401/403, or no token could be obtained: credentials, roles or scope are wrong."""


class InventoryUnavailable(InventoryError):
    """Timeout, connection refused, DNS or TLS failure, 5xx: the service could not answer."""


class InventoryBadData(InventoryError):
    """An answer that is not what the API promises: malformed JSON, a missing field."""


class InventoryIncomplete(InventoryError):
    """An answer that is well-formed but not whole: truncated listing, broken pagination,
    a down Nova cell, a server that should have addresses and has none."""
