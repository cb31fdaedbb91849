"""How fast ``diagnose`` reads a big log and names the causes (issue 13: "the answer in
seconds for a log of 1 million lines").

Writes a Ganesha log of N lines covering one day (one line every 86400/N s): EVENT noise
(``svc_vc_wait ... recv errno 104``, what every client disconnect logs) and refusal lines
in all three forms (``:NFS3`` v3 MOUNT, ``:NFS4``, ``:EXPORT`` v3 requests on held mounts)
from the addresses of many projects' instances and from one router address, then times:

* ``read-all``: the whole file as the window (every line looked at, every refusal parsed);
* ``read-15m``: the last 15 minutes (the binary search skips the rest of the file);
* ``decide``: grouping every refusal of ``read-all`` against an inventory of
  ``--projects`` projects with 10 instances each (the pure ``decide.diagnose``);
* ``rpc.mountd``: the same lines count as a syslog file of rpc.mountd refusals (RFC 3339).

    .venv/bin/python bench/diagnose.py                  # 1,000,000 lines
    .venv/bin/python bench/diagnose.py --lines 20000    # quick (tests/test_diagnose.py)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nfs_exportd.decide import Plan
from nfs_exportd.decide.diagnose import Inputs, diagnose
from nfs_exportd.model import InstanceRecord, InventorySnapshot, ProjectRecord, ServedExport
from nfs_exportd.read.refusals import read_file

DAY = 86400.0
ROUTER = "198.51.100.129"


def world(projects: int) -> tuple[InventorySnapshot, dict[str, tuple[ServedExport, ...]]]:
    base = int(ipaddress.ip_address("10.0.0.0"))
    recs, insts, served = {}, {}, {}
    for p in range(projects):
        name = f"p{p:04d}"
        recs[name] = ProjectRecord(f"id-{name}", name, True)
        insts[name] = tuple(
            InstanceRecord(
                f"i-{p}-{i}", f"{name}-{i}", name, "ACTIVE",
                (ipaddress.ip_address(base + p * 16 + i + 1),),
            )
            for i in range(10)
        )  # fmt: skip
        served[name] = (ServedExport(name, "home", f"/srv/{name}/home", "rw"),)
    return InventorySnapshot("bench", recs, insts), served


def write_log(path: Path, lines: int, projects: int, start: float, refusal_share: float) -> int:
    """N lines over one day from ``start``; returns the refusal lines written."""
    base = int(ipaddress.ip_address("10.0.0.0"))
    step = DAY / lines
    every = max(1, round(1 / refusal_share)) if refusal_share > 0 else 0
    refusals = 0
    with path.open("w") as f:
        for n in range(lines):
            t = time.localtime(start + n * step)
            stamp = time.strftime("%d/%m/%Y %H:%M:%S", t)
            head = f"{stamp} : epoch 6b14ee4b : nfs-1 : nfs-ganesha-1438[svc_{n % 16}]"
            if every and n % every == 0:
                refusals += 1
                p = (n // every) % projects
                # the router (source NAT), or an instance of the next project (other-project)
                other = base + ((p + 1) % projects) * 16 + 1
                addr = ROUTER if (n // every) % 2 == 0 else str(ipaddress.ip_address(other))
                vol = f"/srv/p{p:04d}/home"
                kind = n % 3
                if kind == 0:
                    msg = (
                        f"mnt_Mnt :NFS3 :INFO :MOUNT: Export entry {vol} does not allow "
                        f"access for client ::ffff:{addr}"
                    )
                elif kind == 1:
                    msg = (
                        f"nfs4_export_check_access :NFS4 :INFO :Access not allowed on "
                        f"Export_Id {1000 + p} {vol} for client ::ffff:{addr}"
                    )
                else:
                    msg = (
                        f"nfs_rpc_process_request :EXPORT :INFO :Client ::ffff:{addr} is "
                        f"not allowed to access Export_Id {1000 + p} {vol}, vers=3, proc=1"
                    )
            else:
                msg = f"rpc :TIRPC :EVENT :svc_vc_wait: 0x7f3c{n:08x} fd {n % 900} recv errno 104 (will set dead)"  # noqa: E501
            f.write(f"{head} {msg}\n")
    return refusals


def write_syslog(path: Path, lines: int, start: float) -> None:
    step = DAY / lines
    with path.open("w") as f:
        for n in range(lines):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start + n * step))
            f.write(
                f"{stamp} nfs-1 rpc.mountd[1586]: refused mount request from {ROUTER} for "
                f"/srv/p{n % 50:04d}/home (/srv/p{n % 50:04d}/home): unmatched host\n"
            )


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(lines: int, projects: int, refusal_share: float, workdir: Path) -> dict[str, Any]:
    now = time.time()
    start = now - DAY
    log = workdir / "ganesha.log"
    written = write_log(log, lines, projects, start, refusal_share)
    snap, served = world(projects)
    plan = Plan((), (), {}, {}, False, 0)
    t_all, all_read = timed(lambda: read_file(log, start - 1, now))
    t_15, last = timed(lambda: read_file(log, now - 900, now))

    def decide() -> dict[str, Any]:
        return diagnose(Inputs(all_read.refusals, snap, {}, served, (), plan, start, now))

    t_dec, rep = timed(decide)
    syslog = workdir / "syslog"
    write_syslog(syslog, lines, start)
    t_sys, sys_read = timed(lambda: read_file(syslog, start - 1, now))
    assert len(all_read.refusals) == written, (len(all_read.refusals), written)
    assert len(sys_read.refusals) == lines
    return {
        "lines": lines,
        "bytes": log.stat().st_size,
        "refusal_lines": written,
        "projects": projects,
        "read_all_seconds": round(t_all, 3),
        "read_15m_seconds": round(t_15, 4),
        "read_15m_lines": last.report.lines,
        "read_15m_refusals": len(last.refusals),
        "decide_seconds": round(t_dec, 3),
        "causes": {c["cause"]: c["refusals"] for c in rep["causes"]},
        "mountd_syslog_all_refusals_seconds": round(t_sys, 3),
        "mountd_syslog_bytes": syslog.stat().st_size,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--projects", type=int, default=1000)
    ap.add_argument("--refusal-share", type=float, default=0.1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nfs-exportd-bench-") as d:
        out = run(args.lines, args.projects, args.refusal_share, Path(d))
    out["machine"] = f"{os.cpu_count()} cpus, Python {sys.version.split()[0]}"
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
