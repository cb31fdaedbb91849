"""``nfs-exportd-sim serve`` and ``nfs-exportd-sim gen`` (also ``python -m
nfs_exportd_sim``): the simulated cloud standalone, a program of its own so that no
command of the daemon loads the simulator.

``serve`` prints a clouds.yaml for the running cloud first (so a shell script can capture
it and point ``OS_CLIENT_CONFIG_FILE`` at it), then serves until SIGTERM or SIGINT.
``gen`` writes a generated scenario that ``serve --scenario`` (or a test) loads again.

``serve --keystone-url URL`` puts the simulated Nova and Neutron in front of a real
Keystone (``nfs_exportd_sim.external``): it prints the endpoints to register in that Keystone's
catalog instead of a clouds.yaml.  The service user that validates tokens is
``--keystone-user`` (a system reader), its password in ``$NFS_EXPORTD_SIM_KEYSTONE_PASSWORD``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from .cloud import SimCloud
from .external import ExternalKeystone, ServiceUser
from .generate import generate
from .scenario import Scenario, ScenarioError, dump_scenario, load_scenario

PASSWORD_ENV = "NFS_EXPORTD_SIM_KEYSTONE_PASSWORD"  # serve --keystone-url: the service user's
PROG = "nfs-exportd-sim"
# the daemon's meanings, kept here so that the simulator imports nothing from it
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """``serve`` and ``gen``."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="run or generate a simulated OpenStack cloud (Keystone, Nova, Neutron)",
    )
    sub = p.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve a scenario on 127.0.0.1 until SIGTERM/SIGINT")
    serve.add_argument("--scenario", type=Path, help="scenario file (YAML or JSON)")
    serve.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    serve.add_argument("--clouds-yaml", type=Path, help="also write the clouds.yaml here")
    serve.add_argument(
        "--projects", type=int, default=10, help="without --scenario: projects to generate"
    )
    serve.add_argument(
        "--instances", type=int, default=40, help="without --scenario: instances to generate"
    )
    serve.add_argument(
        "--keystone-url",
        help="validate tokens against this real Keystone (its /v3 URL) instead of simulating it",
    )
    serve.add_argument(
        "--keystone-user",
        default="nfs-sim",
        help="with --keystone-url: the service user (system reader) that validates tokens; "
        f"password in ${PASSWORD_ENV} (default user: %(default)s)",
    )
    gen = sub.add_parser("gen", help="generate a realistic scenario")
    gen.add_argument("--projects", type=int, required=True)
    gen.add_argument("--instances", type=int, required=True)
    gen.add_argument(
        "--regions", default="RegionOne,RegionTwo", help="comma-separated (default: %(default)s)"
    )
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    gen.add_argument(
        "--lab",
        type=Path,
        metavar="DIR",
        help="write DIR/scenario.yaml and a matching DIR/projects.yaml and DIR/config.yaml "
        "(served paths, exports and state under DIR, exportfs in its sandbox), so that "
        "trying nfs-exportd on a realistic cloud is: serve, then plan",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 for --help
        return int(exc.code or 0)
    try:
        if args.sim_command == "serve":
            return _serve(args)
        if args.sim_command == "gen":
            return _gen(args)
    except ScenarioError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{PROG}: unknown command {args.sim_command!r}", file=sys.stderr)
    return EXIT_USAGE


def entrypoint() -> None:
    """The ``nfs-exportd-sim`` console script."""
    sys.exit(main())


def _dump(data: Any) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=None, width=100)


def _gen(args: argparse.Namespace) -> int:
    regions = [r.strip() for r in str(args.regions).split(",") if r.strip()]
    try:
        scenario = generate(args.projects, args.instances, regions, seed=args.seed)
    except ValueError as e:
        print(f"{PROG} gen: {e}", file=sys.stderr)
        return EXIT_USAGE
    text = _dump(dump_scenario(scenario))
    if args.lab is not None:
        return _lab(args.lab, scenario, text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(
            f"wrote {args.output}: {len(scenario.projects)} projects, "
            f"{len(scenario.servers)} servers, regions {', '.join(regions)}",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    return EXIT_OK


VOLUMES = ("home", "project")  # each project's volumes in a generated lab


def _lab(root: Path, scenario: Scenario, text: str) -> int:
    """``gen --lab DIR``: the scenario and a server that serves it, ready to try."""
    from .sandbox import SANDBOX

    root = root.resolve()
    (root / "exports.d").mkdir(parents=True, exist_ok=True)
    (root / "scenario.yaml").write_text(text, encoding="utf-8")
    host = "nfs-1.svc.example"
    projects: dict[str, Any] = {}
    for gid, p in enumerate(sorted(scenario.projects, key=lambda p: p.name), start=50000):
        if p.name == "admin":
            continue
        mounts = {}
        for volume in VOLUMES:
            path = root / "srv" / p.name / volume
            path.mkdir(parents=True, exist_ok=True)
            mounts[volume] = f"{host}:{path}"
        projects[p.name] = {"gid": gid, "mounts": mounts}
    (root / "projects.yaml").write_text(_dump(projects), encoding="utf-8")
    config = {
        "projects_file": "projects.yaml",
        "serve": {"hosts": [host], "roots": [str(root / "srv")]},
        "inventory": {
            "source": "openstack",
            "cloud": "admin",
            "identity_cloud": "observer-system",
            "mode": "all-projects",
            "timeout_seconds": 10,
        },
        "exports_dir": str(root / "exports.d"),
        "etab_file": str(root / "lib" / "etab"),
        "state_dir": str(root / "state"),
        "exportfs_command": [str(SANDBOX), str(root)],
        "maintenance_file": str(root / "maintenance"),
    }
    (root / "config.yaml").write_text(
        "# written by nfs-exportd-sim gen --lab: a scratch server for the generated cloud\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    print(
        f"wrote {root}/scenario.yaml ({len(scenario.projects)} projects, "
        f"{len(scenario.servers)} servers), projects.yaml, config.yaml; try it:\n"
        f"  {PROG} serve --scenario {root}/scenario.yaml --clouds-yaml {root}/clouds.yaml &\n"
        f"  OS_CLIENT_CONFIG_FILE={root}/clouds.yaml nfs-exportd --config "
        f"{root}/config.yaml plan",
        file=sys.stderr,
    )
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    scenario: Scenario
    if args.scenario is not None:
        scenario = load_scenario(args.scenario)
    else:
        scenario = generate(args.projects, args.instances)
    external: ExternalKeystone | None = None
    if args.keystone_url:
        password = os.environ.get(PASSWORD_ENV)
        if not password or args.clouds_yaml is not None:
            print(
                f"{PROG} serve: --keystone-url needs ${PASSWORD_ENV} and no "
                "--clouds-yaml (clouds.yaml entries then point at the real Keystone)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        external = ExternalKeystone(args.keystone_url, ServiceUser(args.keystone_user, password))
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    cloud = SimCloud(scenario, port=args.port, external_keystone=external)
    try:
        url = cloud.start()
        doc: dict[str, Any]
        if external is not None:  # what to register in the real Keystone's catalog
            doc = {
                "endpoints": {
                    r: {"compute": cloud.compute_url(r), "network": cloud.network_url(r)}
                    for r in scenario.regions
                }
            }
        else:
            entries = cloud.default_entries()
            doc = {"clouds": {n: cloud.clouds_entry(**e) for n, e in entries.items()}}
        text = yaml.safe_dump(doc, sort_keys=False)
        if args.clouds_yaml is not None:
            args.clouds_yaml.write_text(text, encoding="utf-8")
        sys.stdout.write(text)
        sys.stdout.flush()
        print(
            f"simulated cloud at {url} (auth_url "
            f"{external.auth_url if external is not None else cloud.auth_url}), regions "
            f"{', '.join(scenario.regions)}; SIGTERM or Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        cloud.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return EXIT_OK
