"""bench/cycles.py at its quick sizes (100 projects, 10 with NFS, 0 ms): the table's shape
and each variant's requests, never its times (those are the README's, measured on one
machine).  Without ``--original`` the original's row is the re-implementation of its
pattern, and says so.

It runs the real exportfs in the sandbox and the simulated cloud in its own process, as
the full benchmark does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import require_exportfs

BENCH = Path(__file__).resolve().parents[1] / "bench" / "cycles.py"
NFS = 10
REGIONS = 2
# variant -> (tokens issued, Nova servers/detail requests) in the measured cycle
REQUESTS = {
    "sync": (2, 2),  # cold: the admin and the system reader; one page per region
    "run all-projects": (0, 2),  # warm: tokens reused
    "run per-project": (0, NFS * REGIONS),  # warm: one listing per project and region
    "reimpl": (NFS, NFS * REGIONS),  # the original's pattern: a token per NFS project
}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``bench/cycles.py --quick --out FILE``, as an operator runs it: exit 0 (every check
    met), the JSON it wrote and the table it printed."""
    require_exportfs()
    out = tmp_path_factory.mktemp("cycles") / "cycles.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", f"--out={out}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    data["markdown"] = proc.stdout
    return data


def test_every_variant_is_measured_whole(result: dict[str, Any]) -> None:
    assert [(r["nfs"], r["latency_ms"], r["variant"]) for r in result["rows"]] == [
        (NFS, 0.0, v) for v in REQUESTS
    ]
    for r in result["rows"]:
        assert r["exportfs_runs"] == 1 and r["exportfs_wall"] > 0, r
        assert r["wall"] > 0 and r["cpu"] > 0 and r["http"] > 0, r
        assert 0 < r["files"] <= NFS, r
        assert r["counts_stable"], r
    ours = [r["files"] for r in result["rows"] if r["variant"] != "reimpl"]
    assert ours == [NFS] * 3  # every served project has its file, instances or not


def test_each_variant_makes_the_requests_it_should(result: dict[str, Any]) -> None:
    got = {r["variant"]: (r["tokens"], r["servers_requests"]) for r in result["rows"]}
    assert got == REQUESTS
    warm = next(r for r in result["rows"] if r["variant"] == "run all-projects")
    assert warm["requests"] == 1 + 2 * REGIONS  # GET /projects + servers and ports pages
    assert all(result["checks"].values()), [k for k, ok in result["checks"].items() if not ok]


def test_the_table_labels_the_re_implementation(result: dict[str, Any]) -> None:
    table = result["markdown"].strip().splitlines()
    assert table[0].startswith("| NFS projects | latency | cycle | wall s | own CPU s |")
    rows = table[2 : 2 + len(REQUESTS)]
    for line in rows:
        assert line.count("|") == 13 and line.endswith("x |"), line
    assert "re-implementation of its pattern, not the original" in rows[-1]
    assert table[-1] == "checks: all met"
