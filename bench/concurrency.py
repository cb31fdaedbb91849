"""The per-project concurrency default chosen by measurement (issue 15): one warm
per-project cycle (tokens kept, as in ``run``) at each ``inventory.concurrency``, against
the simulated cloud in its own process with latency added to every request.

    .venv/bin/python bench/concurrency.py [--projects 1000] [--instances 10000]
                                          [--latency-ms 20] [--values 1,2,4,8,16] [--runs 3]

Every generated project is in the interest set (1,000 NFS projects: 2 Nova listings each,
one per region).  One cold cycle takes the tokens; then, per value, ``--runs`` warm cycles
with the same source (its tokens), the median wall time printed as a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _requests_bench() -> Any:
    spec = importlib.util.spec_from_file_location(
        "nfs_exportd_bench_requests", HERE / "requests.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--projects", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=10000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--values", default="1,2,4,8,16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    bench = _requests_bench()
    values = [int(v) for v in args.values.split(",")]
    with tempfile.TemporaryDirectory(prefix="nfs-exportd-conc-") as tmp:
        clouds = Path(tmp) / "clouds.yaml"
        with bench.sim_process(args.projects, args.instances, 0, clouds) as (url, _pid):
            os.environ.update(bench._child_env(clouds))
            import openstack

            openstack.config.OpenStackConfig().get_one("observer")
            info = bench.control(url, "info")
            interest = frozenset(info["projects"])
            src = bench._source("per-project")
            bench.control(url, "latency", ms=args.latency_ms)
            t0 = time.perf_counter()
            facts = bench._snapshot_facts(src.read(interest), interest)
            print(f"cold cycle: {time.perf_counter() - t0:.2f} s {facts}", file=sys.stderr)
            rows = []
            for value in values:
                src.settings = dataclasses.replace(src.settings, concurrency=value)
                walls, cpus = [], []
                for _ in range(args.runs):
                    bench.control(url, "reset")
                    t0, c0 = time.perf_counter(), time.process_time()
                    facts = bench._snapshot_facts(src.read(interest), interest)
                    walls.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
                    counts = bench.split_counts(bench.control(url, "counts")["total"])
                    assert facts["complete"], facts
                    assert counts["tokens"] == 0, counts  # warm: no token taken
                print(f"concurrency {value}: {walls} s, {counts}", file=sys.stderr)
                rows.append(
                    {
                        "concurrency": value,
                        "wall_s": statistics.median(walls),
                        "cpu_s": statistics.median(cpus),
                        "runs": walls,
                        "requests": counts["total"],
                    }
                )
    print(f"| concurrency | warm cycle s ({args.latency_ms:g} ms) | CPU s | requests |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['requests']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
