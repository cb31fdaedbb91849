"""``nfs-exportd check``: the Nagios/Icinga plugin.

The verdict is a pure function (``check.evaluate``) of the saved status, the maintenance
flag's age and the thresholds: every state is tested there first, then through the CLI
against a lab with the real exportfs (exit codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Lab
from nfs_exportd.memory import status as status_file
from nfs_exportd.memory.status import Counts, LastCycle, Status, Unjournaled
from nfs_exportd.ops import check
from nfs_exportd.ops.check import CRITICAL, OK, UNKNOWN, WARNING, MaintenanceFlag, Thresholds

NOW = 1_700_000_000.0
TH = Thresholds(warning_after=900, critical_after=3600, maintenance_max_age=86400)


def status(
    *,
    result: str = "ok",
    finished_ago: float = 30,
    complete_ago: float | None = 30,
    first_ago: float | None = 86400 * 7,
    held: dict[str, int] | None = None,
    held_since_ago: float | None = None,
    message: str = "sync ok: nothing to do",
    counts: Counts | None = None,
) -> Status:
    """The status record cycle.py saves (status.Status), with times relative to NOW."""
    return Status(
        first_cycle=NOW - first_ago if first_ago is not None else None,
        last_cycle=LastCycle(
            started=NOW - finished_ago - 1,
            finished=NOW - finished_ago,
            result=result,  # type: ignore[arg-type]  # checked by the model at run time
            message=message,
        ),
        holds_by_reason=held or {},
        held_since=NOW - held_since_ago if held_since_ago is not None else None,
        counts=counts or Counts(files=2, projects=2, exports=3, pairs=5, clients=4),
        last_complete_inventory=NOW - complete_ago if complete_ago is not None else None,
    )


def evaluate(st: Status | None, flag: MaintenanceFlag | None = None) -> check.Verdict:
    return check.evaluate(st, flag, TH, NOW)


# ---------------------------------------------------------------------------- pure


def test_in_sync_is_ok_with_perfdata() -> None:
    v = evaluate(status())
    assert v.code == OK
    assert v.text == "in sync: 2 projects, 5 pairs"
    perf = v.perfdata.split()
    assert perf == [
        "last_cycle_age=30s;900",
        "complete_inventory_age=30s;;3600",
        "holds=0",
        "projects=2",
        "exports=3",
        "pairs=5",
        "clients=4",
    ]
    assert v.line() == f"NFS-EXPORTD OK - in sync: 2 projects, 5 pairs | {v.perfdata}"


def test_pending_confirmation_shorter_than_warning_after_is_ok() -> None:
    v = evaluate(status(held={"pending-confirmation": 2}, held_since_ago=300))
    assert v.code == OK
    assert "in sync" in v.text
    assert "pending: pending-confirmation=2" in v.text
    assert "holds=2" in v.perfdata.split()


@pytest.mark.parametrize(
    ("since", "code"),
    [(899, OK), (901, WARNING), (3 * 3600, WARNING)],
)
def test_held_longer_than_warning_after_warns(since: float, code: int) -> None:
    v = evaluate(status(held={"unknown-project": 1}, held_since_ago=since))
    assert v.code == code, v.line()
    if code == WARNING:
        assert v.text.startswith("held for ")
        assert "unknown-project=1" in v.text
        assert v.line().startswith("NFS-EXPORTD WARNING - held for ")


def test_held_since_missing_never_warns_about_holds() -> None:
    # a status without held_since (e.g. the first held cycle) does not count as "held long"
    v = evaluate(status(held={"unknown-project": 1}, held_since_ago=None))
    assert v.code == OK


def test_rollback_hold_warns_and_says_how_to_release() -> None:
    v = evaluate(status(held={"rollback-hold": 1}, held_since_ago=2 * 3600))
    assert v.code == WARNING
    assert "rollback-hold=1" in v.text
    assert "nfs-exportd release" in v.text


def test_quiet_holds_do_not_warn_however_long() -> None:
    # maintenance/freeze holds are planned work: the flag's own age decides (below)
    v = evaluate(status(held={"maintenance": 4, "freeze": 1}, held_since_ago=10 * 3600))
    assert v.code == OK
    assert "pending: freeze=1, maintenance=4" in v.text


def test_stale_last_cycle_warns() -> None:
    v = evaluate(status(finished_ago=1000, complete_ago=1000))
    assert v.code == WARNING
    assert "last cycle 16m ago" in v.text
    assert "last_cycle_age=1000s;900" in v.perfdata.split()


def test_no_complete_inventory_for_longer_than_critical_after_is_critical() -> None:
    st = status(complete_ago=4000, held={"unknown-inventory": 1}, held_since_ago=4000)
    v = evaluate(st)
    assert v.code == CRITICAL
    assert v.text.startswith("no complete inventory for 66m")
    assert "held for 66m: unknown-inventory=1" in v.text  # the warning is still shown
    assert "complete_inventory_age=4000s;;3600" in v.perfdata.split()
    # below critical_after only the hold warns
    v = evaluate(status(complete_ago=1800, held={"unknown-inventory": 1}, held_since_ago=1800))
    assert v.code == WARNING
    assert "no complete inventory" not in v.text


@pytest.mark.parametrize(
    ("first_ago", "code", "text"),
    [
        (300, OK, None),
        (1200, WARNING, "no complete inventory in 20m"),
        (4000, CRITICAL, "no complete inventory in 66m"),
    ],
)
def test_never_complete_is_measured_from_the_first_cycle(
    first_ago: float, code: int, text: str | None
) -> None:
    st = status(complete_ago=None, first_ago=first_ago, held={"unknown-inventory": 1})
    v = evaluate(st)
    assert v.code == code, v.line()
    if text is not None:
        assert text in v.text
    # no complete inventory ever: the age is undetermined ("U"), not a number
    assert any(p.startswith("complete_inventory_age=U") for p in v.perfdata.split())


def test_never_complete_without_first_cycle_counts_from_the_last_cycle() -> None:
    st = status(complete_ago=None, finished_ago=10, first_ago=None)
    assert evaluate(st).code == OK


def test_failed_last_cycle_is_critical() -> None:
    st = status(
        result="error",
        message="exports_dir /etc/exports.d does not exist",
        held={"unknown-project": 1},
        held_since_ago=5000,
    )
    v = evaluate(st)
    assert v.code == CRITICAL
    assert v.text.startswith("last cycle failed: exports_dir /etc/exports.d does not exist")
    assert "held for" not in v.text  # the failure is the news, not the old holds


UNJOURNALED = Unjournaled(
    since=NOW - 300,
    message="the journal could not be written: state/history: No space left on device",
)


def test_unjournaled_change_before_any_cycle_is_critical_naming_it() -> None:
    """An adopt at the switch-over whose journal failed: status.json holds only that."""
    v = evaluate(Status(unjournaled=UNJOURNALED))
    assert v.code == CRITICAL, v.line()
    assert v.text == (
        "a change in force is not in the journal (for 5m): the journal could not be "
        "written: state/history: No space left on device; free space in state_dir, then "
        "run sync: the journal catches up"
    )
    assert v.perfdata.split()[0] == "last_cycle_age=U;900"


def test_unjournaled_change_after_a_good_cycle_is_critical() -> None:
    """A rollback (or adopt) after a good sync could not journal its change."""
    v = evaluate(status().model_copy(update={"unjournaled": UNJOURNALED}))
    assert v.code == CRITICAL, v.line()
    assert v.text.startswith("a change in force is not in the journal (for 5m): ")


def test_unjournaled_change_of_a_failed_sync_is_said_once() -> None:
    msg = f"the change was applied and verified, but it is not recorded: {UNJOURNALED.message}"
    st = status(result="error", message=msg).model_copy(update={"unjournaled": UNJOURNALED})
    v = evaluate(st)
    assert v.code == CRITICAL
    assert v.text.count("No space left on device") == 1, v.text
    other = status(result="error", message="exports_dir is gone")  # a later, other failure
    v = evaluate(other.model_copy(update={"unjournaled": UNJOURNALED}))
    assert "not in the journal" in v.text and "exports_dir is gone" in v.text, v.text


def test_fresh_maintenance_masks_an_unjournaled_change_and_says_so() -> None:
    v = evaluate(Status(unjournaled=UNJOURNALED), MaintenanceFlag(age=60, reason=""))
    assert v.code == OK
    assert v.text.startswith("maintenance for 60s (would be CRITICAL); a change in force")


def test_fresh_maintenance_is_ok_with_its_reason_even_when_critical() -> None:
    st = status(result="error", message="boom", complete_ago=5 * 3600)
    flag = MaintenanceFlag(age=600, reason="freeze: storage upgrade CHG-42")
    v = evaluate(st, flag)
    assert v.code == OK
    assert v.text.startswith("maintenance for 10m: freeze: storage upgrade CHG-42")
    assert "(would be CRITICAL)" in v.text
    assert "last cycle failed: boom" in v.text  # still said, just not paged
    assert v.line().startswith("NFS-EXPORTD OK - maintenance for 10m")


def test_fresh_maintenance_on_a_healthy_server_says_maintenance_only() -> None:
    v = evaluate(status(held={"maintenance": 2}), MaintenanceFlag(age=60, reason=""))
    assert v.code == OK
    assert v.text == "maintenance for 60s"
    assert "would be" not in v.text


@pytest.mark.parametrize(
    ("st", "code"),
    [
        (status(), WARNING),  # healthy otherwise: the forgotten flag warns
        (status(finished_ago=1000, complete_ago=1000), WARNING),
        (status(result="error", message="boom"), CRITICAL),  # worse stays worse
    ],
)
def test_maintenance_flag_older_than_max_age_warns(st: Status, code: int) -> None:
    flag = MaintenanceFlag(age=2 * 86400 + 3600, reason="hold for the switch upgrade")
    v = evaluate(st, flag)
    assert v.code == code, v.line()
    assert v.code >= WARNING  # forgotten flags are never OK
    assert v.text.startswith("maintenance flag set for 2d1h, longer than")
    assert "maintenance.max_age_seconds (24h00m)" in v.text
    assert "remove the flag" in v.text
    assert "hold for the switch upgrade" in v.text


def test_maintenance_flag_exactly_max_age_is_still_fresh() -> None:
    v = evaluate(status(), MaintenanceFlag(age=86400, reason="x"))
    assert v.code == OK


@pytest.mark.parametrize(
    "st",
    [
        None,
        Status(),
        Status.model_validate_json('{"schema": 1}'),
        Status.model_validate_json('{"schema": 1, "last_cycle": null}'),
    ],
)
def test_no_status_is_unknown(st: Status | None) -> None:
    v = evaluate(st)
    assert v.code == UNKNOWN
    assert v.line().startswith("NFS-EXPORTD UNKNOWN - no cycle has run yet")
    assert "|" not in v.line()


def test_no_status_is_unknown_even_in_maintenance() -> None:
    assert evaluate(None, MaintenanceFlag(age=10, reason="freeze")).code == UNKNOWN


# ---------------------------------------------------------------------------- CLI


def _check(lab: Lab, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = lab.cli("check")
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1, out  # a plugin prints exactly one line
    return code, lines[0]


def _synced_lab(lab: Lab) -> None:
    lab.add_project("tools", 50380)
    lab.add_project("paws", 50381)
    lab.add_instance("i-1", "tools", "172.16.0.5", "fd00::5")
    lab.add_instance("i-2", "paws", "172.16.0.9")
    assert lab.cli("sync") == 0


def _edit_status(lab: Lab, **fields: Any) -> None:
    """Age the saved status through its one reader and writer (status.load/save)."""
    st = status_file.load(lab.state_dir)
    assert st is not None and st.last_cycle is not None
    if "finished" in fields:
        last = st.last_cycle.model_copy(update={"finished": fields.pop("finished")})
        fields["last_cycle"] = last
    status_file.save(lab.state_dir, st.model_copy(update=fields))


def test_cli_ok_after_a_good_sync(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _synced_lab(lab)
    code, line = _check(lab, capsys)
    assert code == 0, line
    assert line.startswith("NFS-EXPORTD OK - in sync: 2 projects, 3 pairs | "), line
    perf = line.split(" | ", 1)[1].split()
    assert "pairs=3" in perf
    assert "projects=2" in perf
    assert "holds=0" in perf


def test_cli_bad_config_is_unknown_naming_the_key(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.config["no_such_key"] = 1
    code, line = _check(lab, capsys)
    assert code == 3, line
    assert line.startswith("NFS-EXPORTD UNKNOWN - "), line
    assert "no_such_key" in line
    assert "unknown key" in line


def test_cli_missing_config_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nfs_exportd.cli import main

    code = main(["--config", str(tmp_path / "nope.yaml"), "check"])
    line = capsys.readouterr().out.strip()
    assert code == 3
    assert line.startswith("NFS-EXPORTD UNKNOWN - ")
    assert "nope.yaml" in line


def test_cli_no_cycle_yet_is_unknown(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.add_project("tools", 50380)
    code, line = _check(lab, capsys)
    assert code == 3, line
    assert line.startswith("NFS-EXPORTD UNKNOWN - no cycle has run yet"), line


def test_cli_unreadable_status_is_unknown(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _synced_lab(lab)
    (lab.state_dir / "status.json").write_text('{"schema": 1, "last_cy')
    code, line = _check(lab, capsys)
    assert code == 3, line
    assert line.startswith("NFS-EXPORTD UNKNOWN - "), line
    assert "status.json" in line


def test_cli_fresh_maintenance_is_ok_and_says_so(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _synced_lab(lab)
    (lab.root / "maintenance").write_text("freeze: network failover drill\n")
    code, line = _check(lab, capsys)
    assert code == 0, line
    assert line.startswith("NFS-EXPORTD OK - maintenance for "), line
    assert "freeze: network failover drill" in line


def test_cli_forgotten_maintenance_flag_warns(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _synced_lab(lab)
    flag = lab.root / "maintenance"
    flag.write_text("storage upgrade\n")
    two_days_ago = time.time() - 2 * 86400
    os.utime(flag, (two_days_ago, two_days_ago))
    code, line = _check(lab, capsys)
    assert code == 1, line
    assert line.startswith("NFS-EXPORTD WARNING - maintenance flag set for 2d"), line
    assert "maintenance.max_age_seconds" in line
    # the threshold is configurable
    lab.config["maintenance"] = {"max_age_seconds": 3 * 86400}
    code, line = _check(lab, capsys)
    assert code == 0, line


def test_cli_failed_last_cycle_is_critical(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _synced_lab(lab)
    lab.exports_dir.rename(lab.root / "moved")
    assert lab.cli("sync") == 1
    code, line = _check(lab, capsys)
    assert code == 2, line
    assert line.startswith("NFS-EXPORTD CRITICAL - last cycle failed: "), line
    assert "exports_dir" in line
    # the counts still describe what is in force
    assert "pairs=3" in line.split(" | ", 1)[1].split()


def test_cli_aged_complete_inventory_is_critical(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _synced_lab(lab)
    lab.config["check"] = {"warning_after_seconds": 600, "critical_after_seconds": 3600}
    _edit_status(lab, last_complete_inventory=time.time() - 7200)
    code, line = _check(lab, capsys)
    assert code == 2, line
    assert "no complete inventory for 2h00m" in line


def test_cli_aged_last_cycle_warns(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _synced_lab(lab)
    _edit_status(lab, finished=time.time() - 1200, last_complete_inventory=time.time() - 1200)
    code, line = _check(lab, capsys)
    assert code == 1, line
    assert "last cycle 20m ago" in line


def test_cli_real_hold_warns_only_after_warning_after(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    _synced_lab(lab)
    lab.inventory["incomplete_projects"] = ["tools"]  # the writer could not read tools
    assert lab.cli("sync") == 3
    assert lab.status()["holds_by_reason"].get("unknown-project", 0) >= 1
    code, line = _check(lab, capsys)
    assert code == 0, line  # just started holding
    # age the hold: each hold in force keeps its first-seen time, held_since is the oldest
    first = lab.status()["hold_first_seen"]
    assert first and all("unknown-project|tools" in k for k in first)
    aged = {k: v - 1000 for k, v in first.items()}
    _edit_status(lab, hold_first_seen=aged, held_since=min(aged.values()))
    code, line = _check(lab, capsys)
    assert code == 1, line
    assert "unknown-project=" in line
    # the first-seen time survives further held cycles (it is "since when", not "last time")
    assert lab.cli("sync") == 3
    code, line = _check(lab, capsys)
    assert code == 1, line
    # and is cleared by a cycle without loud holds
    del lab.inventory["incomplete_projects"]
    assert lab.cli("sync") == 0
    assert lab.status()["held_since"] is None
    code, line = _check(lab, capsys)
    assert code == 0, line


def test_cli_steady_churn_of_young_holds_is_not_a_long_hold(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hold that comes and goes (here: a new instance of a project whose volume's
    directory is missing, a loud hold, in a different project every cycle) is young
    every cycle: each hold keeps its own first-seen time, so a churn of young holds
    never looks like one hold of 20 minutes.
    Loud holds on purpose: quiet ones (pending confirmations) never warn at all, so they
    could not tell a right first-seen time from a wrong one."""
    names = ["tools", "paws", "maps", "quarry"]
    for n, name in enumerate(names):
        lab.add_project(name, 50380 + n)
        lab.add_instance(f"i-{n}", name, f"172.16.0.{n + 5}")
    assert lab.cli("sync") == 0
    shutil.rmtree(lab.srv("tools", "home"))
    lab.add_instance("j-0", "tools", "172.16.1.5")
    assert lab.cli("sync") == 3
    assert set(lab.status()["holds_by_reason"]) == {"path-missing"}
    # pretend that hold was first seen 20 minutes ago: it is old, and it is still there
    old = time.time() - 1200
    seen = {k: old for k in lab.status()["hold_first_seen"]}
    _edit_status(lab, hold_first_seen=seen, held_since=old)
    assert lab.cli("sync") == 3
    code, line = _check(lab, capsys)
    assert code == 1 and "held for 20m: path-missing=1" in line, line  # the old hold warns
    # then every cycle the old one's directory comes back and another one goes
    for n, (before, name) in enumerate(itertools.pairwise(names), start=1):
        lab.srv(before, "home")
        shutil.rmtree(lab.srv(name, "home"))
        lab.add_instance(f"j-{n}", name, f"172.16.1.{n + 5}")
        assert lab.cli("sync") == 3
        holds = lab.status()["plan"]["holds"]
        assert [(h["reason"], h["project"]) for h in holds] == [("path-missing", name)]
        code, line = _check(lab, capsys)
        assert code == 0, line  # held for seconds only
        # a young hold: OK, but said as held (never "in sync" while something is held)
        assert line.startswith("NFS-EXPORTD OK - held for "), line
        assert "s: path-missing=1 (WARNING after 15m)" in line, line
        assert f"4 projects, {4 + n} pairs" in line, line
