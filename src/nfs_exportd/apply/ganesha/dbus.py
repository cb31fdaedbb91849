"""NFS-Ganesha's ExportMgr over DBus (jeepney, blocking, one connection reused).

Ganesha 4.3 (``org.ganesha.nfsd.exportmgr`` at ``/org/ganesha/nfsd/ExportMgr``):
``AddExport(s conf, s "EXPORT(Export_Id=N)") -> s``, ``UpdateExport(s, s) -> s``,
``RemoveExport(q)``, ``DisplayExport(q) -> (q id, s path, s pseudo, s tag,
a(siyyiuuuuu) clients)``, ``ShowExports() -> ((tt), a(qs...))``.  A change is in force
before its reply arrives.  jeepney's blocking connection is not thread-safe: one per
apply, used by one thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jeepney import DBusAddress, DBusErrorResponse, new_method_call
from jeepney.bus import get_bus
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, DBusConnectionBase, Proxy, prep_socket
from jeepney.io.common import MessageFilters
from jeepney.wrappers import unwrap_msg

BUS_NAME = "org.ganesha.nfsd"
EXPORTMGR = DBusAddress(
    "/org/ganesha/nfsd/ExportMgr", bus_name=BUS_NAME, interface="org.ganesha.nfsd.exportmgr"
)


class GaneshaUnreachable(Exception):
    """No bus, or nobody owns org.ganesha.nfsd on it (Ganesha not running), or no reply."""


class GaneshaCallError(Exception):
    """Ganesha answered a method with a DBus error (e.g. a block it refuses)."""

    def __init__(self, method: str, name: str, message: str) -> None:
        super().__init__(f"{method}: {name}: {message}")
        self.method, self.name, self.message = method, name, message


@dataclass(frozen=True)
class Displayed:
    """DisplayExport's answer: the live Path and clients.  Its "pseudopath" field returns
    the Path in Ganesha 4.3, not the Pseudo, so Pseudo cannot be verified over DBus."""

    export_id: int
    path: str
    clients: tuple[str, ...]  # as Ganesha prints them: "198.51.100.11/32", "10.0.0.0/21"
    raw_clients: tuple[tuple[Any, ...], ...]


class _BoundedConnection(DBusConnection):  # type: ignore[misc]
    """jeepney's DBusConnection says Hello to the bus with no timeout: a bus that
    authenticates but never answers would hang the cycle (and hold the state lock) for
    ever.  The same connection, with Hello bounded by ``timeout`` (TimeoutError)."""

    def __init__(self, sock: Any, timeout: float) -> None:
        DBusConnectionBase.__init__(self, sock, False)
        self._filters = MessageFilters()
        self.bus_proxy = Proxy(message_bus, self, timeout=timeout)
        try:
            self.unique_name = self.bus_proxy.Hello()[0]
        except BaseException:
            self.close()
            raise


def _not_found(exc: GaneshaCallError) -> bool:
    return exc.name.endswith("InvalidArgs") and "not found" in exc.message


class GaneshaBus:
    """One connection to the bus Ganesha is on; ``address`` is "system" or a D-Bus address."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._conn: DBusConnection | None = None

    def where(self) -> str:
        return "the system bus" if self.address == "system" else self.address

    def connect(self) -> DBusConnection:
        if self._conn is None:
            bus = "SYSTEM" if self.address == "system" else self.address
            try:
                sock = prep_socket(get_bus(bus), timeout=self.timeout)
                self._conn = _BoundedConnection(sock, self.timeout)
            except TimeoutError:
                raise GaneshaUnreachable(
                    f"{self.where()} did not answer within {self.timeout:g} s "
                    "(ganesha.timeout_seconds)"
                ) from None
            except (OSError, ValueError, EOFError, DBusErrorResponse) as exc:
                raise GaneshaUnreachable(f"cannot connect to {self.where()}: {exc}") from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def __enter__(self) -> GaneshaBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, msg: Any) -> tuple[Any, ...]:
        conn = self.connect()
        try:
            reply = conn.send_and_get_reply(msg, timeout=self.timeout)
        except TimeoutError:
            self.close()  # a late reply must not be taken for the next call's
            raise GaneshaUnreachable(
                f"{method}: no reply within {self.timeout:g} s (ganesha.timeout_seconds)"
            ) from None
        except (OSError, ConnectionError, EOFError) as exc:
            self.close()
            raise GaneshaUnreachable(
                f"{method}: the connection to {self.where()} broke: {exc}"
            ) from None
        try:
            return tuple(unwrap_msg(reply))
        except DBusErrorResponse as exc:
            name = exc.name or "error"
            text = str(exc.data[0]) if exc.data else ""
            if name.endswith(("ServiceUnknown", "NameHasNoOwner", "NoReply")):
                raise GaneshaUnreachable(f"{method}: {name}: {text}") from None
            raise GaneshaCallError(method, name, text) from None

    def _call(self, method: str, signature: str | None = None, *args: Any) -> tuple[Any, ...]:
        return self._send(method, new_method_call(EXPORTMGR, method, signature, args))

    # ---------------------------------------------------------------- the bus itself
    def owner(self) -> str:
        """The unique name owning org.ganesha.nfsd: it changes when Ganesha restarts."""
        try:
            (name,) = self._send("GetNameOwner", message_bus.GetNameOwner(BUS_NAME))
        except GaneshaCallError as exc:
            raise GaneshaUnreachable(f"nobody owns {BUS_NAME} on {self.where()}: {exc}") from None
        return str(name)

    # ---------------------------------------------------------------- ExportMgr
    def add(self, conf: str, export_id: int) -> str:
        return str(self._call("AddExport", "ss", conf, f"EXPORT(Export_Id={export_id})")[0])

    def update(self, conf: str, export_id: int) -> str:
        return str(self._call("UpdateExport", "ss", conf, f"EXPORT(Export_Id={export_id})")[0])

    def remove(self, export_id: int) -> None:
        self._call("RemoveExport", "q", export_id)

    def display(self, export_id: int) -> Displayed | None:
        """The export as Ganesha serves it, or None when it has no export of that id."""
        try:
            eid, path, _pseudo, _tag, clients = self._call("DisplayExport", "q", export_id)
        except GaneshaCallError as exc:
            if _not_found(exc):
                return None
            raise
        raw = tuple(tuple(c) for c in clients)
        return Displayed(int(eid), str(path), tuple(str(c[0]) for c in raw), raw)

    def show(self) -> dict[int, str]:
        """Every export in force: {Export_Id: Path} (O(n): ~0.3 s at 5,000 exports)."""
        _ts, exports = self._call("ShowExports")
        return {int(e[0]): str(e[1]) for e in exports}
