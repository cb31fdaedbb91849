"""bench/requests.py at a tiny size: the counts it reports, not its times.

Every variant runs in its own subprocess against the simulator in its own process, as in
the full benchmark (the numbers in the README's "Performance" section).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "requests.py"
PROJECTS, INSTANCES = 20, 100


def load_bench() -> ModuleType:
    # not as "requests": that name belongs to the HTTP library keystoneauth imports
    spec = importlib.util.spec_from_file_location("nfs_exportd_bench_requests", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench()


@pytest.fixture(scope="module")
def result(bench: ModuleType) -> dict[str, Any]:
    out: dict[str, Any] = bench.run_bench(PROJECTS, INSTANCES, [0.0], progress=lambda _m: None)
    return out


def row(result: dict[str, Any], variant: str, cycle: int) -> dict[str, Any]:
    found = [r for r in result["rows"] if r["variant"] == variant and r["cycle"] == cycle]
    assert len(found) == 1, (variant, cycle, result["rows"])
    return found[0]


def test_every_snapshot_is_complete_and_sees_every_instance(result: dict[str, Any]) -> None:
    assert {(r["variant"], r["cycle"]) for r in result["rows"]} == {
        ("all-projects", 1),
        ("all-projects", 2),
        ("per-project", 1),
        ("per-project", 2),
        ("baseline", 1),
    }
    for r in result["rows"]:
        assert r["complete"], (r["variant"], r["cycle"], r["problem"])
        assert r["instances"] == INSTANCES, (r["variant"], r["cycle"])
        assert r["rss_kb"] > 0


def test_all_projects_stays_within_the_request_budget(
    bench: ModuleType, result: dict[str, Any]
) -> None:
    info = result["info"]
    assert info["projects"] == PROJECTS
    assert sum(info["servers"].values()) == INSTANCES
    limit = bench.budget(info)
    # ceil(servers/1000) + ceil(ports/1000) + a few, per region: one page each here
    assert limit == len(info["regions"]) * (2 + bench.FEW_PER_REGION)
    for cycle in (1, 2):
        counts = bench.split_counts(row(result, "all-projects", cycle)["counts"])
        assert counts["total"] <= limit, counts
        assert counts["servers"] == counts["ports"] == len(info["regions"])
    warm = bench.split_counts(row(result, "all-projects", 2)["counts"])
    assert warm["tokens"] == 0
    assert warm["total"] == 2 * len(info["regions"]) + 1  # pages + GET /v3/projects


def test_per_project_reuses_its_tokens(bench: ModuleType, result: dict[str, Any]) -> None:
    regions = len(result["info"]["regions"])
    cold = bench.split_counts(row(result, "per-project", 1)["counts"])
    warm = bench.split_counts(row(result, "per-project", 2)["counts"])
    assert cold["tokens"] == PROJECTS + 1  # one per project, one for the project listing
    assert warm["tokens"] == 0
    assert warm["servers"] == cold["servers"] == PROJECTS * regions


def test_baseline_takes_a_token_per_project(bench: ModuleType, result: dict[str, Any]) -> None:
    regions = len(result["info"]["regions"])
    counts = bench.split_counts(row(result, "baseline", 1)["counts"])
    assert counts["tokens"] == PROJECTS
    assert counts["servers"] == PROJECTS * regions  # one page per listing at this size


def test_report_renders(bench: ModuleType, result: dict[str, Any]) -> None:
    text = bench.markdown(result)
    assert "| 0 ms | baseline, cycle 1 |" in text
    checks = bench.checks(result)
    assert checks and all(checks.values()), checks
