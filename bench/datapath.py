"""The data path, measured (issue 12, section 5): what an apply costs per backend against
the floor it cannot avoid, and how long a cloud change takes to reach a VM.  Needs root
(network and mount namespaces, NFS-Ganesha, rpc.mountd).

    .venv/bin/python bench/datapath.py [--quick] [--out FILE] [--part apply|latency|all]

1. **Apply cost**, same data, same run: N exports (one project each, one volume) x C
   clients (203.0.113.0/24 and 198.51.100.0/24; no traffic), (a) the initial apply and (b)
   one changed client in one export.  ``ExportfsBackend.apply`` (files, ``exportfs -ra`` in
   the sandbox, etab read back) and ``GaneshaBackend.apply`` (conf files, per export
   AddExport/UpdateExport over DBus, DisplayExport read back) against two floors: a bare
   ``exportfs -ra`` on the same files in the same sandbox (from an empty etab for (a), after
   writing the one changed file for (b)), and the bare DBus calls alone (AddExport of the
   same conf files already written, UpdateExport of the one changed) on one connection.
   Medians of ``--runs`` runs, ratios of the medians.  ``GaneshaBackend.apply``'s time is
   also split into its DBus calls (all of them, read-backs too), its conf-file writes and
   the rest, its own work.
2. **Cloud change -> VM**, per backend, over ``--changes`` changes each: a new instance of
   project A gets a VM's address (-> that VM reads A's volume), then that instance is
   deleted and the address given to an instance of project B (-> the VM is refused A's
   volume).  After each change in the simulated cloud one ``nfs-exportd sync`` runs, as the
   daemon's next cycle would.  Reported apart: the sync from its start to its return (of
   which the process start with imports, the inventory read, the apply), and from its
   return to the first probe that saw the new answer: Ganesha, ``nfs-cat`` from the VM
   (NFSv4, new mount and read each time); exportfs, the MOUNT answer of rpc.mountd (the
   kernel server's user-space decision, from the etab exportfs wrote).  The wait for the
   daemon's next cycle (up to ``interval_seconds``) comes on top and is not measured.

The sync runs as this file's ``_sync`` subcommand: ``nfs_exportd.cli.main`` in a process
of its own, with the inventory read and the backend's ``apply`` wrapped by a timer that
records CLOCK_MONOTONIC (one clock for every process of the machine).

Results: a table on stdout and JSON in ``bench/results/datapath-<date>.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is sys.path[0], and bench/requests.py would
# shadow the HTTP library keystoneauth imports: drop that entry first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]

SCHEMA = 1
FULL = {"exports": 1000, "clients": 10, "runs": 5, "changes": 20}
QUICK = {"exports": 100, "clients": 10, "runs": 2, "changes": 5}
OPTS = "rw,sync,no_subtree_check,root_squash"
HOST = "nfs-1.svc.example"
REGION = "RegionOne"
ADMIN_PW, OBSERVER_PW = "bench-admin-pw", "bench-observer-pw"
BASE_A, BASE_B = "203.0.113.10", "203.0.113.20"  # an instance each, so no project is empty
OBSERVE_TIMEOUT = 20.0  # seconds after a sync for the VM to see the change
NFS_VERSION = 4
KINDS = ("new-instance", "address-reused")
BACKENDS = ("exportfs", "ganesha")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- statistics


def p95(values: list[float]) -> float:
    """Nearest rank: the smallest value with at least 95 % of the values at or below it."""
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p95": p95(values),
        "min": min(values),
        "max": max(values),
    }


# --------------------------------------------------------------------------- 1. apply cost


def client_pool() -> list[str]:
    """Every host address of 203.0.113.0/24 and 198.51.100.0/24 (508)."""
    return [
        str(a)
        for net in ("203.0.113.0/24", "198.51.100.0/24")
        for a in ipaddress.ip_network(net).hosts()
    ]


def export_clients(i: int, clients: int, pool: list[str]) -> list[str]:
    return [pool[(i * clients + j) % len(pool)] for j in range(clients)]


def _sorted(addrs: list[str]) -> tuple[str, ...]:
    return tuple(sorted(addrs, key=ipaddress.ip_address))


def make_targets(srv: Path, exports: int, clients: int, change: bool) -> dict[str, Any]:
    """{file name: ExportsFile}: one project per export, one volume each; with ``change``
    the middle export's first client is replaced by another address."""
    from nfs_exportd.model import ExportLine, ExportsFile, FileKind

    pool = client_pool()
    out: dict[str, Any] = {}
    for i in range(exports):
        owner = f"p{i:05d}"
        cs = export_clients(i, clients, pool)
        if change and i == exports // 2:
            cs[0] = next(a for a in reversed(pool) if a not in cs)
        line = ExportLine(str(srv / owner / "home"), OPTS, _sorted(cs))
        out[f"{owner}.exports"] = ExportsFile(f"{owner}.exports", FileKind.PROJECT, owner, (line,))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _files_on_disk(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.glob("*.exports"))}


def _set_files(d: Path, texts: dict[str, str]) -> None:
    for p in d.iterdir():
        p.unlink()
    for name, text in texts.items():
        (d / name).write_text(text)


def apply_cost(
    work: Path, exports: int, clients: int, runs: int, progress: Callable[[str], None] = log
) -> dict[str, Any]:
    """Each backend and each floor, ``runs`` times, on the same files."""
    from nfs_exportd.apply.exportfs import ExportfsBackend
    from nfs_exportd.apply.ganesha.backend import GaneshaBackend
    from nfs_exportd.apply.ganesha.dbus import GaneshaBus
    from nfs_exportd.apply.ganesha.render import (
        ClientBlock,
        ExportSpec,
        blocks_of,
        render_conf,
        specs_of,
    )
    from nfs_exportd.config import GaneshaConfig
    from nfs_exportd.exportsfile import render
    from nfs_exportd.fsutil import atomic_write
    from nfs_exportd.model import ExportsFile
    from nfs_exportd_sim.lab.ganesha import GaneshaServer
    from nfs_exportd_sim.lab.netns import loopback_netns
    from nfs_exportd_sim.sandbox import SANDBOX

    srv = work / "srv"
    for i in range(exports):
        (srv / f"p{i:05d}" / "home").mkdir(parents=True)
    base = make_targets(srv, exports, clients, change=False)
    changed = make_targets(srv, exports, clients, change=True)
    base_text = {n: render(f) for n, f in base.items()}
    changed_text = {n: render(f) for n, f in changed.items()}
    (diff_name,) = [n for n in base_text if base_text[n] != changed_text[n]]

    sb = work / "sb"
    exports_d = sb / "exports.d"
    exports_d.mkdir(parents=True)
    kfs = ExportfsBackend(exports_d, [str(SANDBOX), str(sb)], 600, sb / "lib" / "etab")

    def bare_ra() -> float:
        t0 = time.perf_counter()
        res = subprocess.run(
            [str(SANDBOX), str(sb), "-ra"], capture_output=True, text=True, timeout=600
        )
        dt = time.perf_counter() - t0
        if res.returncode != 0 or res.stderr.strip():
            raise RuntimeError(f"bare exportfs -ra: exit {res.returncode}: {res.stderr[-2000:]}")
        return dt

    def etab_pairs() -> int:
        return len(kfs.read_etab() or {})

    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "floor_initial",
            "floor_change",
            "writes_initial",
            "exportfs_initial",
            "exportfs_change",
            "dbus_initial",
            "dbus_change",
            "ganesha_initial",
            "ganesha_change",
        )
    }
    in_force: dict[str, int] = {}
    summaries: dict[str, str] = {}
    with loopback_netns("bench") as ns, GaneshaServer(work / "ganesha", ns.name) as g:
        cfg = GaneshaConfig(
            conf_dir=g.conf_dir,
            staging_dir=g.conf_dir.with_name("staging"),
            dbus_address=g.dbus_address,
            timeout_seconds=120,
        )
        floor_dir = work / "ganesha-floor"  # not %dir-included: Ganesha reads it only when told
        floor_dir.mkdir()
        state_file = work / "ganesha.json"
        spent = {"dbus": 0.0, "files": 0.0}  # inside GaneshaBackend.apply, per part

        class TimedBus(GaneshaBus):
            """Every DBus round trip of the backend timed (GetNameOwner, ShowExports,
            Add/Update/RemoveExport, the DisplayExport read-backs)."""

            def _send(self, method: str, msg: Any) -> tuple[Any, ...]:
                t0 = time.perf_counter()
                try:
                    return super()._send(method, msg)
                finally:
                    spent["dbus"] += time.perf_counter() - t0

        class TimedBackend(GaneshaBackend):
            """Its durable conf-file writes and removals timed."""

            def _write_file(self, name: str, text: str) -> None:
                t0 = time.perf_counter()
                try:
                    super()._write_file(name, text)
                finally:
                    spent["files"] += time.perf_counter() - t0

            def _remove_file(self, name: str) -> None:
                t0 = time.perf_counter()
                try:
                    super()._remove_file(name)
                finally:
                    spent["files"] += time.perf_counter() - t0

        gan = TimedBackend(
            cfg, state_file, bus=lambda: TimedBus(cfg.dbus_address, cfg.timeout_seconds)
        )
        parts: dict[str, list[float]] = {
            f"{k}_{p}": [] for k in ("initial", "change") for p in ("dbus", "files", "own")
        }

        def split(kind: str, total: float) -> None:
            """The apply's time: its DBus calls, its file writes, and the rest (its own)."""
            parts[f"{kind}_dbus"].append(spent["dbus"])
            parts[f"{kind}_files"].append(spent["files"])
            parts[f"{kind}_own"].append(total - spent["dbus"] - spent["files"])
            spent.update(dbus=0.0, files=0.0)

        def path_specs(files: Iterable[ExportsFile]) -> list[ExportSpec]:
            """The exports (one per path) the backend makes of these files."""
            blocks: dict[str, list[ClientBlock]] = {}
            for f in files:
                for path, b in blocks_of(f).items():
                    blocks.setdefault(path, []).append(b)
            return list(specs_of(blocks).values())

        def ganesha_empty() -> None:
            """No export but the pseudo root: conf files and state gone, and a fresh
            Ganesha process (it reads only conf_dir)."""
            for d in (g.conf_dir, floor_dir):
                for p in d.iterdir():
                    p.unlink()
            state_file.unlink(missing_ok=True)
            g.restart()
            left = [i for i in g.exports() if i]
            if left:
                raise RuntimeError(f"Ganesha restarted with exports {left[:5]}")

        for run in range(1, runs + 1):
            progress(f"  apply cost, run {run}/{runs}: exportfs ...")
            # the floor: bare exportfs -ra on the same files
            _set_files(exports_d, {})
            bare_ra()
            _set_files(exports_d, base_text)
            samples["floor_initial"].append(bare_ra())
            (exports_d / diff_name).write_text(changed_text[diff_name])
            samples["floor_change"].append(bare_ra())
            # the durable writes alone: every file written as apply writes it (temporary,
            # fsync, rename, fsync of the directory), nothing applied
            scratch = work / "writes"
            scratch.mkdir()
            t0 = time.perf_counter()
            for name, text in base_text.items():
                atomic_write(scratch / name, text)
            samples["writes_initial"].append(time.perf_counter() - t0)
            shutil.rmtree(scratch)
            # the exportfs backend, from the same empty etab
            _set_files(exports_d, {})
            bare_ra()
            dt, res = _timed(lambda: kfs.apply(base, {}))
            samples["exportfs_initial"].append(dt)
            in_force["exportfs_initial_pairs"] = etab_pairs()
            current = _files_on_disk(exports_d)
            dt, res = _timed(lambda: kfs.apply(changed, current))  # noqa: B023
            samples["exportfs_change"].append(dt)
            in_force["exportfs_change_files_written"] = len(res.written)
            in_force["exportfs_pairs"] = etab_pairs()

            progress(f"  apply cost, run {run}/{runs}: ganesha ...")
            # the DBus floor: the same conf files, already written, added over one connection
            ganesha_empty()
            specs = path_specs(base.values())
            ids = list(range(cfg.export_id_min, cfg.export_id_min + len(specs)))
            for spec, eid in zip(specs, ids, strict=True):
                (floor_dir / f"export-{eid}.conf").write_text(render_conf(spec, eid))
            with GaneshaBus(g.dbus_address, 120) as bus:
                bus.connect()
                t0 = time.perf_counter()
                for eid in ids:
                    bus.add(str(floor_dir / f"export-{eid}.conf"), eid)
                samples["dbus_initial"].append(time.perf_counter() - t0)
                mid = len(specs) // 2
                (changed_spec,) = path_specs([changed[diff_name]])
                assert changed_spec.path == specs[mid].path
                (floor_dir / f"export-{ids[mid]}.conf").write_text(
                    render_conf(changed_spec, ids[mid])
                )
                t0 = time.perf_counter()
                bus.update(str(floor_dir / f"export-{ids[mid]}.conf"), ids[mid])
                samples["dbus_change"].append(time.perf_counter() - t0)
            in_force["dbus_floor_exports"] = sum(1 for i in g.exports() if i)
            # the Ganesha backend, from an empty Ganesha
            ganesha_empty()
            spent.update(dbus=0.0, files=0.0)
            dt, res = _timed(lambda: gan.apply(base, {}))
            split("initial", dt)
            samples["ganesha_initial"].append(dt)
            summaries["ganesha_initial"] = res.summary
            in_force["ganesha_initial_exports"] = sum(1 for i in g.exports() if i)
            current = {n: render(f) for n, f in gan.in_force().items()}
            spent.update(dbus=0.0, files=0.0)
            dt, res = _timed(lambda: gan.apply(changed, current))  # noqa: B023
            split("change", dt)
            samples["ganesha_change"].append(dt)
            summaries["ganesha_change"] = res.summary
            in_force["ganesha_exports"] = sum(1 for i in g.exports() if i)
        ganesha_empty()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {
        "exportfs_initial/floor_initial": medians["exportfs_initial"] / medians["floor_initial"],
        "exportfs_change/floor_change": medians["exportfs_change"] / medians["floor_change"],
        "ganesha_initial/floor_initial": medians["ganesha_initial"] / medians["floor_initial"],
        "ganesha_change/floor_change": medians["ganesha_change"] / medians["floor_change"],
        "ganesha_initial/dbus_initial": medians["ganesha_initial"] / medians["dbus_initial"],
        "ganesha_change/dbus_change": medians["ganesha_change"] / medians["dbus_change"],
    }
    return {
        "exports": exports,
        "clients": clients,
        "pairs": exports * clients,
        "runs": runs,
        "changed_exports": 1,
        "samples_s": samples,
        "median_s": medians,
        "ratios": ratios,
        "in_force": in_force,
        "summaries": summaries,
        # GaneshaBackend.apply's time split: its DBus calls, its conf-file writes, the rest
        "ganesha_parts_s": {
            "samples": parts,
            "median": {k: statistics.median(v) for k, v in parts.items()},
        },
    }


# --------------------------------------------------------------------------- 2. latency


def _scenario() -> dict[str, Any]:
    def server(sid: str, project: str, addr: str) -> dict[str, Any]:
        return {"id": sid, "name": sid, "project": project, "region": REGION, "addresses": [addr]}

    def user(name: str, password: str, role: dict[str, str]) -> dict[str, Any]:
        return {"name": name, "password": password, "roles": [role]}

    return {
        "regions": [REGION],
        "projects": [{"name": "admin"}, {"name": "proja"}, {"name": "projb"}],
        "users": [
            user("admin", ADMIN_PW, {"role": "admin", "project": "admin"}),
            user("observer", OBSERVER_PW, {"role": "reader", "system": "all"}),
        ],
        "servers": [server("base-a", "proja", BASE_A), server("base-b", "projb", BASE_B)],
    }


def write_daemon_files(
    d: Path, backend: str, srv: Path, sandbox: Path, ganesha: Any | None
) -> Path:
    """config.yaml and projects.yaml of one backend's daemon; returns the config path."""
    import yaml

    from nfs_exportd_sim.sandbox import SANDBOX

    projects = {
        name: {"gid": gid, "mounts": {"home": f"{HOST}:{srv / name / 'home'}"}}
        for name, gid in (("proja", 50001), ("projb", 50002))
    }
    config: dict[str, Any] = {
        "projects_file": "projects.yaml",
        "serve": {"hosts": [HOST], "roots": [str(srv)]},
        "inventory": {
            "source": "openstack",
            "cloud": "nfs",
            "identity_cloud": "nfs-observer",
            "timeout_seconds": 10,
        },
        "exports_dir": str(sandbox / "exports.d"),
        "state_dir": str(d / "state"),
        "etab_file": str(sandbox / "lib" / "etab"),
        "exportfs_command": [str(SANDBOX), str(sandbox)],
        "exportfs_timeout_seconds": 60,
        "maintenance_file": str(d / "maintenance"),
        "interval_seconds": 60,
        "backend": backend,
        "safety": {"confirmation_spacing_seconds": 0},
    }
    if backend == "ganesha":
        assert ganesha is not None
        (d / "records").mkdir()
        config["exports_dir"] = str(d / "records")
        config["ganesha"] = {
            "conf_dir": str(ganesha.conf_dir),
            "staging_dir": str(ganesha.conf_dir.with_name("staging")),
            "dbus_address": ganesha.dbus_address,
            "timeout_seconds": 30,
        }
    (d / "projects.yaml").write_text(yaml.safe_dump(projects, sort_keys=False))
    path = d / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_sync(config: Path, env: dict[str, str], work: Path) -> dict[str, Any]:
    """One ``nfs-exportd sync`` in its own process; its phases (seconds)."""
    timing = work / "sync-timing.json"
    timing.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_sync", str(timing), "--"]
    cmd += ["--config", str(config), "--allow-root", "sync"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    t1 = time.monotonic()
    if proc.returncode != 0:
        raise RuntimeError(
            f"nfs-exportd sync exited {proc.returncode}:\n{(proc.stderr or proc.stdout)[-3000:]}"
        )
    spans = json.loads(timing.read_text())
    read = sum(b - a for a, b in spans["read"])
    apply = sum(b - a for a, b in spans["apply"])
    return {
        "start": t0,
        "return": t1,
        "sync_s": t1 - t0,
        "startup_s": spans["main"] - t0,
        "read_s": read,
        "apply_s": apply,
        "other_s": (t1 - t0) - (spans["main"] - t0) - read - apply,
        "read_calls": len(spans["read"]),
        "apply_calls": len(spans["apply"]),
        "summary": proc.stdout.strip().splitlines()[-1][:200] if proc.stdout.strip() else "",
    }


def sync_child_main(timing: Path, argv: list[str]) -> int:
    """``_sync``: the CLI's main with the inventory read and the apply timed."""
    from nfs_exportd import cli
    from nfs_exportd.apply.exportfs import ExportfsBackend
    from nfs_exportd.apply.ganesha.backend import GaneshaBackend
    from nfs_exportd.read.inventory.openstack import OpenStackInventory

    spans: dict[str, Any] = {"read": [], "apply": []}

    def wrap(cls: Any, name: str, key: str) -> None:
        inner = getattr(cls, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.monotonic()
            try:
                return inner(*args, **kwargs)
            finally:
                spans[key].append((t0, time.monotonic()))

        setattr(cls, name, timed)

    wrap(OpenStackInventory, "read", "read")
    wrap(ExportfsBackend, "apply", "apply")
    wrap(GaneshaBackend, "apply", "apply")
    spans["main"] = time.monotonic()
    try:
        return cli.main(argv)
    finally:
        timing.write_text(json.dumps(spans))


def _probe_ganesha(netns: str, server: str, path: str) -> str:
    from nfs_exportd_sim.lab.clients import nfs_cat

    r = nfs_cat(netns, server, f"{path}/hello.txt", NFS_VERSION, timeout=10)
    if r.ok:
        return "ok" if r.output.startswith("hello") else f"error: read {r.output[:80]!r}"
    if any(w in r.message for w in ("NFS4ERR_NOENT", "NFS4ERR_ACCES", "MNT3ERR_ACCES")):
        return "refused"
    return f"error: {r}"


def _probe_mountd(netns: str, server: str, path: str) -> str:
    from nfs_exportd_sim.lab.mnt3 import MNT3_OK, MNT3ERR_ACCES, mnt3_probe

    r = mnt3_probe(netns, server, path)
    if r.status == MNT3_OK:
        return "ok"
    if r.status == MNT3ERR_ACCES:
        return "refused"
    return f"error: {r}"


def _prober(backend: str, server: str) -> Callable[[str, str], Callable[[], str]]:
    """(netns, volume) -> a probe of that VM's access to that volume on ``backend``."""
    fn = _probe_ganesha if backend == "ganesha" else _probe_mountd

    def probe_for(netns: str, path: str) -> Callable[[], str]:
        return lambda: fn(netns, server, path)

    return probe_for


def observe(probe: Callable[[], str], want: str, since: float) -> dict[str, Any]:
    """Probe until the answer is ``want``: seconds from ``since`` to the end of the first
    probe that saw it (None when it never did), probes made, other answers seen."""
    probes, errors = 0, list[str]()
    deadline = since + OBSERVE_TIMEOUT
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        got = probe()
        t1 = time.monotonic()
        probes += 1
        if got == want:
            return {"observe_s": t1 - since, "probes": probes, "probe_s": t1 - t0, "errors": errors}
        if got.startswith("error"):
            errors.append(got[:200])
    return {"observe_s": None, "probes": probes, "probe_s": None, "errors": errors[-3:]}


def latency(work: Path, changes: int, progress: Callable[[str], None] = log) -> dict[str, Any]:
    """Both backends, ``changes`` new-instance and ``changes`` address-reused changes each."""
    from nfs_exportd_sim import SimCloud
    from nfs_exportd_sim.lab.ganesha import GaneshaServer
    from nfs_exportd_sim.lab.mountd import MountdServer
    from nfs_exportd_sim.lab.network import LabNetwork

    srv = work / "srv"
    for project in ("proja", "projb"):
        vol = srv / project / "home"
        vol.mkdir(parents=True)
        (vol / "hello.txt").write_text(f"hello from {project}\n")
        for p in (srv, srv / project, vol):
            p.chmod(0o755)
        (vol / "hello.txt").chmod(0o644)
    sandbox = work / "sb"
    (sandbox / "exports.d").mkdir(parents=True)
    vms = {f"v{i}": f"198.51.100.{30 + i}" for i in range(changes)}
    out: dict[str, Any] = {"changes": changes, "nfs_version": NFS_VERSION, "backends": {}}
    with (
        LabNetwork(vms) as net,
        GaneshaServer(work / "ganesha", net.server.name, net.server_ip) as ganesha,
        MountdServer(work / "mountd", net.knfs.name, sandbox, net.knfs_ip) as mountd,
    ):
        for backend in BACKENDS:
            d = work / f"daemon-{backend}"
            d.mkdir()
            config = write_daemon_files(
                d, backend, srv, sandbox, ganesha if backend == "ganesha" else None
            )
            probe_for = _prober(backend, net.server_ip if backend == "ganesha" else net.knfs_ip)
            sim = SimCloud(_scenario())
            sim.start()
            try:
                clouds = sim.clouds_yaml(
                    d / "clouds.yaml",
                    {
                        "nfs": {"user": "admin", "password": ADMIN_PW, "project": "admin"},
                        "nfs-observer": {
                            "user": "observer",
                            "password": OBSERVER_PW,
                            "system_scope": "all",
                        },
                    },
                )
                env = {
                    **os.environ,
                    "OS_CLIENT_CONFIG_FILE": str(clouds),
                    "NO_PROXY": "127.0.0.1,localhost",
                    "no_proxy": "127.0.0.1,localhost",
                }
                progress(f"  latency, {backend}: first sync ...")
                run_sync(config, env, work)
                vol_a, vol_b = str(srv / "proja" / "home"), str(srv / "projb" / "home")
                rows: list[dict[str, Any]] = []
                wrong = 0  # a VM that did not have the access it should have had
                for i, (name, addr) in enumerate(vms.items()):
                    progress(f"  latency, {backend}: change {i + 1}/{changes} (VM {name} {addr})")
                    netns = net.vms[name].netns
                    can_a, can_b = probe_for(netns, vol_a), probe_for(netns, vol_b)
                    if can_a() != "refused":
                        wrong += 1
                    sim.create_server(f"new-{i}", "proja", REGION, [addr], server_id=f"new-{i}")
                    s = run_sync(config, env, work)
                    rows.append(
                        {"kind": KINDS[0], "vm": addr, **s, **observe(can_a, "ok", s["return"])}
                    )
                    sim.delete_server(f"new-{i}")
                    sim.create_server(f"reuse-{i}", "projb", REGION, [addr], server_id=f"reuse-{i}")
                    s = run_sync(config, env, work)
                    seen = observe(can_a, "refused", s["return"])
                    rows.append({"kind": KINDS[1], "vm": addr, **s, **seen})
                    if can_b() != "ok":
                        wrong += 1
                out["backends"][backend] = summarise(rows, wrong)
            finally:
                sim.stop()
        out["mountd_refusals"] = len(mountd.refusals())
    return out


PHASES = ("sync_s", "startup_s", "read_s", "apply_s", "other_s", "observe_s", "total_s")


def summarise(rows: list[dict[str, Any]], wrong: int) -> dict[str, Any]:
    """Per kind: median/p95 of every phase, and the samples (ms, rounded)."""
    out: dict[str, Any] = {"wrong_access": wrong}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        seen = [r for r in mine if r["observe_s"] is not None]
        for r in seen:
            r["total_s"] = r["sync_s"] + r["observe_s"]
        out[kind] = {
            "changes": len(mine),
            "observed": len(seen),
            "stats_s": {p: stats([r[p] for r in seen]) for p in PHASES} if seen else {},
            "probe_s": stats([r["probe_s"] for r in seen]) if seen else {},
            "probes_per_change": stats([float(r["probes"]) for r in mine]),
            "probe_errors": sum(len(r["errors"]) for r in mine),
            "read_calls": sum(r["read_calls"] for r in mine),
            "apply_calls": sum(r["apply_calls"] for r in mine),
            "samples_ms": {
                "columns": ["vm", *(p.removesuffix("_s") for p in PHASES), "probes"],
                "rows": [
                    [
                        r["vm"],
                        *(None if r.get(p) is None else round(r[p] * 1e3, 1) for p in PHASES),
                        r["probes"],
                    ]
                    for r in mine
                ],
            },
            "sync_summary": mine[-1]["summary"] if mine else "",
        }
    return out


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    def pkg(name: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            r = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True
            )
            return r.stdout.strip()
        return ""

    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nfs-ganesha": pkg("nfs-ganesha"),
        "nfs-kernel-server": pkg("nfs-kernel-server"),
        "load_before": os.getloadavg()[0],
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.0f}" if v >= 0.1 else f"{v * 1e3:.1f}"


def markdown(result: dict[str, Any]) -> str:
    lines: list[str] = []
    a = result.get("apply")
    if a:
        m, r = a["median_s"], a["ratios"]

        def row(what: str, initial: str, change: str) -> str:
            return f"| {what} | {initial} | {change} |"

        def ratio(key: str, digits: int = 2) -> str:
            return f"{r[key]:.{digits}f}x"

        lines += [
            f"Apply cost: {a['exports']:,} exports x {a['clients']} clients ({a['pairs']:,} "
            f"pairs), medians of {a['runs']} runs, ms:",
            "",
            row("", "initial apply", "one changed client"),
            "|---|---:|---:|",
            row(
                "floor: bare `exportfs -ra` (sandbox)",
                _ms(m["floor_initial"]),
                _ms(m["floor_change"]),
            ),
            row(
                "exportfs backend (`ExportfsBackend.apply`)",
                _ms(m["exportfs_initial"]),
                _ms(m["exportfs_change"]),
            ),
            row(
                "ratio to `exportfs -ra`",
                ratio("exportfs_initial/floor_initial"),
                ratio("exportfs_change/floor_change"),
            ),
            row(
                "durable writes alone (N files: temporary, fsync, rename, fsync dir)",
                _ms(m["writes_initial"]),
                "",
            ),
            row(
                "floor: bare DBus AddExport / UpdateExport",
                _ms(m["dbus_initial"]),
                _ms(m["dbus_change"]),
            ),
            row(
                "Ganesha backend (`GaneshaBackend.apply`)",
                _ms(m["ganesha_initial"]),
                _ms(m["ganesha_change"]),
            ),
            row(
                "ratio to `exportfs -ra`",
                ratio("ganesha_initial/floor_initial"),
                ratio("ganesha_change/floor_change"),
            ),
            row(
                "ratio to its DBus calls",
                ratio("ganesha_initial/dbus_initial"),
                ratio("ganesha_change/dbus_change", 1),
            ),
        ]
        gp = a.get("ganesha_parts_s", {}).get("median")
        if gp:
            lines += [
                row(
                    f"of which: {what}",
                    _ms(gp[f"initial_{part}"]),
                    _ms(gp[f"change_{part}"]),
                )
                for what, part in (
                    ("its DBus calls (with ShowExports and the DisplayExport read-backs)", "dbus"),
                    ("its durable conf-file writes", "files"),
                    ("its own work (the rest)", "own"),
                )
            ]
        lines.append("")
    lat = result.get("latency")
    if lat:
        lines += [
            f"Cloud change -> VM sees it, {lat['changes']} changes of each kind per backend, "
            "ms, median / p95:",
            "",
            "| backend | change | sync (start -> return) | of which: start+imports | "
            "inventory read | apply | sync return -> VM sees it | change -> VM sees it | "
            "seen |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for backend, b in lat["backends"].items():
            for kind in KINDS:
                k = b[kind]
                st = k["stats_s"]

                def cell(p: str, st: dict[str, Any] = st) -> str:
                    if p not in st:
                        return "-"
                    return f"{_ms(st[p]['median'])} / {_ms(st[p]['p95'])}"

                what = "VM reads" if kind == KINDS[0] else "VM refused"
                lines.append(
                    f"| {backend} | {kind} ({what}) | {cell('sync_s')} | {cell('startup_s')} | "
                    f"{cell('read_s')} | {cell('apply_s')} | {cell('observe_s')} | "
                    f"{cell('total_s')} | {k['observed']}/{k['changes']} |"
                )
        lines.append("")
        probes = {b: _ms(v[KINDS[0]]["probe_s"].get("median")) for b, v in lat["backends"].items()}
        lines.append(
            "One probe (its own process in the VM's namespace), median ms: "
            + ", ".join(f"{b} {v}" for b, v in probes.items())
            + f"; NFS v{lat['nfs_version']} for Ganesha, MOUNT v3 for rpc.mountd."
        )
        lines.append(
            "Checks (each should be 0): a VM without the access it should have had before or "
            "after a change: "
            + ", ".join(f"{b} {v['wrong_access']}" for b, v in lat["backends"].items())
            + "; probes that got no answer: "
            + ", ".join(
                f"{b} {sum(v[k]['probe_errors'] for k in KINDS)}"
                for b, v in lat["backends"].items()
            )
            + "."
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bench-datapath-")).resolve()
    d.chmod(0o755)  # the exported trees below must be readable by a squashed client
    try:
        yield d
    finally:
        if not keep:
            shutil.rmtree(d, ignore_errors=True)


def _dump(result: dict[str, Any]) -> str:
    """Indented JSON, with every list of numbers (and each sample row) on one line."""
    text = json.dumps(result, indent=1, sort_keys=True)
    return re.sub(r"\[[^\[\]{}]*\]", lambda m: re.sub(r"\s*\n\s*", " ", m.group(0)), text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_sync"]:
        sep = argv.index("--")
        return sync_child_main(Path(argv[1]), argv[sep + 1 :])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a small run (< 60 s)")
    p.add_argument("--part", choices=("all", "apply", "latency"), default="all")
    p.add_argument("--exports", type=int)
    p.add_argument("--clients", type=int)
    p.add_argument("--runs", type=int)
    p.add_argument("--changes", type=int)
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/datapath-DATE.json)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        log(
            "bench/datapath.py needs root (network and mount namespaces, NFS servers): "
            "run it as root"
        )
        return 2
    size = dict(QUICK if args.quick else FULL)
    for key in size:
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    now = datetime.datetime.now(datetime.UTC)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": now.isoformat(timespec="seconds"),
        "quick": args.quick,
        "size": size,
        "machine": machine(),
    }
    t0 = time.monotonic()
    with workdir(args.keep) as work:
        log(f"work directory {work}")
        if args.part in ("all", "apply"):
            (work / "apply").mkdir()
            result["apply"] = apply_cost(
                work / "apply", size["exports"], size["clients"], size["runs"]
            )
        if args.part in ("all", "latency"):
            (work / "latency").mkdir()
            result["latency"] = latency(work / "latency", size["changes"])
    result["wall_s"] = time.monotonic() - t0
    out = (
        args.out
        or _HERE / "results" / f"datapath-{now:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_dump(result) + "\n")
    print(markdown(result))
    print(f"\n{result['wall_s']:.0f} s; JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
