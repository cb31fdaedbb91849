"""A /dev/log stand-in: ``python -m nfs_exportd_sim.lab.syslogcatch SOCKET OUTFILE`` binds
a unix datagram socket at SOCKET and appends every syslog datagram, as received (RFC
3164: ``<28>Dec  6 05:07:52 rpc.mountd[1586]: refused mount request ...``), one per line,
to OUTFILE.  The lab binds SOCKET's directory over /dev in rpc.mountd's private mount
namespace, so rpc.mountd's syslog() copies land here (this machine has no /dev/log)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys


def main(sock_path: str, out: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    os.chmod(sock_path, 0o666)
    with open(out, "a", buffering=1) as f:
        while True:
            data = s.recv(65536)
            f.write(data.decode("utf-8", "replace").rstrip("\n\0") + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
