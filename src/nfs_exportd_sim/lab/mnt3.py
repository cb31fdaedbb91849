"""A MOUNT v3 probe: ask a server's mountd for a path, as a client inside a namespace.

Speaks ONC RPC over TCP (MOUNT program 100005, version 3, procedure MNT) with AUTH_UNIX,
from a reserved source port (< 1024) as the kernel client and libnfs do, so exports
with the default ``secure`` option do not refuse it for the port.  The answer is the
mountstat3: 0 (MNT3_OK) for an allowed client, 13 (MNT3ERR_ACCES) for a refused one.

``mnt3_probe(netns, server, path)`` runs this file inside the namespace (``ip netns
exec ... python mnt3.py SERVER PORT PATH...``) and returns a ``MountReply``.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
from dataclasses import asdict, dataclass

MOUNT_PROGRAM = 100005
MNT3_OK = 0
MNT3ERR_ACCES = 13
STATUS_NAMES = {
    0: "MNT3_OK",
    1: "MNT3ERR_PERM",
    2: "MNT3ERR_NOENT",
    5: "MNT3ERR_IO",
    13: "MNT3ERR_ACCES",
    20: "MNT3ERR_NOTDIR",
    22: "MNT3ERR_INVAL",
    63: "MNT3ERR_NAMETOOLONG",
    10004: "MNT3ERR_NOTSUPP",
    10006: "MNT3ERR_SERVERFAULT",
}


@dataclass(frozen=True)
class MountReply:
    """``status`` is the mountstat3, or None when no MOUNT answer came (``error`` says
    why: connection, RPC-level denial, timeout)."""

    status: int | None
    name: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == MNT3_OK

    def __str__(self) -> str:
        return self.name if self.status is not None else f"no answer: {self.error}"


def _xdr_opaque(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4)


def _recv_record(s: socket.socket) -> bytes:
    data = b""
    while True:
        hdr = s.recv(4, socket.MSG_WAITALL)
        if len(hdr) < 4:
            raise ConnectionError("connection closed before the reply")
        (mark,) = struct.unpack(">I", hdr)
        need = mark & 0x7FFFFFFF
        frag = b""
        while len(frag) < need:
            chunk = s.recv(need - len(frag))
            if not chunk:
                raise ConnectionError("short reply")
            frag += chunk
        data += frag
        if mark & 0x80000000:
            return data


def mnt(server: str, path: str, port: int = 20048, timeout: float = 5.0) -> MountReply:
    """One MNT call from the current network namespace."""
    cred = struct.pack(">I", 0) + _xdr_opaque(b"lab-vm") + struct.pack(">III", 0, 0, 0)
    xid = random.getrandbits(32)
    call = struct.pack(">IIIIII", xid, 0, 2, MOUNT_PROGRAM, 3, 1)  # CALL, RPC v2, MNT
    call += struct.pack(">I", 1) + _xdr_opaque(cred) + struct.pack(">II", 0, 0)
    call += _xdr_opaque(path.encode())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            if os.geteuid() == 0:
                for p in random.sample(range(600, 1024), 200):
                    try:
                        s.bind(("", p))
                        break
                    except OSError:
                        continue
            s.connect((server, port))
            s.sendall(struct.pack(">I", 0x80000000 | len(call)) + call)
            data = _recv_record(s)
    except OSError as e:
        return MountReply(None, "", f"{server}:{port}: {e}")
    rxid, mtype, reply_stat = struct.unpack(">III", data[:12])
    if rxid != xid or mtype != 1:
        return MountReply(None, "", "reply to another call")
    if reply_stat != 0:
        return MountReply(None, "", f"RPC MSG_DENIED({reply_stat})")
    (vlen,) = struct.unpack(">I", data[16:20])
    off = 20 + vlen + (-vlen % 4)
    (accept,) = struct.unpack(">I", data[off : off + 4])
    if accept != 0:
        return MountReply(None, "", f"RPC accept_stat={accept}")
    (st,) = struct.unpack(">I", data[off + 4 : off + 8])
    return MountReply(st, STATUS_NAMES.get(st, f"MNT3ERR({st})"))


def mnt3_probes(
    netns: str, server: str, paths: list[str], port: int = 20048, timeout: float = 5.0
) -> list[MountReply]:
    """One MNT per path, in order, from inside network namespace ``netns`` (a VM).  This
    file runs as a plain script there (stdlib only: no package import, ~30 ms)."""
    argv = ["ip", "netns", "exec", netns, sys.executable, "-I", __file__, server, str(port)]
    try:
        res = subprocess.run(
            [*argv, *paths],
            capture_output=True,
            text=True,
            timeout=timeout * len(paths) + 20,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return [MountReply(None, "", f"probe in {netns} did not finish")] * len(paths)
    try:
        rows = [MountReply(**row) for row in json.loads(res.stdout)]
    except (ValueError, TypeError):
        why = f"probe in {netns} failed: {(res.stderr or res.stdout)[-500:]}"
        return [MountReply(None, "", why)] * len(paths)
    if len(rows) != len(paths):
        return [MountReply(None, "", f"probe in {netns}: {len(rows)} answers")] * len(paths)
    return rows


def mnt3_probe(
    netns: str, server: str, path: str, port: int = 20048, timeout: float = 5.0
) -> MountReply:
    """``mnt`` run inside network namespace ``netns`` (a VM)."""
    return mnt3_probes(netns, server, [path], port, timeout)[0]


if __name__ == "__main__":
    srv, mport = sys.argv[1], int(sys.argv[2])
    print(json.dumps([asdict(mnt(srv, p, mport)) for p in sys.argv[3:]]))
