"""bench/perf.py at its quick sizes: the table's shape and the facts it checks, never its
times (those are the README's, measured on one machine).

It runs the real exportfs in the sandbox and the simulated cloud in its own process, as
the full benchmark does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import require_exportfs

BENCH = Path(__file__).resolve().parents[1] / "bench" / "perf.py"
ROWS = ["nochange", "onechange", "plan-10k", "plan-100k", "cloud", "start"]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nfs_exportd_bench_perf", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    require_exportfs()
    bench = load_bench()
    out: dict[str, Any] = bench.run_bench(bench.QUICK, 1)
    out["markdown"] = bench.markdown(out["rows"])
    return out


def test_every_row_has_a_floor_and_a_now_measured_in_the_same_run(result: dict[str, Any]) -> None:
    assert [r["row"] for r in result["rows"]] == ROWS
    for r in result["rows"]:
        assert r["floor_s"] > 0 and r["now_s"] > 0, r
        assert len(r["runs_now"]) == len(r["runs_floor"]) >= 1, r
    table = result["markdown"].splitlines()
    assert table[0].startswith("| work | the floor | floor s | now s | now / floor | goal |")
    assert len(table) == 2 + len(ROWS)
    for line in table[2:]:
        assert line.count("|") == 7 and "x |" in line, line


def test_the_cloud_row_shows_the_fastest_whole_decoding_beside_the_floor(
    result: dict[str, Any],
) -> None:
    """The daemon decodes only the fields it reads: the table also shows what decoding
    every field with msgspec costs, so that the floor is not read as the only one."""
    (cloud,) = [r for r in result["rows"] if r["row"] == "cloud"]
    assert 0 < cloud["full_msgspec_s"] < cloud["floor_s"] * 5, cloud
    (line,) = [x for x in result["markdown"].splitlines() if "all-projects cycle" in x]
    assert f"msgspec, every field: {cloud['full_msgspec_s']:.3f}" in line


def test_a_no_change_sync_writes_nothing_and_runs_no_exportfs(result: dict[str, Any]) -> None:
    nochange = result["rows"][0]
    assert nochange["no_file_written"] and nochange["exportfs_not_run"], nochange
    assert result["verdicts"]["nochange-untouched"]


def test_the_plan_rows_report_cpu_and_peak_rss(result: dict[str, Any]) -> None:
    for r in result["rows"]:
        if r["row"].startswith("plan"):
            assert r["cpu_s"] > 0 and r["rss_mb"] > 10, r
    assert set(result["verdicts"]) >= {*ROWS, "plan-10k-rss", "plan-100k-rss"}


def test_the_one_change_row_reports_the_daemons_own_part(result: dict[str, Any]) -> None:
    one = result["rows"][1]
    assert one["row"] == "onechange"
    assert 0 < one["own_s"] < one["now_s"]  # the sync's wall minus its exportfs -ra
    assert "own part" in result["markdown"]


def test_the_start_row_measures_a_syncs_imports_apart(result: dict[str, Any]) -> None:
    start = result["rows"][-1]
    assert start["row"] == "start"
    assert 0 < start["sync_import_s"] < start["sync_s"], start  # -X importtime, summed
    assert start["openstack_import_s"] > 0.01, start  # openstacksdk is not nothing
