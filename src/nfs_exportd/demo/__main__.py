"""``python -m nfs_exportd.demo [DIR]``: the main job on the bundled example.

Copies the example (config, projects file of 10 projects, inventory of 40 instances) into
a scratch directory, shows the plan, applies it with the real exportfs in a private mount
namespace (exportfs-sandbox; the machine's own NFS state is never touched), then adds an
instance and deletes one and shows the following cycles until the removal is confirmed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ..cli import main as cli

DATA = Path(__file__).with_name("data")
SANDBOX = Path(__file__).with_name("exportfs-sandbox")


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


def run(*args: str) -> int:
    pre = ["--config", str(ROOT / "config.yaml")]
    if os.geteuid() == 0 and args[0] in ("sync", "run"):
        pre.append("--allow-root")  # the demo runs in a scratch directory
    print(f"$ nfs-exportd {' '.join(args)}", flush=True)
    code = cli([*pre, *args])
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"(exit {code})", flush=True)
    return code


def show_files() -> None:
    for f in sorted((ROOT / "sandbox" / "exports.d").glob("*.exports"))[:4]:
        print(f"--- {f.name}")
        print(f.read_text(), end="")
    print("... (first 4 files shown)")


def edit_inventory(change: str) -> None:
    path = ROOT / "inventory.yaml"
    data = yaml.safe_load(path.read_text())
    if change == "add":
        data["instances"].append(
            {
                "id": "i-0041",
                "name": "tools-worker-10",
                "project": "tools",
                "status": "ACTIVE",
                "addresses": ["172.16.0.19"],
            }
        )
    else:
        data["instances"] = [i for i in data["instances"] if i["id"] != "i-0003"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


ROOT = Path("demo-run")


def main(argv: list[str]) -> int:
    global ROOT
    ROOT = Path(argv[0] if argv else "demo-run").resolve()
    if ROOT.exists():
        shutil.rmtree(ROOT)
    (ROOT / "sandbox" / "exports.d").mkdir(parents=True)
    for name in ("config.yaml", "projects.yaml", "inventory.yaml"):
        text = (DATA / name).read_text()
        text = text.replace("@ROOT@", str(ROOT)).replace("@SANDBOX@", str(SANDBOX))
        (ROOT / name).write_text(text)
    projects = yaml.safe_load((ROOT / "projects.yaml").read_text())
    for spec in projects.values():
        for target in spec["mounts"].values():
            if isinstance(target, str) and target.startswith("nfs-1."):
                Path(target.partition(":")[2]).mkdir(parents=True, exist_ok=True)
    (ROOT / "srv" / "scratch").mkdir(parents=True, exist_ok=True)

    banner(f"nfs-exportd demo in {ROOT}: 10 projects, 40 instances, server nfs-1.svc.example")
    why_not = sandbox_works(ROOT)
    banner("1. plan: what would change (nothing is written)")
    run("plan")
    if why_not:
        banner(f"cannot apply with the real exportfs here: {why_not}")
        print("Rendering the files the first sync would write instead:")
        from ..config import load_config
        from ..cycle import load_served, make_plan, read_facts
        from ..exportsfile import render

        cfg = load_config(ROOT / "config.yaml")
        served = load_served(cfg)
        plan = make_plan(cfg, served, read_facts(cfg, served, writing=False))
        for f in plan.files.values():
            if f is not None:
                print(f"--- {f.filename}\n{render(f)}", end="")
        return 0
    banner("2. sync: apply with the real exportfs (private mount namespace)")
    run("sync")
    show_files()
    etab = (ROOT / "sandbox" / "lib" / "etab").read_text().splitlines()
    print(f"etab now holds {len(etab)} (path, client) pairs, e.g.\n  {etab[0]}")
    banner("3. sync again: nothing changed, nothing written, exportfs not run")
    run("sync")
    banner("4. the cloud changes: tools-worker-10 (172.16.0.19) created, tools-worker-3 deleted")
    edit_inventory("add")
    edit_inventory("delete")
    run("plan")
    for n in (1, 2, 3):
        banner(f"5.{n} sync: the addition applies at once; the removal waits for 3 confirmations")
        run("sync")
    banner("6. the removal is confirmed; tools.exports now reads")
    print((ROOT / "sandbox" / "exports.d" / "tools.exports").read_text(), end="")
    banner("7. status")
    run("status")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
