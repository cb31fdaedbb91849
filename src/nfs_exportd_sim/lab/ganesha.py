"""NFS-Ganesha for the tests: a private system-like DBus and ``ganesha.nfsd -F`` in a
given network namespace, with every path of its own under one work directory.

Layout of ``workdir``::

    dbus/system.conf  dbus/system_bus_socket   the private bus (DBUS_SYSTEM_BUS_ADDRESS)
    ganesha.conf                               main config; ``%dir``-includes conf_dir
    exports.d/                                 conf_dir: one file per managed export
    run/                                       bound over /run for ganesha and rpcbind
    recov/                                     NFSv4 recovery (RecoveryRoot)
    ganesha.log  ganesha.out  dbus.log  rpcbind.log

Ganesha and rpcbind run through ``ip netns exec``, which gives each a private mount
namespace: the bind of ``run/`` over ``/run`` (rpcbind's socket and lock, Ganesha's pid
file) never reaches the host.  rpcbind is needed: Ganesha exits when it cannot register
its programs, and NFSv3 clients ask port 111 for the MOUNT port.  The bus is a unix socket
file, so the daemon under test reaches it from the root namespace.

``LOG { COMPONENTS { EXPORT = INFO } }`` makes Ganesha log its refusals (they are INFO,
invisible at the default EVENT level), tagged ``:EXPORT``.
"""

from __future__ import annotations

import glob
import ipaddress
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from nfs_exportd_sim.lab.proc import (
    Daemon,
    LabError,
    listening,
    start_rpcbind,
    tail,
    wait_until,
)

GANESHA_BIN = "/usr/bin/ganesha.nfsd"
NFS_PORT = 2049
MNT_PORT = 20048
BUS_NAME = "org.ganesha.nfsd"
EXPORTMGR = DBusAddress(
    "/org/ganesha/nfsd/ExportMgr", bus_name=BUS_NAME, interface="org.ganesha.nfsd.exportmgr"
)

# A system-bus-like policy: nobody owns names or calls methods, except root, which may
# own Ganesha's name and call it (and the bus itself, for Hello and name queries).
DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root">
    <allow own="{bus_name}"/>
    <allow send_destination="{bus_name}"/>
  </policy>
</busconfig>
"""


def plugins_dir() -> str:
    """Where Ganesha's FSAL plugins are (the VFS one must be there)."""
    found = sorted(glob.glob("/usr/lib/*/ganesha/libfsalvfs.so")) + sorted(
        glob.glob("/usr/lib*/ganesha/libfsalvfs.so")
    )
    if not found:
        raise LabError(
            "Ganesha's VFS backend (libfsalvfs.so) is missing: run 'make system-deps' as root "
            "(installs nfs-ganesha-vfs)"
        )
    return str(Path(found[0]).parent)


def require(*programs: str) -> None:
    """Fail (LabError naming them) when programs the lab needs are not installed."""
    missing = [p for p in programs if shutil.which(p) is None and not Path(p).exists()]
    if missing:
        raise LabError(
            f"{', '.join(missing)} not installed: run 'make system-deps' as root "
            "(nfs-ganesha, nfs-ganesha-vfs, libnfs-utils, dbus, rpcbind, iproute2, iptables)"
        )


class PrivateBus:
    """A dbus-daemon of our own with a system-bus-like config, on ``dir/system_bus_socket``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.socket = directory / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.config = directory / "system.conf"
        self.daemon = Daemon(
            "dbus-daemon",
            ["dbus-daemon", f"--config-file={self.config}", "--nofork", "--nopidfile"],
            directory.parent / "dbus.log",
        )

    def start(self) -> None:
        require("dbus-daemon")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.config.write_text(DBUS_CONFIG.format(address=self.address, bus_name=BUS_NAME))
        self.daemon.start()
        wait_until(lambda: self.socket.exists() or not self.daemon.alive(), 10)
        if not self.socket.exists():
            self.daemon.stop()
            raise LabError(f"private dbus-daemon did not come up: {self.daemon.describe()}")

    def stop(self) -> None:
        self.daemon.stop()
        self.socket.unlink(missing_ok=True)


class GaneshaServer:
    """NFS-Ganesha (FSAL VFS, NFSv3+v4) on ``address`` inside network namespace ``netns``.

    ``start()`` returns once Ganesha answers ShowExports over DBus and listens on 2049
    and 20048; otherwise it stops what it started and raises LabError with Ganesha's
    log tail.  ``restart()`` keeps the bus and rpcbind and starts a new Ganesha process
    (which reads the main config and every file in ``conf_dir`` again).
    """

    def __init__(
        self,
        workdir: Path,
        netns: str,
        address: str = "127.0.0.1",
        *,
        conf_dir: Path | None = None,
        extra_config: str = "",
        start_timeout: float = 30.0,
    ) -> None:
        self.workdir = workdir.resolve()
        self.netns = netns
        self.address = address
        self.conf_dir = (conf_dir or self.workdir / "exports.d").resolve()
        self.config_path = self.workdir / "ganesha.conf"
        self.log_path = self.workdir / "ganesha.log"
        self.run_dir = self.workdir / "run"
        self.recov_dir = self.workdir / "recov"
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.bus = PrivateBus(self.workdir / "dbus")
        self.dbus_address = self.bus.address
        self.rpcbind = Daemon(
            "rpcbind",
            self._in_ns("rpcbind", "-f"),
            self.workdir / "rpcbind.log",
        )
        self.ganesha = self._ganesha_daemon()

    # -- layout -------------------------------------------------------------------------

    def _in_ns(self, *cmd: str) -> list[str]:
        """``cmd`` in the namespace, with our run/ bound over /run (private mounts)."""
        return [
            "ip",
            "netns",
            "exec",
            self.netns,
            "sh",
            "-c",
            'mount --bind "$0" /run && exec "$@"',
            str(self.run_dir),
            *cmd,
        ]

    def _ganesha_daemon(self) -> Daemon:
        return Daemon(
            "ganesha.nfsd",
            self._in_ns(
                GANESHA_BIN,
                "-F",
                "-f",
                str(self.config_path),
                "-L",
                str(self.log_path),
                "-p",
                "/run/ganesha.pid",
                "-N",
                "NIV_EVENT",
            ),
            self.workdir / "ganesha.out",
            env={"DBUS_SYSTEM_BUS_ADDRESS": self.dbus_address},
        )

    def render_config(self) -> str:
        """The main config: one server on ``address``, exports only from ``conf_dir``."""
        return f"""# written by nfs_exportd_sim.lab.ganesha (test lab)
NFS_CORE_PARAM {{
{self._bind_line()}
  NFS_Port = {NFS_PORT};
  MNT_Port = {MNT_PORT};
  NLM_Port = 18100;
  Rquota_Port = 18101;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Protocols = 3, 4;
  Plugins_Dir = "{plugins_dir()}";
}}
NFSv4 {{
  Graceless = true;  # else NFSv4 OPEN is refused for the 90 s grace period after a start
  RecoveryBackend = fs;
  RecoveryRoot = "{self.recov_dir}";
}}
NFS_KRB5 {{ Active_krb5 = false; }}
LOG {{
  Default_Log_Level = EVENT;
  COMPONENTS {{ EXPORT = INFO; }}  # refusals are INFO, tagged :EXPORT
}}
{self.extra_config}
%dir "{self.conf_dir}"
"""

    def _bind_line(self) -> str:
        # Ganesha resolves Bind_Addr with AI_ADDRCONFIG, which fails in a namespace that
        # has only loopback addresses ("No IP address found for 127.0.0.1"); there,
        # listening on every address is the same as listening on lo.
        if ipaddress.ip_address(self.address).is_loopback:
            return "  # Bind_Addr omitted: a loopback-only namespace has no other address"
        return f"  Bind_Addr = {self.address};"

    @property
    def pid(self) -> int:
        return self.ganesha.pid

    def env(self) -> dict[str, str]:
        """Environment for a client of this Ganesha's bus (the daemon under test)."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.dbus_address}

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        require(GANESHA_BIN, "ip", "dbus-daemon", "rpcbind")
        for d in (self.workdir, self.conf_dir, self.run_dir, self.recov_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        try:
            self.bus.start()
            start_rpcbind(self.rpcbind, self.run_dir, self.netns)
            self._start_ganesha()
        except BaseException:
            self.stop()
            raise

    def _start_ganesha(self) -> None:
        self.ganesha = self._ganesha_daemon()
        self.ganesha.start()

        def ready() -> bool:
            if not self.ganesha.alive():
                return True
            if not (listening(self.pid, NFS_PORT) and listening(self.pid, MNT_PORT)):
                return False
            try:
                self.call("ShowExports", timeout=2)
            except (OSError, DBusErrorResponse, TimeoutError):
                return False
            return True

        ok = wait_until(ready, self.start_timeout, 0.1)
        if not ok or not self.ganesha.alive():
            why = "exited" if not self.ganesha.alive() else f"not ready in {self.start_timeout:g} s"
            out = self.ganesha.describe(15)
            self.ganesha.stop(5)
            raise LabError(
                f"ganesha.nfsd in namespace {self.netns} {why} (no DBus answer or not listening "
                f"on {self.address}:{NFS_PORT}/{MNT_PORT}); {out}\n"
                f"last lines of {self.log_path}:\n{tail(self.log_path, 25)}"
            )

    def stop(self) -> None:
        """Stop Ganesha, rpcbind and the bus (each by its own pid); safe to call twice."""
        self.ganesha.stop(20)
        self.rpcbind.stop()
        self.bus.stop()

    def restart(self) -> None:
        """A new Ganesha process on the same bus (exports come back from the files)."""
        self.ganesha.stop(20)
        self._start_ganesha()

    def alive(self) -> bool:
        return self.ganesha.alive()

    def __enter__(self) -> GaneshaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- DBus ---------------------------------------------------------------------------

    def call(
        self, method: str, signature: str | None = None, *args: Any, timeout: float = 30
    ) -> Any:
        """One ExportMgr method call on a fresh connection; returns the unwrapped reply
        tuple, raises jeepney's DBusErrorResponse on a DBus error.  For the lab's own
        checks and for tests, not for the backend under test (it has its own client)."""
        with open_dbus_connection(self.dbus_address) as conn:
            msg = new_method_call(EXPORTMGR, method, signature, args)
            return unwrap_msg(conn.send_and_get_reply(msg, timeout=timeout))

    def exports(self) -> dict[int, str]:
        """``{Export_Id: Path}`` of every export in force (ShowExports)."""
        _ts, rows = self.call("ShowExports")
        return {int(r[0]): str(r[1]) for r in rows}

    def clients(self, export_id: int) -> list[str]:
        """The live client list of one export (DisplayExport), e.g. ['198.51.100.11/32']."""
        reply = self.call("DisplayExport", "q", export_id)
        return [str(c[0]) for c in reply[4]]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
