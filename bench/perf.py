"""The daemon's own cost against the floor it cannot avoid, measured in the same run
(issue 15): one table, a "now" column beside the floor, and their ratio.

    .venv/bin/python bench/perf.py [--runs 3] [--out FILE.json]   # the full sizes, root
    .venv/bin/python bench/perf.py --quick                        # small sizes (the test)

Rows (medians of ``--runs``; every command is its own process, as an operator runs it):

* ``nochange``: ``nfs-exportd sync`` at 2,500 projects x 10 instances x 2 volumes =
  50,000 pairs (static inventory), nothing changed since the last sync.  The floor is
  "nothing to do"; the goal is compared with a bare ``exportfs -ra`` on the same files
  (<= 0.1x).  The row also checks that no file was written and exportfs did not run.
* ``onechange``: the same after one new instance; floor: a bare ``exportfs -ra`` of the
  same files in the same sandbox (goal <= 1.1x).  The row also reports the daemon's own
  part apart (``own_s``: the sync's wall minus the time its ``exportfs -ra`` took, which
  the sync logs at debug level), and its ratio to the bare ``exportfs -ra``: exportfs's
  own time swings with the machine's load, the daemon's part is what the project owns.
* ``plan-10k`` / ``plan-100k``: ``nfs-exportd plan`` at 1,000 projects / 10,000 instances
  and 10,000 / 100,000 (static inventory, 1 in 10 projects with two NFS volumes, nothing
  in force yet); floor: loading the same inventory file with libyaml's C loader
  (``yaml.load(text, Loader=yaml.CSafeLoader)``), in a process of its own (goal <= 2x,
  peak RSS < 300 MB).
* ``cloud``: one all-projects inventory read at 10,000 projects / 100,000 instances
  against the simulated cloud in its own process (0 ms added latency), a warm cycle (the
  second of the same source, as in ``run``, and the collection it put off): the reading
  process's CPU beside the CPU to JSON-decode the same response bodies with the cyclic
  collector off, the decoding alone (goal <= 2x; ``floor_gc_s``: the same decoding with
  the collector on, as the first round measured it).  The daemon no longer decodes whole
  answers (``read/inventory/pages.py``: the fields it reads, with msgspec); beside the
  floor, ``full_msgspec_s``: msgspec decoding every field of the same answers, so that a
  reader sees what the fastest whole decoding costs too.
* ``start``: process start: ``python -c pass`` (the floor), importing ``nfs_exportd.cli``
  and the ``check`` plugin's whole run on the ``nochange`` lab (goal < 0.3 s).

The exportfs is the real one in a private mount namespace (``exportfs-sandbox``); the
lab is built under a temporary directory and removed at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
HOST = "nfs-1.svc.example"
FULL = {
    "pairs": (2500, 10, 2),  # projects, instances per project, volumes per project
    "plan-10k": (1000, 10000),
    "plan-100k": (10000, 100000),
    "cloud": (10000, 100000),
}
QUICK = {
    "pairs": (50, 10, 2),
    "plan-10k": (100, 1000),
    "plan-100k": (200, 2000),
    "cloud": (50, 500),
}
GOALS = {  # row -> (ratio bound, what the floor is)
    "nochange": 0.1,
    "onechange": 1.1,
    "plan-10k": 2.0,
    "plan-100k": 2.0,
    "cloud": 2.0,
}
RSS_GOAL_MB = 300
TIME = "/usr/bin/time"  # GNU time (Debian package time): the command's own peak RSS
CHECK_GOAL_S = 0.3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sandbox() -> Path:
    from nfs_exportd_sim.sandbox import SANDBOX

    return Path(SANDBOX)


# --------------------------------------------------------------------------- workloads


def address(n: int) -> str:
    """The n-th instance's address: 172.16.0.1 upwards, never a .0 or .255."""
    block, host = divmod(n, 250)
    return f"172.{16 + block // 256}.{block % 256}.{host + 1}"


def write_lab(root: Path, projects: int, per: int, volumes: int, nfs_every: int = 1) -> Path:
    """A lab: config, projects file (every ``nfs_every``-th project has ``volumes``
    volumes), static inventory (``per`` instances per project, one address each),
    served directories, an empty exports sandbox.  Returns the config path."""
    (root / "sb" / "exports.d").mkdir(parents=True, exist_ok=True)
    projs: dict[str, Any] = {}
    inv_p: list[dict[str, Any]] = []
    inv_i: list[dict[str, Any]] = []
    n = 0
    for p in range(projects):
        name = f"proj-{p:05d}"
        inv_p.append({"id": f"{p + 1:032x}", "name": name, "enabled": True})
        if p % nfs_every == 0:
            mounts = {}
            for v in range(volumes):
                d = root / "srv" / name / f"vol{v}"
                d.mkdir(parents=True, exist_ok=True)
                mounts[f"vol{v}"] = f"{HOST}:{d}"
            projs[name] = {"gid": 10000 + p, "mounts": mounts}
        for i in range(per):
            inv_i.append(
                {
                    "id": f"i-{n}",
                    "name": f"{name}-{i}",
                    "project": name,
                    "status": "ACTIVE",
                    "addresses": [address(n)],
                }
            )
            n += 1
    cfg = {
        "projects_file": "projects.yaml",
        "serve": {"hosts": [HOST], "roots": [str(root / "srv")]},
        "inventory": {"source": "static", "file": "inventory.yaml"},
        "exports_dir": str(root / "sb" / "exports.d"),
        "state_dir": str(root / "state"),
        "etab_file": str(root / "sb" / "lib" / "etab"),
        "exportfs_command": [str(sandbox()), str(root / "sb")],
        "exportfs_timeout_seconds": 1800,
        "maintenance_file": str(root / "maintenance"),
        "interval_seconds": 60,
        "safety": {"confirmation_spacing_seconds": 0},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    (root / "projects.yaml").write_text(yaml.safe_dump(projs))
    write_inventory(root, inv_p, inv_i)
    return root / "config.yaml"


def write_inventory(root: Path, projects: list[Any], instances: list[Any]) -> None:
    text = yaml.dump(
        {"projects": projects, "instances": instances},
        Dumper=yaml.CSafeDumper,
        default_flow_style=None,
        sort_keys=False,
    )
    (root / "inventory.yaml").write_text(text)


def add_instance(root: Path, project: str, n: int) -> None:
    data = yaml.load((root / "inventory.yaml").read_text(), Loader=yaml.CSafeLoader)
    data["instances"].append(
        {
            "id": f"i-new-{n}",
            "name": f"{project}-new-{n}",
            "project": project,
            "status": "ACTIVE",
            "addresses": [address(10_000_000 + n)],
        }
    )
    write_inventory(root, data["projects"], data["instances"])


# --------------------------------------------------------------------------- measuring


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``cmd`` in a child process, with its own CPU time (wait4) and peak RSS.

    The peak RSS comes from ``/usr/bin/time``: a child forked from this (large) process
    keeps the high-water mark of its copy of it across exec, so wait4's figure would be
    this process's size, not the command's."""
    fd, rss_path = tempfile.mkstemp(prefix="perf-rss-")
    os.close(fd)
    if Path(TIME).exists():
        cmd = [TIME, "-f", "%M", "-o", rss_path, *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=False
    )
    if True:
        assert proc.stdout is not None and proc.stderr is not None
        out_chunks: list[bytes] = []
        err_chunks: list[bytes] = []

        def drain(stream: Any, into: list[bytes]) -> None:
            for chunk in iter(lambda: stream.read(65536), b""):
                into.append(chunk)

        threads = [
            threading.Thread(target=drain, args=(proc.stdout, out_chunks)),
            threading.Thread(target=drain, args=(proc.stderr, err_chunks)),
        ]
        for t in threads:
            t.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        for t in threads:
            t.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        rss_kb = float(Path(rss_path).read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        rss_kb = float("nan")  # /usr/bin/time missing or the command was killed
    os.unlink(rss_path)
    return {
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "rss_mb": rss_kb / 1024,
        "rc": proc.returncode,
        "out": b"".join(out_chunks).decode(errors="replace"),
        "err": b"".join(err_chunks).decode(errors="replace"),
    }


def daemon(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "nfs_exportd.cli", "--config", str(config), "--allow-root", *args]


EXPORTFS_TOOK = re.compile(r"exportfs -ra: ([0-9.]+) s")


def exportfs_seconds(err: str) -> float:
    """The time the sync's own ``exportfs -ra`` took (its debug line; 0 when none ran)."""
    return sum(float(m) for m in EXPORTFS_TOOK.findall(err))


IMPORT_TIME = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", re.M)


def import_seconds(err: str) -> float:
    """The imports of a process run with ``-X importtime``: the cumulative time of each
    top-level import (the nested ones are inside it)."""
    return sum(int(us) for us, _name in IMPORT_TIME.findall(err)) / 1e6


def must(res: dict[str, Any], what: str, ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
    if res["rc"] not in ok:
        raise RuntimeError(f"{what} exited {res['rc']}: {res['err'][-2000:]}")
    return res


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def exports_state(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every exports file and the etab: what "nothing written" means."""
    out = {}
    for p in sorted((root / "sb" / "exports.d").iterdir()):
        st = p.stat()
        out[p.name] = (st.st_mtime_ns, st.st_size)
    etab = root / "sb" / "lib" / "etab"
    st = etab.stat()
    out["etab"] = (st.st_mtime_ns, st.st_size)
    return out


def bare_exportfs(root: Path) -> float:
    res = run_child([str(sandbox()), str(root / "sb"), "-ra"])
    must(res, "exportfs -ra")
    return float(res["wall"])


# --------------------------------------------------------------------------- rows


def rows_pairs(work: Path, size: tuple[int, int, int], runs: int) -> list[dict[str, Any]]:
    projects, per, volumes = size
    pairs = projects * per * volumes
    log(f"pairs: building {projects} projects x {per} instances x {volumes} volumes = {pairs}")
    root = work / "pairs"
    config = write_lab(root, projects, per, volumes)
    log("pairs: the initial sync (not timed)")
    must(run_child(daemon(config, "sync")), "initial sync")
    nochange, floor_ra, untouched, not_run = [], [], True, True
    for _ in range(runs):
        before = exports_state(root)
        res = must(run_child(daemon(config, "sync")), "no-change sync")
        untouched &= exports_state(root) == before
        not_run &= "exportfs not run" in res["out"] and "0 files written" in res["out"]
        nochange.append(res["wall"])
        floor_ra.append(bare_exportfs(root))
        log(f"pairs: no-change sync {res['wall']:.2f} s, bare exportfs -ra {floor_ra[-1]:.2f} s")
    one, floor_one, own = [], [], []
    for i in range(runs):
        add_instance(root, "proj-00000", i)
        res = must(run_child(daemon(config, "-v", "sync")), "one-change sync")
        if "1 files written" not in res["out"] or "exportfs ran" not in res["out"]:
            raise RuntimeError(f"one-change sync did not write one file: {res['out']}")
        took = exportfs_seconds(res["err"])
        if not took:
            raise RuntimeError(f"one-change sync logged no exportfs time: {res['err'][-2000:]}")
        one.append(res["wall"])
        own.append(res["wall"] - took)
        floor_one.append(bare_exportfs(root))
        log(
            f"pairs: one-change sync {res['wall']:.2f} s (its exportfs -ra {took:.2f} s, its "
            f"own part {own[-1]:.2f} s), bare exportfs -ra {floor_one[-1]:.2f} s"
        )
    return [
        {
            "row": "nochange",
            "work": f"no-change `sync`, {pairs:,} pairs ({projects:,} projects x {per} "
            f"instances x {volumes} volumes, static inventory)",
            "floor": "bare `exportfs -ra` on the same files (nothing to do is the floor)",
            "floor_s": median(floor_ra),
            "now_s": median(nochange),
            "runs_now": nochange,
            "runs_floor": floor_ra,
            "no_file_written": untouched,
            "exportfs_not_run": not_run,
        },
        {
            "row": "onechange",
            "work": f"one new instance, {pairs:,} pairs",
            "floor": "bare `exportfs -ra` on the same files",
            "floor_s": median(floor_one),
            "now_s": median(one),
            "runs_now": one,
            "runs_floor": floor_one,
            # the daemon's own part: the sync's wall minus its exportfs -ra
            "own_s": median(own),
            "runs_own": own,
        },
    ]


LOAD_C = (
    "import sys, time, yaml\n"
    "t = time.process_time()\n"
    "yaml.load(open(sys.argv[1], encoding='utf-8').read(), Loader=yaml.CSafeLoader)\n"
    "print(time.process_time() - t)\n"
)


def row_plan(work: Path, name: str, size: tuple[int, int], runs: int) -> dict[str, Any]:
    projects, instances = size
    per = max(1, instances // projects)
    log(f"{name}: building {projects} projects / {projects * per} instances")
    root = work / name
    config = write_lab(root, projects, per, 2, nfs_every=10)
    mb = (root / "inventory.yaml").stat().st_size / 1e6
    now, cpu, rss, floor = [], [], [], []
    for _ in range(runs):
        res = must(run_child(daemon(config, "plan")), "plan")
        now.append(res["wall"])
        cpu.append(res["cpu"])
        rss.append(res["rss_mb"])
        fl = must(run_child([sys.executable, "-c", LOAD_C, str(root / "inventory.yaml")]), "load")
        floor.append(fl["wall"])
        log(
            f"{name}: plan {res['wall']:.2f} s ({res['cpu']:.2f} s CPU, {res['rss_mb']:.0f} MB)"
            f", libyaml C load (process) {fl['wall']:.2f} s"
        )
    return {
        "row": name,
        "work": f"`plan`, {projects:,} projects / {projects * per:,} instances ({mb:.1f} MB "
        "static inventory, nothing in force)",
        "floor": "a process loading the same file with libyaml's C loader",
        "floor_s": median(floor),
        "now_s": median(now),
        "cpu_s": median(cpu),
        "rss_mb": max(rss),
        "runs_now": now,
        "runs_floor": floor,
    }


CLOUD_CHILD = r"""
import gc, importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("nfs_exportd_bench_requests", sys.argv[1])
bench = importlib.util.module_from_spec(spec); sys.modules[spec.name] = bench
spec.loader.exec_module(bench)
import openstack, requests.adapters
openstack.config.OpenStackConfig().get_one("admin")
src = bench._source("all-projects")
snap = src.read(None)  # cycle 1: tokens, discovery
assert snap.problem is None, snap.problem
t0, c0 = time.perf_counter(), time.process_time()
snap = src.read(None)  # cycle 2, as every later cycle of run
gc.collect(0)  # the collection the read put off (it pauses the collector) is paid here
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
bodies = []
send = requests.adapters.HTTPAdapter.send
def keep(self, *a, **k):
    r = send(self, *a, **k); bodies.append(r.content); return r
requests.adapters.HTTPAdapter.send = keep
src.read(None)
c1 = time.process_time()
for b in bodies:
    json.loads(b)
decode = time.process_time() - c1
gc.disable()  # the decoding alone, without the collector scanning this process's heap
c1 = time.process_time()
for b in bodies:
    json.loads(b)
decode_nogc = time.process_time() - c1
import msgspec
full = msgspec.json.Decoder()
c1 = time.process_time()
for b in bodies:
    full.decode(b)
full_msgspec = time.process_time() - c1
gc.enable()
n = sum(len(v) for v in snap.instances.values())
print(json.dumps({"wall": wall, "cpu": cpu, "decode": decode, "decode_nogc": decode_nogc,
                  "full_msgspec": full_msgspec,
                  "requests": len(bodies),
                  "bytes": sum(map(len, bodies)), "instances": n}))
"""


def row_cloud(work: Path, size: tuple[int, int], runs: int) -> dict[str, Any]:
    projects, instances = size
    spec = importlib.util.spec_from_file_location(
        "nfs_exportd_bench_requests", HERE / "requests.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    clouds = work / "clouds.yaml"
    log(f"cloud: starting the simulator at {projects} projects / {instances} instances")
    cpu, decode, decode_gc, wall, facts = [], [], [], [], {}
    full_msgspec: list[float] = []
    with bench.sim_process(projects, instances, 0, clouds) as (_url, _pid):
        env = bench._child_env(clouds)
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        for _ in range(runs):
            res = must(
                run_child([sys.executable, "-c", CLOUD_CHILD, str(HERE / "requests.py")], env),
                "cloud read",
            )
            facts = json.loads(res["out"].strip().splitlines()[-1])
            cpu.append(facts["cpu"])
            wall.append(facts["wall"])
            decode.append(facts["decode_nogc"])
            decode_gc.append(facts["decode"])
            full_msgspec.append(facts["full_msgspec"])
            log(
                f"cloud: read {facts['wall']:.2f} s wall, {facts['cpu']:.2f} s CPU; JSON decode "
                f"of the same {facts['requests']} answers {facts['decode_nogc']:.2f} s "
                f"({facts['decode']:.2f} s with the collector on, as measured before; msgspec, "
                f"every field: {facts['full_msgspec']:.2f} s)"
            )
    return {
        "row": "cloud",
        "work": f"one all-projects cycle (warm), {projects:,} projects / "
        f"{facts.get('instances', instances):,} instances, 0 ms: the daemon's own CPU",
        "floor": f"JSON-decode (stdlib `json`, every field) of the same "
        f"{facts.get('requests')} responses ({facts.get('bytes', 0) / 1e6:.1f} MB), the "
        "cyclic collector off",
        "floor_s": median(decode),
        # the floor as the first round measured it: the collector on, scanning the heap
        "floor_gc_s": median(decode_gc),
        # for reference: the fastest whole decoding (msgspec, every field, as dicts)
        "full_msgspec_s": median(full_msgspec),
        "now_s": median(cpu),
        "wall_s": median(wall),
        "runs_now": cpu,
        "runs_floor": decode,
    }


def row_start(work: Path, runs: int) -> dict[str, Any]:
    """As installed: with bytecode (a package install compiles it; here it goes to a
    cache of this run, never into the tree), after one warm-up run."""
    config = work / "pairs" / "config.yaml"
    if not config.exists():  # --rows start alone: a small lab of its own
        config = write_lab(work / "start", 50, 10, 2)
        must(run_child(daemon(config, "sync")), "initial sync")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    check = [sys.executable, "-m", "nfs_exportd.cli", "--config", str(config), "check"]
    run_child(check, env)
    py, imp, chk = [], [], []
    for _ in range(max(runs, 5)):
        py.append(must(run_child([sys.executable, "-c", "pass"], env), "python")["wall"])
        imp.append(
            must(run_child([sys.executable, "-c", "import nfs_exportd.cli"], env), "import")["wall"]
        )
        res = run_child(check, env)
        must(res, "check", ok=(0, 1, 2))
        chk.append(res["wall"])
    log(f"start: python {median(py):.3f} s, import {median(imp):.3f} s, check {median(chk):.3f} s")
    # a one-shot sync (the static lab: no change), its imports apart from the rest: every
    # module is imported once per process, the first cycle of `run` pays the same
    sync = daemon(config, "sync")
    sync.insert(1, "-X")
    sync.insert(2, "importtime")
    sync_wall, sync_imp = [], []
    for _ in range(max(runs, 3)):
        res = must(run_child(sync, env), "sync", ok=(0, 1))
        sync_wall.append(res["wall"])
        sync_imp.append(import_seconds(res["err"]))

    # what the OpenStack source adds to that (openstacksdk and keystoneauth), once per process
    def imports(code: str) -> float:
        cmd = [sys.executable, "-X", "importtime", "-c", code]
        return import_seconds(must(run_child(cmd, env), "import")["err"])

    os_imp = [imports("import nfs_exportd.cli, openstack") - imports("import nfs_exportd.cli")
              for _ in range(3)]  # fmt: skip
    log(
        f"start: one-shot sync {median(sync_wall):.3f} s, of it imports {median(sync_imp):.3f} "
        f"s; the OpenStack source's imports {median(os_imp):.3f} s"
    )
    return {
        "row": "start",
        "work": "`check` (the Icinga plugin, every minute), whole process",
        "floor": "`python -c pass`",
        "floor_s": median(py),
        "now_s": median(chk),
        "import_s": median(imp),
        "sync_s": median(sync_wall),
        "sync_import_s": median(sync_imp),
        "openstack_import_s": median(os_imp),
        "runs_now": chk,
        "runs_floor": py,
    }


# --------------------------------------------------------------------------- report


def verdicts(rows: list[dict[str, Any]]) -> dict[str, bool]:
    out = {}
    for r in rows:
        if r["row"] in GOALS:
            out[r["row"]] = r["now_s"] / r["floor_s"] <= GOALS[r["row"]]
        if r["row"].startswith("plan"):
            out[r["row"] + "-rss"] = r["rss_mb"] < RSS_GOAL_MB
        if r["row"] == "start":
            out["start"] = r["now_s"] < CHECK_GOAL_S
        if r["row"] == "nochange":
            out["nochange-untouched"] = bool(r["no_file_written"] and r["exportfs_not_run"])
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| work | the floor | floor s | now s | now / floor | goal |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        goal = f"<= {GOALS[r['row']]}x" if r["row"] in GOALS else f"< {CHECK_GOAL_S} s"
        extra = ""
        if "rss_mb" in r:
            extra = f" ({r['cpu_s']:.2f} s CPU, {r['rss_mb']:.0f} MB peak RSS)"
        if "import_s" in r:
            extra = f" (importing nfs_exportd.cli: {r['import_s']:.3f} s)"
            if "sync_s" in r:
                extra += (
                    f"; a one-shot no-change sync {r['sync_s']:.3f} s, of it imports "
                    f"{r['sync_import_s']:.3f} s (the OpenStack source adds "
                    f"{r['openstack_import_s']:.3f} s)"
                )
        if "wall_s" in r:
            extra = f" ({r['wall_s']:.2f} s wall)"
        if "own_s" in r:
            extra = f" (own part {r['own_s']:.2f} s = {r['own_s'] / r['floor_s']:.2f}x)"
        ratio = r["now_s"] / r["floor_s"] if r["floor_s"] else float("inf")
        floor_extra = f" (collector on: {r['floor_gc_s']:.3f})" if "floor_gc_s" in r else ""
        if "full_msgspec_s" in r:
            floor_extra += f"; msgspec, every field: {r['full_msgspec_s']:.3f}"
        lines.append(
            f"| {r['work']} | {r['floor']} | {r['floor_s']:.3f}{floor_extra} | "
            f"{r['now_s']:.3f}{extra} | {ratio:.2f}x | {goal} |"
        )
    return "\n".join(lines)


def run_bench(
    sizes: dict[str, Any], runs: int, rows: set[str] | None = None, keep: Path | None = None
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="nfs-exportd-perf-")) if keep is None else keep
    out: list[dict[str, Any]] = []
    try:
        if rows is None or rows & {"nochange", "onechange"}:
            out += rows_pairs(work, sizes["pairs"], runs)
        for name in ("plan-10k", "plan-100k"):
            if rows is None or name in rows:
                out.append(row_plan(work, name, sizes[name], runs))
        if rows is None or "cloud" in rows:
            out.append(row_cloud(work, sizes["cloud"], runs))
        if rows is None or "start" in rows:
            out.append(row_start(work, runs))
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return {"rows": out, "verdicts": verdicts(out), "sizes": sizes, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", help="comma-separated subset of rows")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    runs = 1 if args.quick else args.runs
    rows = set(args.rows.split(",")) if args.rows else None
    result = run_bench(sizes, runs, rows)
    print(markdown(result["rows"]))
    print(json.dumps(result["verdicts"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
