"""``python -m nfs_exportd_sim.demo [DIR]`` (``make demo``): the main job on the bundled
example.

Starts the simulated cloud (``nfs_exportd_sim``) with the bundled example (10 projects, 40
instances in ``data/inventory.yaml``), writes a clouds.yaml for it, and runs nfs-exportd
through the real openstacksdk path: the plan, a first sync applied with the real exportfs
in a private mount namespace (exportfs-sandbox; the machine's own NFS state is never
touched), an instance created and one deleted, Keystone answering 401 (the daemon holds
and says why), then recovery until the removal is confirmed; the operator's view:
``check``, ``explain`` and ``history``; ``run`` with notifications: a real RabbitMQ, the
simulated cloud publishing what Nova and Neutron publish, an instance exported within
seconds (``notifications``); finally, as root, the data path (``datapath``):
VMs in network namespaces read from NFS-Ganesha and ask rpc.mountd, one allowed and one
refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from nfs_exportd import yamlsafe
from nfs_exportd.cli import main as cli

from ..cloud import SimCloud
from ..sandbox import SANDBOX
from .datapath import interrupts, raise_if_interrupted, show_data_path
from .notifications import show_notifications

DATA = Path(__file__).with_name("data")
ADMIN_PW = "demo-admin-secret"
OBSERVER_PW = "demo-observer-secret"


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def sandbox_works(root: Path) -> str | None:
    """None if the sandboxed exportfs can run here, else why not."""
    exportfs = os.environ.get("EXPORTFS_BIN", "/usr/sbin/exportfs")
    if not Path(exportfs).exists():
        return f"{exportfs} is not installed (Debian package nfs-kernel-server)"
    try:
        proc = subprocess.run(
            [str(SANDBOX), str(root / "sandbox"), "-v"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:
        return f"cannot run {SANDBOX}: {exc}"
    if proc.returncode != 0:
        return f"private mount namespace not available: {proc.stderr.strip()[:300]}"
    return None


def scenario_from_inventory(path: Path) -> dict[str, Any]:
    """The bundled static inventory as a simulated cloud (one region, two users)."""
    inv: Any = yamlsafe.loads(path.read_text(), str(path))
    names = [p["name"] for p in inv["projects"]]
    return {
        "regions": ["RegionOne"],
        "projects": [{"name": "admin"}]
        + [{"id": p["id"], "name": p["name"], "enabled": p["enabled"]} for p in inv["projects"]],
        "users": [
            {
                "name": "admin",
                "password": ADMIN_PW,
                "roles": [{"role": "admin", "project": "admin"}],
            },
            {
                "name": "observer",
                "password": OBSERVER_PW,
                "roles": [{"role": "reader", "system": "all"}]
                + [{"role": "reader", "project": n} for n in names],
            },
        ],
        "servers": [
            {"id": i["id"], "name": i["name"], "project": i["project"], "addresses": i["addresses"]}
            for i in inv["instances"]
        ],
    }


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str, config: Path | None = None) -> int:
        pre = ["--config", str(config or self.root / "config.yaml")]
        if os.geteuid() == 0 and args[0] in ("sync", "run"):
            pre.append("--allow-root")  # the demo runs in a scratch directory
        shown = ("--config", config.name, *args) if config else args
        print(f"$ nfs-exportd {' '.join(shown)}", flush=True)
        code = cli([*pre, *args])
        raise_if_interrupted()  # the CLI returns 1 on Ctrl-C: the demo stops
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"(exit {code})", flush=True)
        return code

    def show_files(self) -> None:
        for f in sorted((self.root / "sandbox" / "exports.d").glob("*.exports"))[:3]:
            print(f"--- {f.name}")
            print(f.read_text(), end="")
        print("... (first 3 files shown)")


def prepare(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    (root / "sandbox" / "exports.d").mkdir(parents=True)
    for name in ("config.yaml", "projects.yaml"):
        text = (DATA / name).read_text()
        text = text.replace("@ROOT@", str(root)).replace("@SANDBOX@", str(SANDBOX))
        (root / name).write_text(text)
    projects: Any = yamlsafe.loads((root / "projects.yaml").read_text(), "projects.yaml")
    for spec in projects.values():
        for target in spec["mounts"].values():
            if isinstance(target, str) and target.startswith("nfs-1."):
                Path(target.partition(":")[2]).mkdir(parents=True, exist_ok=True)
    (root / "srv" / "scratch").mkdir(parents=True, exist_ok=True)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "demo-run").resolve()
    prepare(root)
    demo = Demo(root)
    with SimCloud(scenario_from_inventory(DATA / "inventory.yaml")) as sim:
        clouds = sim.clouds_yaml(
            root / "clouds.yaml",
            {
                "demo-admin": {"user": "admin", "password": ADMIN_PW, "project": "admin"},
                "demo-observer-system": {
                    "user": "observer",
                    "password": OBSERVER_PW,
                    "system_scope": "all",
                },
            },
        )
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
        banner(
            f"nfs-exportd demo in {root}\n    simulated cloud at {sim.base_url} "
            "(Keystone, Nova, Neutron): 10 projects, 40 instances; this server is "
            "nfs-1.svc.example"
        )
        why_not = sandbox_works(root)
        banner("1. plan: what would change (read through openstacksdk; nothing is written)")
        demo.run("plan")
        if why_not:
            code = render_only(root, why_not)
            print(f"\ndata path skipped: it needs the real exportfs too ({why_not})")
            return code
        banner("2. sync: apply with the real exportfs (private mount namespace)")
        demo.run("sync")
        demo.show_files()
        etab = (root / "sandbox" / "lib" / "etab").read_text().splitlines()
        print(f"etab now holds {len(etab)} (path, client) pairs, e.g.\n  {etab[0]}")
        banner("3. sync again: nothing changed, nothing written, exportfs not run")
        demo.run("sync")
        banner(
            "4. the cloud changes: tools-worker-10 (172.16.0.19) created, tools-worker-3 deleted"
        )
        sim.create_server("tools-worker-10", "tools", addresses=["172.16.0.19"])
        sim.delete_server("i-0003")
        demo.run("sync")
        print("-> the new instance can mount at once; the removal waits for 3 confirmations")
        banner("5. control-plane trouble: Keystone answers 401 to every login, as in the upgrade")
        fault = sim.add_fault(
            service="identity", method="POST", path_regex="auth/tokens", status=401
        )
        demo.run("sync")
        print("-> held: nothing was removed, and the plan says why (unknown-inventory)")
        demo.run("status")
        banner("6. Keystone recovers: the pending removal is confirmed over the next cycles")
        sim.remove_fault(fault)
        demo.run("sync")
        demo.run("sync")
        print("--- tools.exports now reads")
        print((root / "sandbox" / "exports.d" / "tools.exports").read_text(), end="")
        banner("7. operate it: the Icinga check, explain an address, the journal")
        demo.run("check")
        demo.run("explain", "172.16.0.19")
        demo.run("explain", "172.16.0.12")
        demo.run("history")
        show_notifications(root, sim)
        code = show_data_path(root, sim, lambda config: demo.run("sync", config=config))
        counts = sim.counts()
        tokens = counts.pop("tokens_issued")
        print(f"\nthe simulated cloud served {sum(counts.values())} requests, {tokens} tokens")
    return code


def render_only(root: Path, why_not: str) -> int:
    banner(f"cannot apply with the real exportfs here: {why_not}")
    print("Rendering the files the first sync would write instead:")
    from nfs_exportd.config import load_config
    from nfs_exportd.cycle import load_served, make_plan, read_facts
    from nfs_exportd.exportsfile import render

    cfg = load_config(root / "config.yaml")
    served = load_served(cfg)
    plan = make_plan(cfg, served, read_facts(cfg, served, writing=False))
    for f in plan.files.values():
        if f is not None:
            print(f"--- {f.filename}\n{render(f)}", end="")
    return 0


def entry(argv: list[str]) -> int:
    """``main``, with Ctrl-C or SIGTERM ending it as an interruption (exit 130): what
    was started is torn down on the way out."""
    try:
        with interrupts():
            return main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted: the simulated cloud and the lab were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(entry(sys.argv[1:]))
