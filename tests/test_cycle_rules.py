"""The fail-static rules end to end: CLI, static inventory, real exportfs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Lab
from nfs_exportd.memory import state

A, B, C = "172.16.0.5", "172.16.0.6", "172.16.0.7"


def _tools(lab: Lab, *ips: str) -> str:
    lab.add_project("tools", 50380)
    for n, ip in enumerate(ips):
        lab.add_instance(f"i-{n}", "tools", ip)
    return lab.srv("tools", "home")


def _plan(lab: Lab, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    capsys.readouterr()
    assert lab.cli("plan", "--json", *extra) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def _hold_reasons(plan: dict[str, object]) -> set[str]:
    holds = plan["holds"]
    assert isinstance(holds, list)
    return {h["reason"] for h in holds}


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_removal_after_exactly_n_confirmations(lab: Lab, n: int) -> None:
    lab.config["safety"]["removal_confirmations"] = n
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    lab.remove_instance("i-1")
    for _ in range(n - 1):
        assert lab.cli("sync") == 3
        assert (home, B) in lab.in_force()
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A)}


def test_incomplete_cycles_neither_count_nor_reset(lab: Lab) -> None:
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    lab.remove_instance("i-1")
    assert lab.cli("sync") == 3  # 1 of 3
    good = dict(lab.inventory)
    # The inventory file becomes unparsable for three cycles: nothing counts.
    for _ in range(3):
        lab.write()
        (lab.root / "inventory.yaml").write_text("projects: [unclosed\n")
        from nfs_exportd.cli import main

        pre = ["--config", str(lab.config_path)] + (["--allow-root"] if os.geteuid() == 0 else [])
        assert main([*pre, "sync"]) == 3
        assert (home, B) in lab.in_force()
    lab.inventory = good
    assert lab.cli("sync") == 3  # 2 of 3: the incomplete cycles did not reset the count
    assert (home, B) in lab.in_force()
    assert lab.cli("sync") == 0  # 3 of 3
    assert lab.in_force() == {(home, A)}


def test_pair_that_returns_resets_its_counter(lab: Lab) -> None:
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    gone = [i for i in lab.inventory["instances"] if i["id"] == "i-1"]
    lab.remove_instance("i-1")
    assert lab.cli("sync") == 3
    assert lab.cli("sync") == 3  # 2 of 3
    lab.inventory["instances"].extend(gone)
    assert lab.cli("sync") == 0  # back: counter reset
    lab.remove_instance("i-1")
    assert lab.cli("sync") == 3
    assert lab.cli("sync") == 3
    assert (home, B) in lab.in_force()
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A)}


def test_plan_never_writes_counters_or_files(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    lab.remove_instance("i-1")
    counters = lab.state_dir / state.COUNTERS
    before = counters.read_bytes()
    files_before = lab.files()
    for _ in range(5):
        plan = _plan(lab, capsys)
        assert _hold_reasons(plan) == {"pending-confirmation"}
    assert counters.read_bytes() == before
    assert lab.files() == files_before
    assert (home, B) in lab.in_force()


def test_maintenance_holds_removals_and_applies_additions(lab: Lab) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    (lab.root / "maintenance").write_text("upgrading cloudcontrol1003\n")
    lab.remove_instance("i-1")
    lab.add_instance("i-9", "tools", C)
    assert lab.cli("sync") == 3
    assert lab.in_force() == {(home, A), (home, B), (home, C)}
    (lab.root / "maintenance").unlink()
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A), (home, C)}


def test_freeze_changes_nothing(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    (lab.root / "maintenance").write_text("freeze\nnetwork work, T1234\n")
    lab.remove_instance("i-1")
    lab.add_instance("i-9", "tools", C)
    files = lab.files()
    assert lab.cli("sync") == 3
    assert lab.in_force() == {(home, A), (home, B)}
    assert lab.files() == files
    assert _hold_reasons(_plan(lab, capsys)) == {"freeze"}
    (lab.root / "maintenance").unlink()
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A), (home, C)}


def test_too_much_change_force_and_checksum(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.config["safety"].update(
        removal_confirmations=1, max_removal_fraction=0.25, min_removal_count=2
    )
    ips = [f"172.16.1.{i}" for i in range(1, 11)]
    home = _tools(lab, *ips)
    assert lab.cli("sync") == 0
    for n in range(5):  # half the instances vanish
        lab.remove_instance(f"i-{n}")
    plan = _plan(lab, capsys)
    assert _hold_reasons(plan) == {"too-much-change"}
    assert lab.cli("sync") == 3
    assert len(lab.in_force()) == 10
    forced = _plan(lab, capsys, "--force")
    assert _hold_reasons(forced) == set()
    assert forced["checksum"] != plan["checksum"]
    # a checksum of another plan is refused and changes nothing
    assert lab.cli("sync", "--force", "--plan-checksum", str(plan["checksum"])) == 1
    assert len(lab.in_force()) == 10
    assert lab.cli("sync", "--force", "--plan-checksum", str(forced["checksum"])) == 0
    assert lab.in_force() == {(home, ip) for ip in ips[5:]}


def test_force_never_releases_unknown_data(lab: Lab) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    lab.inventory["incomplete_projects"] = ["tools"]
    lab.inventory["instances"] = []
    assert lab.cli("sync", "--force") == 3
    assert lab.in_force() == {(home, A), (home, B)}


def test_project_without_instances_keeps_header_only_file(lab: Lab) -> None:
    lab.add_project("quarry", 50512)
    assert lab.cli("sync") == 0
    assert lab.files() == {
        "quarry.exports": "# nfs-exportd managed file, do not edit: project=quarry\n"
        "# keystone-id=id-quarry\n"
    }


def test_second_writer_is_refused_naming_the_pid(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    _tools(lab, A)
    lab.write()
    with state.StateLock(lab.state_dir):
        assert lab.cli("sync") == 1
    assert f"pid {os.getpid()}" in caplog.text
    assert lab.cli("sync") == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check only applies to root")
def test_writing_commands_refuse_root_without_allow_root(lab: Lab) -> None:
    _tools(lab, A)
    assert lab.cli("sync", allow_root=False) == 2
    assert lab.cli("run", allow_root=False) == 2
    assert lab.files() == {}
    assert lab.cli("plan", allow_root=False) == 0
    assert lab.cli("status", allow_root=False) == 0


def test_status_reports_last_cycle(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _tools(lab, A, B)
    assert lab.cli("sync") == 0
    lab.remove_instance("i-1")
    assert lab.cli("sync") == 3
    capsys.readouterr()
    assert lab.cli("status", "--json") == 0
    st = json.loads(capsys.readouterr().out)
    assert st["last_cycle"]["result"] == "held"
    assert st["holds_by_reason"] == {"pending-confirmation": 1}
    assert st["counts"]["pairs"] == 2
    assert st["inventory"]["complete"] is True
    assert lab.cli("status") == 0
    text = capsys.readouterr().out
    assert "pending-confirmation=1" in text


def test_state_corrupt_is_kept_aside_and_counting_restarts(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.config["safety"]["removal_confirmations"] = 2
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    lab.remove_instance("i-1")
    assert lab.cli("sync") == 3  # 1 of 2
    (lab.state_dir / state.COUNTERS).write_text("{not json")
    assert lab.cli("sync") == 3  # state-corrupt: counting restarts at 1
    assert (home, B) in lab.in_force()
    assert list(Path(lab.state_dir).glob("counters.json.corrupt-*"))
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A)}
