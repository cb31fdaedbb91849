"""Whole cycles against the simulated cloud, beside the original daemon's (issue 15):
read + decide + files written + ``exportfs -ra``, with the network wait and the daemon's
own CPU apart.

    .venv/bin/python bench/cycles.py [--original PATH] [--out FILE.json]   # root, ~20 min
    .venv/bin/python bench/cycles.py --quick                               # ~10 s (the test)

Cloud: ``generate(1000, 10000)`` (two regions) in the simulator's own process
(``bench/requests.py``), 0 and 20 ms added to every request; the first 100 and 1,000 of
its projects (sorted by name) have one NFS volume each.  Variants, each cycle starting
from nothing in force (every file is written and ``exportfs -ra`` runs):

* ``sync``: ``nfs-exportd sync``, all-projects mode, a fresh process (imports, tokens,
  the cycle), as a cron job or systemd timer runs it;
* ``run all-projects`` / ``run per-project``: ``run``'s warm cycle: the same
  ``cycle.sync`` with the inventory source kept from the cycle before (tokens reused),
  in one process; the exports and state are emptied between its cycles;
* ``original``: Wikimedia's nfs-exportd.py (operations/puppet,
  modules/cloudnfs/files/nfs-exportd.py), an operator-supplied copy run unmodified
  (``--original PATH``, ``--original-python`` with keystoneauth1, python-keystoneclient,
  python-novaclient, netifaces): as ``nobody``, in a mount namespace of its own where a
  stand-in for ``/usr/bin/sudo`` runs the sandboxed exportfs.  Without ``--original``:
  ``reimpl``, bench/requests.py's re-implementation of its read pattern + the same file
  writes and exportfs, labelled as such ("re-implementation of its pattern, not the
  original").

Per cycle: wall; the process's own CPU (every thread; the exportfs's CPU, measured by
``/usr/bin/time`` around the sandboxed command, taken out); the exportfs's wall; the HTTP
wait, measured around every call (``httpwait/sitecustomize.py``: the union of the calls'
intervals, the simulator's time to answer included); what is left of the wall (fsync,
process start off-CPU); requests and tokens counted by the simulator.  Medians of
``--runs``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/requests.py would shadow the requests library for keystoneauth: drop bench/.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"nfs_exportd_bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load("requests")
perf = _load("perf")

HOST = "localhost"  # the original keeps a mount only when its host resolves to this machine
FULL = {"projects": 1000, "instances": 10000, "nfs": (100, 1000), "latency": (0.0, 20.0)}
QUICK = {"projects": 100, "instances": 1000, "nfs": (10,), "latency": (0.0,)}
OURS = ("sync", "run all-projects", "run per-project")
TIMES_FORMAT = "%e %U %S"  # /usr/bin/time: wall, user, system
NOBODY = 65534
REIMPL = "reimpl"
HTTP_LOG = "BENCH_HTTP_LOG"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the lab


class Lab:
    """One variant's directories: its exports sandbox, state, config; the served paths and
    the projects file (the original's nfs-mounts.yaml format, read by both) are shared."""

    def __init__(self, root: Path, name: str, mounts: Path) -> None:
        self.owner = NOBODY if name == "original" else None  # the original writes as nobody
        self.root = root / name.replace(" ", "-")
        self.sb = self.root / "sb"
        self.state = self.root / "state"
        self.times = self.root / "exportfs.times"
        self.http = self.root / "http.wait"  # written by httpwait/sitecustomize.py at exit
        self.config = self.root / "config.yaml"
        self.mounts = mounts
        self.reset()

    def exportfs_command(self) -> list[str]:
        """The sandboxed exportfs under /usr/bin/time, which appends its wall and CPU."""
        return [perf.TIME, "-a", "-o", str(self.times), "-f", TIMES_FORMAT]

    def reset(self) -> None:
        """Nothing in force: an empty exports directory, no etab, no state."""
        for d in (self.sb, self.state):
            shutil.rmtree(d, ignore_errors=True)
        (self.sb / "exports.d").mkdir(parents=True)
        if self.owner is not None:
            os.chown(self.sb / "exports.d", self.owner, -1)
        for f in (self.times, self.http):
            f.write_text("")
            f.chmod(0o666)

    def exportfs(self) -> tuple[float, float, int]:
        """(wall, CPU, runs) of the exportfs commands since the last reset."""
        rows = [ln.split() for ln in self.times.read_text().splitlines()]
        rows = [r for r in rows if len(r) == 3]  # not "Command exited with non-zero status"
        return (
            sum(float(r[0]) for r in rows),
            sum(float(r[1]) + float(r[2]) for r in rows),
            len(rows),
        )

    def http_wait(self) -> float:
        """Seconds in HTTP calls of the process that exited (0 if it made none)."""
        words = self.http.read_text().split()
        return float(words[0]) if words else 0.0

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with the HTTP timer on, for this lab's processes."""
        path = [str(HERE / "httpwait"), *base.get("PYTHONPATH", "").split(os.pathsep)]
        return {
            **base,
            "PYTHONPATH": os.pathsep.join(p for p in path if p),
            HTTP_LOG: str(self.http),
        }

    def files(self) -> int:
        return sum(1 for p in (self.sb / "exports.d").iterdir() if p.suffix == ".exports")


def write_mounts(root: Path, projects: list[str]) -> Path:
    """The projects file: ``private: {NAME: {gid, mounts: {home: HOST:/path}}}``."""
    private = {}
    for i, name in enumerate(projects):
        home = root / "srv" / name / "home"
        home.mkdir(parents=True, exist_ok=True)
        private[name] = {"gid": 50000 + i, "mounts": {"home": f"{HOST}:{home}"}}
    path = root / "nfs-mounts.yaml"
    path.write_text(json.dumps({"private": private}))  # JSON is YAML
    return path


def write_config(lab: Lab, mode: str) -> None:
    cfg = {
        "projects_file": str(lab.mounts),
        "serve": {"hosts": [HOST], "roots": [str(lab.mounts.parent / "srv")]},
        "inventory": {
            "source": "openstack",
            "cloud": "admin" if mode == "all-projects" else "observer",
            "identity_cloud": "observer-system",
            "mode": mode,
            "timeout_seconds": 120,
        },
        "exports_dir": str(lab.sb / "exports.d"),
        "state_dir": str(lab.state),
        "etab_file": str(lab.sb / "lib" / "etab"),
        "exportfs_command": [*lab.exportfs_command(), str(perf.sandbox()), str(lab.sb)],
        "exportfs_timeout_seconds": 600,
        "maintenance_file": str(lab.root / "maintenance"),
        "safety": {"confirmation_spacing_seconds": 0},
    }
    lab.config.write_text(json.dumps(cfg))


# --------------------------------------------------------------------------- in a child


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def warm_main(args: argparse.Namespace) -> int:
    """``_warm``: ``run``'s cycle: one source kept across cycles; the first (cold) cycle is
    not timed, then ``--runs`` timed cycles, each from nothing in force."""
    import sitecustomize  # bench/httpwait: every HTTP call's interval

    from nfs_exportd.config import load_config
    from nfs_exportd.cycle import load_served, sync
    from nfs_exportd.memory.state import StateLock
    from nfs_exportd.read.inventory import source_from_config

    lab = Lab(Path(args.root), args.name, Path(args.mounts))
    cfg = load_config(lab.config)
    served = load_served(cfg)
    source = source_from_config(cfg)
    with StateLock(cfg.state_dir):  # as run takes it for each cycle
        sync(cfg, served, source=source)
    out = []
    for _ in range(args.runs):
        lab.reset()
        bench.control(args.base_url, "reset")
        calls = len(sitecustomize.INTERVALS)
        t0, c0 = time.perf_counter(), _cpu_self()
        with StateLock(cfg.state_dir):
            result = sync(cfg, served, source=source)
        wall, cpu = time.perf_counter() - t0, _cpu_self() - c0
        counts = bench.control(args.base_url, "counts")["total"]
        ex_wall, ex_cpu, ex_runs = lab.exportfs()
        out.append(
            {
                "wall": wall,
                "cpu": cpu,  # RUSAGE_SELF: exportfs is a child, not in it
                "http": sitecustomize.union(sitecustomize.INTERVALS[calls:]),
                "exportfs_wall": ex_wall,
                "exportfs_cpu": ex_cpu,
                "exportfs_runs": ex_runs,
                "files": lab.files(),
                "counts": counts,
                "line": result.line(),
            }
        )
    print(json.dumps(out))
    return 0


def reimpl_main(args: argparse.Namespace) -> int:
    """``_reimpl``: bench/requests.py's re-implementation of the original's read, then one
    file per project with instances and ``exportfs -ra`` (not the original)."""
    lab = Lab(Path(args.root), args.name, Path(args.mounts))
    lab.times.write_text("")
    private = json.loads(lab.mounts.read_text())["private"]
    ips: dict[str, list[str]] = {}
    facts = bench.baseline_read("observer", sorted(private), ips)
    if not facts["complete"]:
        raise SystemExit(f"re-implementation's read incomplete: {facts['problem']}")
    for name, addrs in ips.items():
        if addrs:
            path = private[name]["mounts"]["home"].split(":", 1)[1]
            text = f"{path} -rw,nohide,no_subtree_check,async,no_root_squash {' '.join(addrs)}"
            (lab.sb / "exports.d" / f"{name}.exports").write_text(text)
    cmd = [*lab.exportfs_command(), str(perf.sandbox()), str(lab.sb), "-ra"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return 0


# --------------------------------------------------------------------------- variants


def one_shot(cmd: list[str], lab: Lab, base_url: str, env: dict[str, str]) -> dict[str, Any]:
    """``cmd`` as its own process, from nothing in force: wall and CPU from wait4 (the
    process and every child it waited for), the exportfs's part taken out."""
    lab.reset()
    bench.control(base_url, "reset")
    res = perf.run_child(cmd, lab.env(env))
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {res['rc']}: {res['err'][-3000:]}")
    ex_wall, ex_cpu, ex_runs = lab.exportfs()
    return {
        "wall": res["wall"],
        "cpu": res["cpu"] - ex_cpu,
        "http": lab.http_wait(),
        "exportfs_wall": ex_wall,
        "exportfs_cpu": ex_cpu,
        "exportfs_runs": ex_runs,
        "files": lab.files(),
        "counts": bench.control(base_url, "counts")["total"],
        "line": res["out"].strip()[-300:],
    }


def original_cmd(lab: Lab, original: Path, python: Path, base_url: str) -> list[str]:
    """The original, unmodified, as ``nobody`` (it refuses root) in a mount namespace of
    its own where /usr/bin/sudo is a script running the sandboxed exportfs as root again.

    ``nobody`` keeps CAP_SETUID/CAP_SETGID as ambient capabilities (no_setuid_fixup) so
    that this stand-in can do what the real setuid sudo does; nothing outside the
    namespace changes (the real sudo and sudoers are untouched)."""
    sudo = lab.root / "sudo"
    timed = " ".join(f"'{a}'" for a in lab.exportfs_command())
    sudo.write_text(
        "#!/bin/sh\n"
        "# /usr/bin/sudo in the original's namespace: sudo /usr/sbin/exportfs ARGS\n"
        "shift\n"
        f"exec {timed} setpriv --reuid=0 --regid=0 --init-groups "
        f"'{perf.sandbox()}' '{lab.sb}' \"$@\"\n"
    )
    sudo.chmod(0o755)
    inner = " ".join(
        [
            "mount --make-rprivate / &&",
            f"mount --bind {sudo} /usr/bin/sudo &&",
            f"exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups",
            "--securebits +no_setuid_fixup --inh-caps +setuid,+setgid",
            "--ambient-caps +setuid,+setgid",
            f"{python} {original} --config-path {lab.mounts}",
            f"--exports-d-path {lab.sb / 'exports.d'}",
            f"--auth-url {base_url}/identity/v3 --observer-pass {bench_password()}",
        ]
    )
    return ["unshare", "--mount", "sh", "-c", inner]


def bench_password() -> str:
    from nfs_exportd_sim import OBSERVER_PASSWORD

    return str(OBSERVER_PASSWORD)


def measure(
    variant: str,
    lab: Lab,
    base_url: str,
    env: dict[str, str],
    runs: int,
    original: tuple[Path, Path] | None,
) -> list[dict[str, Any]]:
    """``runs`` cycles of one variant; one record each."""
    me = [sys.executable, str(Path(__file__).resolve())]
    common = [f"--root={lab.root.parent}", f"--mounts={lab.mounts}"]
    if variant == "sync":
        cmd = [sys.executable, "-m", "nfs_exportd.cli", "--config", str(lab.config)]
        return [one_shot([*cmd, "--allow-root", "sync"], lab, base_url, env) for _ in range(runs)]
    if variant.startswith("run "):
        cmd = [*me, "_warm", f"--name={variant}", f"--base-url={base_url}", f"--runs={runs}"]
        proc = subprocess.run([*cmd, *common], capture_output=True, text=True, env=lab.env(env))
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} exited {proc.returncode}: {proc.stderr[-3000:]}")
        records: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
        return records
    if variant == REIMPL:
        cmd = [*me, "_reimpl", f"--name={variant}", *common]
        return [one_shot(cmd, lab, base_url, env) for _ in range(runs)]
    assert original is not None
    path, python = original
    cmd = original_cmd(lab, path, python, base_url)
    bare = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": bench.NO_PROXY}
    bare["no_proxy"] = bench.NO_PROXY  # and not this interpreter's PYTHONPATH
    return [one_shot(cmd, lab, base_url, bare) for _ in range(runs)]


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians; requests as counted (the same in every run, or the row says so)."""

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in records))

    counts = [bench.split_counts(r["counts"]) for r in records]
    return {
        "wall": med("wall"),
        "cpu": med("cpu"),
        "exportfs_wall": med("exportfs_wall"),
        "exportfs_cpu": med("exportfs_cpu"),
        "http": med("http"),
        # wall - own CPU - exportfs: the HTTP wait and everything else off-CPU (fsync)
        "off_cpu": statistics.median(r["wall"] - r["cpu"] - r["exportfs_wall"] for r in records),
        "requests": counts[0]["total"],
        "tokens": counts[0]["tokens"],
        "servers_requests": counts[0]["servers"],
        "counts_stable": all(c == counts[0] for c in counts),
        "exportfs_runs": min(r["exportfs_runs"] for r in records),
        "files": min(r["files"] for r in records),
        "runs": records,
    }


def run_bench(
    sizes: dict[str, Any], runs: int, original: tuple[Path, Path] | None, work: Path
) -> dict[str, Any]:
    variants = (*OURS, "original" if original else REIMPL)
    rows: list[dict[str, Any]] = []
    clouds = work / "clouds.yaml"
    log(f"simulator: {sizes['projects']} projects / {sizes['instances']} instances")
    with bench.sim_process(sizes["projects"], sizes["instances"], 0, clouds, True) as (url, _):
        info = bench.control(url, "info")
        env = bench._child_env(clouds)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        for nfs in sizes["nfs"]:
            root = work / f"nfs-{nfs}"
            mounts = write_mounts(root, info["projects"][:nfs])
            labs = {v: Lab(root, v, mounts) for v in variants}
            write_config(labs["sync"], "all-projects")
            write_config(labs["run all-projects"], "all-projects")
            write_config(labs["run per-project"], "per-project")
            for latency in sizes["latency"]:
                bench.control(url, "latency", ms=latency)
                for v in variants:
                    recs = measure(v, labs[v], url, env, runs, original)
                    row = {"nfs": nfs, "latency_ms": latency, "variant": v, **summarise(recs)}
                    log(
                        f"{nfs} NFS projects, {latency:g} ms, {v}: {row['wall']:.2f} s wall, "
                        f"{row['cpu']:.2f} s CPU, exportfs {row['exportfs_wall']:.2f} s, "
                        f"{row['requests']} requests ({row['tokens']} tokens)"
                    )
                    rows.append(row)
    info = {
        "projects": len(info["projects"]),
        "servers": info["servers"],
        "ports": info["ports"],
        "regions": info["regions"],
    }
    return {
        "info": info,
        "rows": rows,
        "runs": runs,
        "original": str(original[0]) if original else None,
    }


# --------------------------------------------------------------------------- report


def expected(row: dict[str, Any], regions: int) -> dict[str, int]:
    """What each variant's requests must be: tokens exactly, Nova listings at least."""
    nfs, v = row["nfs"], row["variant"]
    if v == "sync":  # the project-scoped admin and the system reader
        return {"tokens": 2}
    if v.startswith("run "):  # warm: every token reused
        return {"tokens": 0, "min_servers": nfs * regions if v.endswith("per-project") else 1}
    # one token per NFS project (the original takes one more, to list the regions)
    return {"tokens": nfs + (v == "original"), "min_servers": nfs * regions}


def checks(result: dict[str, Any]) -> dict[str, bool]:
    regions = len(result["info"]["regions"])
    out = {}
    for r in result["rows"]:
        key = f"{r['nfs']} NFS, {r['latency_ms']:g} ms, {r['variant']}"
        want = expected(r, regions)
        out[f"{key}: tokens == {want['tokens']}"] = r["tokens"] == want["tokens"]
        if "min_servers" in want:
            ok = r["servers_requests"] >= want["min_servers"]
            out[f"{key}: Nova listings >= {want['min_servers']}"] = ok
        out[f"{key}: one exportfs -ra"] = r["exportfs_runs"] == 1
        out[f"{key}: a file per NFS project with instances"] = r["files"] > 0
        out[f"{key}: same requests every run"] = r["counts_stable"]
    return out


LABELS = {
    "sync": "`sync` one-shot, all-projects (fresh process)",
    "run all-projects": "`run` warm cycle, all-projects",
    "run per-project": "`run` warm cycle, per-project",
    "original": "the original daemon (unmodified)",
    REIMPL: "re-implementation of its pattern, not the original",
}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| NFS projects | latency | cycle | wall s | own CPU s | exportfs s (its CPU) | "
        "HTTP wait s | other off-CPU s | requests (tokens) | files | "
        "original / this: wall | HTTP wait |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = result["rows"]
    for r in rows:
        base = next(
            b
            for b in rows
            if b["nfs"] == r["nfs"]
            and b["latency_ms"] == r["latency_ms"]
            and b["variant"] in ("original", REIMPL)
        )
        net_x = base["http"] / r["http"] if r["http"] > 0 else float("inf")
        lines.append(
            f"| {r['nfs']:,} | {r['latency_ms']:g} ms | {LABELS[r['variant']]} | "
            f"{r['wall']:.2f} | {r['cpu']:.2f} | {r['exportfs_wall']:.2f} "
            f"({r['exportfs_cpu']:.2f}) | {r['http']:.2f} | {r['off_cpu'] - r['http']:.2f} | "
            f"{r['requests']:,} ({r['tokens']:,}) | {r['files']:,} | "
            f"{base['wall'] / r['wall']:.1f}x | {net_x:.1f}x |"
        )
    failed = [k for k, ok in checks(result).items() if not ok]
    lines += ["", "checks: " + ("all met" if not failed else "NOT met: " + "; ".join(failed))]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="command")
    for name in ("_warm", "_reimpl"):
        child = sub.add_parser(name, help="(internal)")
        child.add_argument("--root", required=True)
        child.add_argument("--name", required=True)
        child.add_argument("--mounts", required=True)
        child.add_argument("--base-url")
        child.add_argument("--runs", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="100 projects, 10 NFS, 0 ms, 1 run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--original", type=Path, help="the original nfs-exportd.py, run unmodified")
    ap.add_argument(
        "--original-python",
        type=Path,
        default=Path("python3"),
        help="an interpreter with its dependencies, usable by nobody (default: %(default)s)",
    )
    ap.add_argument("--nfs", help="NFS project counts, comma-separated (default: 100,1000)")
    ap.add_argument("--latency-ms", help="added latencies, comma-separated (default: 0,20)")
    ap.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = ap.parse_args(argv)
    if args.command == "_warm":
        return warm_main(args)
    if args.command == "_reimpl":
        return reimpl_main(args)
    sizes = dict(QUICK if args.quick else FULL)
    if args.nfs:
        sizes["nfs"] = tuple(int(x) for x in args.nfs.split(","))
    if args.latency_ms:
        sizes["latency"] = tuple(float(x) for x in args.latency_ms.split(","))
    runs = 1 if args.quick else args.runs
    original = None
    if args.original:
        original = (args.original.resolve(), args.original_python)
    work = Path(tempfile.mkdtemp(prefix="nfs-exportd-cycles-"))
    work.chmod(0o755)  # the original runs as nobody
    try:
        t0 = time.perf_counter()
        result = run_bench(sizes, runs, original, work)
        result["seconds"] = round(time.perf_counter() - t0, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["checks"] = checks(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
