"""bench/datapath.py --quick, run as the README says (its own process, as root): the JSON
it writes has the shape the README's tables are made from, and both backends were
measured in both parts.  Counts and presence only: no assertion on a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab_fixtures import require_root

BENCH = Path(__file__).resolve().parents[1] / "bench" / "datapath.py"
EXPORTS, CLIENTS, RUNS, CHANGES = 100, 10, 2, 5  # QUICK in bench/datapath.py
KINDS = ("new-instance", "address-reused")
PHASES = ("sync_s", "startup_s", "read_s", "apply_s", "other_s", "observe_s", "total_s")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    require_root()
    out = tmp_path_factory.mktemp("bench") / "datapath.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"bench/datapath.py --quick exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text()), proc.stdout


def test_the_run_says_what_it_measured(run: tuple[dict[str, Any], str]) -> None:
    result, _ = run
    assert result["schema"] == 1 and result["quick"] is True
    assert result["size"] == {
        "exports": EXPORTS,
        "clients": CLIENTS,
        "runs": RUNS,
        "changes": CHANGES,
    }
    assert result["machine"]["cpus"] >= 1 and result["machine"]["nfs-ganesha"]


def test_apply_cost_measures_both_backends_and_both_floors_on_the_same_data(
    run: tuple[dict[str, Any], str],
) -> None:
    a = run[0]["apply"]
    assert (a["exports"], a["clients"], a["pairs"], a["runs"]) == (
        EXPORTS,
        CLIENTS,
        EXPORTS * CLIENTS,
        RUNS,
    )
    measured = {
        "floor_initial", "floor_change", "writes_initial", "exportfs_initial",
        "exportfs_change", "dbus_initial", "dbus_change", "ganesha_initial", "ganesha_change",
    }  # fmt: skip
    assert set(a["samples_s"]) == set(a["median_s"]) == measured
    for key, values in a["samples_s"].items():
        assert len(values) == RUNS and all(v > 0 for v in values), key
    assert set(a["ratios"]) == {
        "exportfs_initial/floor_initial", "exportfs_change/floor_change",
        "ganesha_initial/floor_initial", "ganesha_change/floor_change",
        "ganesha_initial/dbus_initial", "ganesha_change/dbus_change",
    }  # fmt: skip
    # what each backend put in force: every pair / every export, and one export changed
    assert a["in_force"] == {
        "exportfs_initial_pairs": EXPORTS * CLIENTS,
        "exportfs_change_files_written": 1,
        "exportfs_pairs": EXPORTS * CLIENTS,
        "dbus_floor_exports": EXPORTS,
        "ganesha_initial_exports": EXPORTS,
        "ganesha_exports": EXPORTS,
    }
    assert a["summaries"] == {
        "ganesha_initial": f"ganesha: {EXPORTS} added, 0 updated, 0 removed over DBus",
        "ganesha_change": "ganesha: 0 added, 1 updated, 0 removed over DBus",
    }


def test_every_change_reached_its_vm_on_both_backends(run: tuple[dict[str, Any], str]) -> None:
    lat = run[0]["latency"]
    assert lat["changes"] == CHANGES
    assert set(lat["backends"]) == {"exportfs", "ganesha"}
    for backend, b in lat["backends"].items():
        assert b["wrong_access"] == 0, backend
        for kind in KINDS:
            k = b[kind]
            where = (backend, kind)
            assert k["changes"] == k["observed"] == CHANGES, where
            # one sync per change, each read the cloud once and applied once
            assert k["read_calls"] == k["apply_calls"] == CHANGES, where
            assert set(k["stats_s"]) == set(PHASES), where
            for phase, st in k["stats_s"].items():
                assert set(st) == {"median", "p95", "min", "max"}, (where, phase)
            cols, rows = k["samples_ms"]["columns"], k["samples_ms"]["rows"]
            assert cols == ["vm", *(p.removesuffix("_s") for p in PHASES), "probes"]
            assert len(rows) == CHANGES and all(r[cols.index("observe")] is not None for r in rows)
            assert len({r[0] for r in rows}) == CHANGES  # a VM of its own per change
        removed = "1 to remove"
        assert removed not in b["new-instance"]["sync_summary"], backend
        assert removed in b["address-reused"]["sync_summary"], backend
    assert "exportfs ran" in lat["backends"]["exportfs"]["new-instance"]["sync_summary"]
    assert (
        "ganesha: 0 added, 1 updated" in lat["backends"]["ganesha"]["new-instance"]["sync_summary"]
    )
    assert lat["mountd_refusals"] >= CHANGES  # rpc.mountd itself refused the reused addresses


def test_the_table_has_a_row_per_backend_and_change(run: tuple[dict[str, Any], str]) -> None:
    text = run[1]
    for backend in ("exportfs", "ganesha"):
        assert f"| {backend} | new-instance (VM reads) |" in text
        assert f"| {backend} | address-reused (VM refused) |" in text
    assert "| Ganesha backend (`GaneshaBackend.apply`) |" in text
    assert "| floor: bare `exportfs -ra` (sandbox) |" in text
