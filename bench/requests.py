"""Requests, tokens, wall time and peak RSS of one full inventory read, against the
simulated cloud (issue 3, "Benchmark").

    .venv/bin/python bench/requests.py [--projects 1000] [--instances 10000]
                                       [--latency-ms 0,20] [--quick] [--sim process|thread]

Variants, each run in its own subprocess (so that each has its own peak RSS):

* ``all-projects``: ``OpenStackInventory`` in all-projects mode (clouds.yaml entry
  ``admin``, a project-scoped admin; Keystone through ``observer-system``).  Cycle 1 from
  a cold process, then a second cycle with the same source (tokens kept).
* ``per-project``: ``OpenStackInventory`` in per-project mode (``observer``, a reader in
  every project), interest = every generated project; cycle 1, then cycle 2 (warm tokens).
* ``baseline``: what the original WMCS daemon did (Wikimedia's nfs-exportd,
  operations/puppet modules/cloudnfs/files/nfs-exportd.py): for every project
  with NFS a fresh keystoneauth session (a new token) scoped to that project, then one
  Nova ``servers/detail`` listing per region through openstacksdk (objects per server,
  as novaclient built them), sequentially.

Requests are counted by the simulator, per endpoint.  The simulator runs in its own
process by default (``--sim process``); ``--sim thread`` runs it as a thread inside each
variant's process, sharing that process's GIL (and its RSS).  ``nfs-exportd-sim serve``
can neither add latency nor report counts, so the simulator process is this script's own
``_sim`` subcommand: a ``SimCloud`` with a small control API under ``/_bench/`` (counts,
reset, latency, cloud facts) that is neither counted nor delayed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is sys.path[0], and this file is called
# requests.py: keystoneauth's "import requests" would import it.  Drop that entry first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]

REGIONS = ("RegionOne", "RegionTwo")
VARIANTS = ("all-projects", "per-project", "baseline")
PAGE = 1000  # Nova max_limit and the Neutron page size the source asks for
FEW_PER_REGION = 3  # "a few" extra requests per region in the all-projects budget
SPEEDUP_TARGETS = {"all-projects": 30.0, "per-project": 5.0}
CLOUDS = {
    "admin": {"user": "admin", "project": "admin"},
    "observer": {"user": "observer", "project": None},  # project filled in: the first one
    "observer-system": {"user": "observer", "system_scope": "all"},
}
NO_PROXY = "127.0.0.1,localhost"
ORIGINAL_USER, ORIGINAL_PROJECT = "novaobserver", "observer"  # the original daemon's login


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- simulator


def make_sim(projects: int, instances: int, seed: int = 0, novaobserver: bool = False) -> Any:
    """A started SimCloud for ``generate(projects, instances)`` (2 regions) with a
    control API under ``/_bench/`` that is neither counted nor delayed.  ``novaobserver``
    adds what the original daemon logs in as (bench/cycles.py): a user ``novaobserver``
    (password OBSERVER_PASSWORD), reader in every project and in a project ``observer``,
    in a default domain named ``default``."""
    from nfs_exportd_sim import SimCloud, generate
    from nfs_exportd_sim.http import Response
    from nfs_exportd_sim.scenario import Domain, Project, RoleAssignment, User

    class BenchSim(SimCloud):  # type: ignore[misc]
        def _serve(
            self, method: str, raw_path: str, headers: dict[str, str], body: bytes
        ) -> tuple[Response, str] | None:
            if raw_path.startswith("/_bench/"):
                return Response(200, self.control(raw_path)), ""
            return super()._serve(method, raw_path, headers, body)

        def control(self, raw_path: str) -> dict[str, Any]:
            parts = urllib.parse.urlsplit(raw_path)
            what = parts.path.rsplit("/", 1)[1]
            query = dict(urllib.parse.parse_qsl(parts.query))
            if what == "counts":
                return {"total": self.counts(), "by_region": self.counts(by_region=True)}
            if what == "reset":
                self.reset_counts()
                return {}
            if what == "latency":
                self.clear_faults()
                ms = float(query.get("ms", "0"))
                if ms > 0:
                    self.add_fault(delay=ms / 1000.0)
                return {"latency_ms": ms}
            if what == "info":
                return self.info()
            return {"error": f"unknown control {what!r}"}

        def info(self) -> dict[str, Any]:
            with self.state.lock:
                d = self.state._derived()
                return {
                    "projects": sorted(
                        p.name for p in self.state.projects.values() if p.name not in hidden
                    ),
                    "regions": list(self.state.regions),
                    "servers": {r: len(v) for r, v in d["servers"].items()},
                    "ports": {r: len(v) for r, v in d["ports"].items()},
                }

    scenario = generate(projects, instances, regions=REGIONS, seed=seed)
    hidden = {"admin"}
    if novaobserver:
        from nfs_exportd_sim import OBSERVER_PASSWORD

        hidden.add(ORIGINAL_PROJECT)
        everyone = [*scenario.projects, Project(name=ORIGINAL_PROJECT)]
        roles = [RoleAssignment(role="reader", project=p.name) for p in everyone]
        user = User(name=ORIGINAL_USER, password=OBSERVER_PASSWORD, roles=roles)
        # the original names its domains "default" (Keystone on MySQL matches names
        # case-insensitively; the simulator exactly): name the default domain so
        domains = [Domain(id="default", name="default")]
        scenario = scenario.model_copy(
            update={"projects": everyone, "users": [*scenario.users, user], "domains": domains}
        )
    cloud = BenchSim(scenario)
    cloud.start()
    return cloud


def write_clouds_yaml(cloud: Any, path: Path) -> Path:
    from nfs_exportd_sim import ADMIN_PASSWORD, OBSERVER_PASSWORD

    first = cloud.info()["projects"][0]
    entries: dict[str, dict[str, Any]] = {}
    for name, spec in CLOUDS.items():
        entry = {k: v for k, v in spec.items() if v is not None}
        if name == "observer":
            entry["project"] = first
        entry["password"] = ADMIN_PASSWORD if spec["user"] == "admin" else OBSERVER_PASSWORD
        entries[name] = entry
    return Path(cloud.clouds_yaml(path, entries))


def control(base_url: str, what: str, **query: Any) -> dict[str, Any]:
    url = f"{base_url}/_bench/{what}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def sim_host_main(args: argparse.Namespace) -> int:
    """``_sim``: serve until SIGTERM; the first stdout line is {"base_url": ...}."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cloud = make_sim(args.projects, args.instances, args.seed, args.novaobserver)
    try:
        write_clouds_yaml(cloud, Path(args.clouds_yaml))
        cloud.info()  # build the derived views before the first timed request
        print(json.dumps({"base_url": cloud.base_url}), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cloud.stop()
    return 0


@contextlib.contextmanager
def sim_process(
    projects: int, instances: int, seed: int, clouds_yaml: Path, novaobserver: bool = False
) -> Iterator[tuple[str, int]]:
    """The simulator in its own process: (base_url, pid); stopped by its pid."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "_sim",
        f"--projects={projects}",
        f"--instances={instances}",
        f"--seed={seed}",
        f"--clouds-yaml={clouds_yaml}",
    ]
    if novaobserver:
        cmd.append("--novaobserver")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=_child_env(clouds_yaml))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"simulator process {proc.pid} exited ({proc.wait()})")
        yield json.loads(line)["base_url"], proc.pid
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _child_env(clouds_yaml: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["OS_CLIENT_CONFIG_FILE"] = str(clouds_yaml)
    env["NO_PROXY"] = env["no_proxy"] = NO_PROXY
    return env


# --------------------------------------------------------------------------- readers


def _source(mode: str) -> Any:
    from nfs_exportd.read.inventory.openstack import OpenStackInventory, OpenStackSettings

    cloud = "admin" if mode == "all-projects" else "observer"
    return OpenStackInventory(
        OpenStackSettings(clouds=(cloud,), identity_cloud="observer-system", mode=mode)
    )


def _snapshot_facts(snap: Any, wanted: frozenset[str]) -> dict[str, Any]:
    complete = (
        snap.problem is None
        and snap.listing_complete
        and all(snap.project_complete(p) for p in wanted)
    )
    insts = [i for p in wanted for i in snap.instances.get(p, ())]
    why = snap.problem or "; ".join(
        f"{p}: {w}" for p, w in sorted(snap.incomplete.items()) if p in wanted
    )
    return {
        "complete": complete,
        "instances": len(insts),
        "addresses": sum(len(i.addresses) for i in insts),
        "problem": why[:300] if not complete else "",
    }


def baseline_read(
    cloud: str, projects: list[str], ips: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The original daemon's read (Wikimedia's nfs-exportd.py): per project a fresh keystoneauth
    session (new token) scoped to it, then per region one Nova server listing through
    openstacksdk, sequentially; every IPv4 address (fixed and floating) is kept (and put in
    ``ips[project]`` when given: bench/cycles.py writes them)."""
    import ipaddress

    import openstack
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3
    from openstack.connection import Connection

    auth = openstack.config.OpenStackConfig().get_one(cloud).auth
    regions: list[str] | None = None
    instances = addresses = 0
    failed: list[str] = []
    for name in projects:
        kept = [] if ips is None else ips.setdefault(name, [])
        plugin = v3.Password(
            auth_url=auth["auth_url"],
            username=auth["username"],
            password=auth["password"],
            user_domain_id=auth.get("user_domain_id", "default"),
            project_name=name,
            project_domain_id=auth.get("project_domain_id", "default"),
        )
        sess = ks_session.Session(auth=plugin, timeout=30)
        try:
            if regions is None:  # the original listed regions once per cycle
                catalog = sess.auth.get_access(sess).service_catalog
                eps = catalog.get_endpoints(service_type="compute", interface="public")
                regions = sorted({e["region_id"] for e in eps.get("compute", [])})
            for region in regions:
                conn = Connection(session=sess, region_name=region)
                for server in conn.compute.servers(details=True):
                    instances += 1
                    for entries in (server.addresses or {}).values():
                        for entry in entries:
                            with contextlib.suppress(ValueError):
                                if ipaddress.ip_address(entry["addr"]).version == 4:
                                    addresses += 1
                                    kept.append(entry["addr"])
        except Exception as exc:  # the original died here; record and go on
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    return {
        "complete": not failed,
        "instances": instances,
        "addresses": addresses,  # IPv4 only, as the original kept
        "problem": "; ".join(failed[:3]),
    }


def _rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run_cycles(variant: str, base_url: str, prewarm: bool = True) -> list[dict[str, Any]]:
    """Run one variant's cycles in this process; one record per cycle."""
    import openstack

    info = control(base_url, "info")
    projects = list(info["projects"])
    interest = frozenset(projects)
    if prewarm:  # load auth plugins and config once, outside the timed cycles
        openstack.config.OpenStackConfig().get_one("admin")

    def cycle(label: int, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        control(base_url, "reset")
        t0 = time.perf_counter()
        facts = read()
        wall = time.perf_counter() - t0
        counts = control(base_url, "counts")
        return {
            "variant": variant,
            "cycle": label,
            "wall_s": wall,
            "rss_kb": _rss_kb(),
            "counts": counts["total"],
            "counts_by_region": counts["by_region"],
            **facts,
        }

    out: list[dict[str, Any]] = []
    if variant in ("all-projects", "per-project"):
        src = _source(variant)
        wanted = interest
        arg = None if variant == "all-projects" else interest
        for label in (1, 2):
            out.append(cycle(label, lambda: _snapshot_facts(src.read(arg), wanted)))
    elif variant == "baseline":
        out.append(cycle(1, lambda: baseline_read("observer", projects)))
    else:
        raise ValueError(f"unknown variant {variant!r}")
    for rec in out:
        rec["listings"] = _listings(variant, len(projects), len(info["regions"]))
    return out


def _listings(variant: str, projects: int, regions: int) -> int:
    if variant == "all-projects":
        return 2 * regions  # ports and servers in each region
    return projects * regions  # one Nova listing per project and region


def variant_main(args: argparse.Namespace) -> int:
    """``_variant``: one variant in this process; prints its records as JSON."""
    if args.base_url:
        records = run_cycles(args.variant, args.base_url)
    else:  # --sim thread: the simulator shares this process (and its GIL)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            cloud = make_sim(args.projects, args.instances, args.seed)
            try:
                clouds = write_clouds_yaml(cloud, Path(tmp) / "clouds.yaml")
                os.environ.update(_child_env(clouds))
                control(cloud.base_url, "latency", ms=args.latency_ms)
                records = run_cycles(args.variant, cloud.base_url)
            finally:
                cloud.stop()
    print(json.dumps(records))
    return 0


def run_variant(
    variant: str,
    clouds_yaml: Path,
    base_url: str | None,
    sim_args: tuple[int, int, int, float] | None = None,
    timeout: float = 3600,
) -> list[dict[str, Any]]:
    """Run one variant in a fresh subprocess; its cycle records."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_variant", variant]
    if base_url:
        cmd.append(f"--base-url={base_url}")
    else:
        assert sim_args is not None
        projects, instances, seed, latency = sim_args
        cmd += [
            f"--projects={projects}",
            f"--instances={instances}",
            f"--seed={seed}",
            f"--latency-ms={latency}",
        ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_child_env(clouds_yaml), timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    records: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return records


# --------------------------------------------------------------------------- the bench


def run_bench(
    projects: int,
    instances: int,
    latencies_ms: list[float],
    sim: str = "process",
    seed: int = 0,
    variants: tuple[str, ...] = VARIANTS,
    progress: Callable[[str], None] = log,
) -> dict[str, Any]:
    """Every variant at every latency; {"info": cloud facts, "rows": records}."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        clouds = Path(tmp) / "clouds.yaml"
        if sim == "process":
            with sim_process(projects, instances, seed, clouds) as (base_url, pid):
                progress(f"simulator: pid {pid} at {base_url}")
                info = control(base_url, "info")
                for latency in latencies_ms:
                    control(base_url, "latency", ms=latency)
                    for variant in variants:
                        progress(f"  {latency:g} ms {variant} ...")
                        for rec in run_variant(variant, clouds, base_url):
                            rows.append({**rec, "latency_ms": latency})
        elif sim == "thread":
            # facts of the same generated cloud, from a short-lived in-process simulator
            cloud = make_sim(projects, instances, seed)
            try:
                info = cloud.info()
            finally:
                cloud.stop()
            for latency in latencies_ms:
                for variant in variants:
                    progress(f"  {latency:g} ms {variant} (simulator in-process) ...")
                    sim_args = (projects, instances, seed, latency)
                    for rec in run_variant(variant, clouds, None, sim_args):
                        rows.append({**rec, "latency_ms": latency})
        else:
            raise ValueError("sim must be 'process' or 'thread'")
    info = {**info, "projects": len(info["projects"]), "sim": sim}
    return {"info": info, "rows": rows}


# --------------------------------------------------------------------------- report


def budget(info: dict[str, Any]) -> int:
    """ceil(servers/1000) + ceil(ports/1000) + a few, per region."""
    return sum(
        math.ceil(info["servers"][r] / PAGE) + math.ceil(info["ports"][r] / PAGE) + FEW_PER_REGION
        for r in info["regions"]
    )


def split_counts(counts: dict[str, int]) -> dict[str, int]:
    """Per-cycle requests in the table's columns."""
    total = sum(v for k, v in counts.items() if k != "tokens_issued")
    servers = sum(v for k, v in counts.items() if k.startswith("compute GET /servers"))
    ports = counts.get("network GET /ports", 0)
    tokens_post = counts.get("identity POST /auth/tokens", 0)
    projects = counts.get("identity GET /projects", 0)
    return {
        "tokens": counts.get("tokens_issued", 0),
        "token_posts": tokens_post,
        "projects": projects,
        "servers": servers,
        "ports": ports,
        "other": total - tokens_post - projects - servers - ports,
        "total": total,
    }


def row_label(row: dict[str, Any]) -> str:
    warm = " (warm)" if row["cycle"] > 1 else ""
    return f"{row['variant']}, cycle {row['cycle']}{warm}"


def find(rows: list[dict[str, Any]], latency: float, variant: str, cycle: int) -> dict[str, Any]:
    for r in rows:
        if r["latency_ms"] == latency and r["variant"] == variant and r["cycle"] == cycle:
            return r
    raise KeyError((latency, variant, cycle))


def markdown(result: dict[str, Any]) -> str:
    info, rows = result["info"], result["rows"]
    servers = sum(info["servers"].values())
    ports = sum(info["ports"].values())
    regions = ", ".join(f"{r} ({info['servers'][r]} servers)" for r in info["regions"])
    lines = [
        f"Cloud: {info['projects']} projects with NFS, {servers} servers, {ports} ports, "
        f"regions {regions}; "
        f"simulator: {'own process' if info['sim'] == 'process' else 'thread in the reader'}.",
        "",
        "| latency | variant (cycle) | tokens issued | Keystone GET /projects | "
        "Nova servers | Neutron ports | other | total requests | listings | pages/listing | "
        "wall s | peak RSS MiB | complete | instances |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        c = split_counts(r["counts"])
        pages = (c["servers"] + c["ports"]) / r["listings"]
        lines.append(
            f"| {r['latency_ms']:g} ms | {row_label(r)} | {c['tokens']} | {c['projects']} | "
            f"{c['servers']} | {c['ports']} | {c['other']} | {c['total']} | {r['listings']} | "
            f"{pages:.3f} | {r['wall_s']:.2f} | {r['rss_kb'] / 1024:.0f} | "
            f"{'yes' if r['complete'] else 'NO'} | {r['instances']} |"
        )
    lines += ["", "Requests per cycle by endpoint (first latency; all regions):", ""]
    first = rows[0]["latency_ms"] if rows else 0
    cols = [r for r in rows if r["latency_ms"] == first]
    keys = sorted({k for r in cols for k in r["counts"] if k != "tokens_issued"})
    lines.append("| endpoint | " + " | ".join(row_label(r) for r in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for k in keys:
        lines.append(f"| `{k}` | " + " | ".join(str(r["counts"].get(k, 0)) for r in cols) + " |")
    same = all(r["counts"] == find(rows, first, r["variant"], r["cycle"])["counts"] for r in rows)
    lines.append("")
    lines.append(
        "Counts are identical at every latency."
        if same
        else "Counts differ between latencies (see the main table)."
    )
    lines += ["", *derived(result)]
    return "\n".join(lines)


def _budget_text(info: dict[str, Any]) -> str:
    return " + ".join(
        f"({math.ceil(info['servers'][r] / PAGE)} + {math.ceil(info['ports'][r] / PAGE)} "
        f"+ {FEW_PER_REGION})"
        for r in info["regions"]
    )


def speedups(result: dict[str, Any], latency: float) -> dict[str, tuple[float, float, float]]:
    """variant -> (baseline s, variant s, speedup): all-projects cycle 1 (cold, tokens
    included) and per-project cycle 2 (warm tokens)."""
    rows = result["rows"]
    base = find(rows, latency, "baseline", 1)["wall_s"]
    out = {}
    for variant, cycle in (("all-projects", 1), ("per-project", 2)):
        t = find(rows, latency, variant, cycle)["wall_s"]
        out[variant] = (base, t, base / t)
    return out


def checks(result: dict[str, Any]) -> dict[str, bool]:
    """Every target as description -> met (speedups at 20 ms, when measured)."""
    info, rows = result["info"], result["rows"]
    out: dict[str, bool] = {}
    limit = budget(info)
    for r in rows:
        key = f"{r['latency_ms']:g} ms {row_label(r)}"
        out[f"{key}: complete"] = bool(r["complete"])
        if r["variant"] == "all-projects":
            out[f"{key}: requests <= {limit}"] = split_counts(r["counts"])["total"] <= limit
        if r["variant"] == "per-project" and r["cycle"] > 1:
            out[f"{key}: tokens issued == 0"] = r["counts"].get("tokens_issued", 0) == 0
    with contextlib.suppress(KeyError):
        for variant, (_b, _t, x) in speedups(result, 20).items():
            target = SPEEDUP_TARGETS[variant]
            out[f"20 ms {variant}: speedup >= {target:g}x"] = x >= target
    return out


def derived(result: dict[str, Any]) -> list[str]:
    info, rows = result["info"], result["rows"]
    limit = budget(info)
    out = ["Derived (targets from issue 3):", ""]
    for r in rows:
        if r["variant"] != "all-projects":
            continue
        c = split_counts(r["counts"])
        pages = c["servers"] + c["ports"]
        out.append(
            f"- {r['latency_ms']:g} ms, {row_label(r)}: {c['total']} requests = {pages} listing "
            f"pages + {c['total'] - pages} other; budget ceil(servers/1000) + "
            f"ceil(ports/1000) + {FEW_PER_REGION} per region = {_budget_text(info)} = {limit}: "
            f"{'met' if c['total'] <= limit else 'NOT met'}"
        )
    for latency in sorted({r["latency_ms"] for r in rows}):
        with contextlib.suppress(KeyError):
            for variant, (base, t, x) in speedups(result, latency).items():
                cycle = "cycle 1 (cold)" if variant == "all-projects" else "cycle 2 (warm)"
                target = SPEEDUP_TARGETS[variant]
                verdict = ""
                if latency == 20:
                    verdict = f" (target >= {target:g}x: {'met' if x >= target else 'NOT met'})"
                out.append(
                    f"- {latency:g} ms, speedup of {variant} {cycle} over the baseline (the "
                    "read alone, against the re-implementation; whole cycles: bench/cycles.py): "
                    f"{base:.2f} s / {t:.2f} s = {x:.1f}x{verdict}"
                )
        with contextlib.suppress(KeyError):
            warm = find(rows, latency, "per-project", 2)
            tokens = warm["counts"].get("tokens_issued", 0)
            out.append(
                f"- {latency:g} ms, per-project cycle 2 (warm) tokens issued: {tokens} "
                f"(target 0: {'met' if tokens == 0 else 'NOT met'})"
            )
    complete = all(r["complete"] for r in rows)
    out.append(f"- every snapshot complete: {'yes' if complete else 'NO'}")
    failed = [k for k, ok in checks(result).items() if not ok]
    out.append(f"- targets: {'all met' if not failed else 'NOT met: ' + '; '.join(failed)}")
    return out


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command")
    sim = sub.add_parser("_sim", help="(internal) serve the simulator until SIGTERM")
    var = sub.add_parser("_variant", help="(internal) run one variant, print JSON")
    var.add_argument("variant", choices=VARIANTS)
    var.add_argument("--base-url")
    var.add_argument("--latency-ms", type=float, default=0.0)
    for q in (sim, var):
        q.add_argument("--projects", type=int, default=1000)
        q.add_argument("--instances", type=int, default=10000)
        q.add_argument("--seed", type=int, default=0)
    sim.add_argument("--clouds-yaml", required=True)
    sim.add_argument("--novaobserver", action="store_true", help="add the original's login")
    p.add_argument("--projects", type=int, default=1000)
    p.add_argument("--instances", type=int, default=10000)
    p.add_argument("--latency-ms", default="0,20", help="comma-separated (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="100 projects, 1,000 instances")
    p.add_argument("--sim", choices=("process", "thread"), default="process")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the raw results here")
    args = p.parse_args(argv)
    if args.command == "_sim":
        return sim_host_main(args)
    if args.command == "_variant":
        return variant_main(args)
    if args.quick:
        args.projects, args.instances = 100, 1000
    latencies = [float(x) for x in str(args.latency_ms).split(",") if x.strip()]
    variants = tuple(v.strip() for v in str(args.variants).split(",") if v.strip())
    t0 = time.perf_counter()
    result = run_bench(args.projects, args.instances, latencies, args.sim, args.seed, variants)
    result["info"]["bench_seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(markdown(result))
    return 0 if all(checks(result).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
