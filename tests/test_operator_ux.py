"""Issue 14: what an on-call person reads at 3 a.m. - alerts that point the right way.

Each test here failed before its fix: the cause of a failed ``exportfs_command`` first
(not the read-back diff), ``check`` saying "held" (never "in sync") while something
holds, a refused ``--plan-checksum`` that is not a failed cycle, clouds.yaml errors that
name the files and the config key (exit 2), no false "interrupted", and status not
passing an older cycle's inventory off as current.  Real exportfs (sandbox), real
openstacksdk against the simulated cloud.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Lab
from nfs_exportd.memory.status import Counts, LastCycle, Status
from nfs_exportd.ops import check
from nfs_exportd.ops.check import MAX_TEXT, OK, WARNING, Thresholds
from nfs_exportd_sim import SimCloud

NOW = 1_700_000_000.0
TH = Thresholds(warning_after=900, critical_after=3600, maintenance_max_age=86400)


def _status(held: dict[str, int], held_since_ago: float = 60, message: str = "ok") -> Status:
    return Status(
        first_cycle=NOW - 86400,
        last_cycle=LastCycle(started=NOW - 31, finished=NOW - 30, result="held", message=message),
        holds_by_reason=held,
        held_since=NOW - held_since_ago,
        counts=Counts(files=2, projects=2, exports=3, pairs=5, clients=4),
        last_complete_inventory=NOW - 30,
    )


# ------------------------------------------------------------------ check: held, not in sync


@pytest.mark.parametrize(
    "held",
    [
        {"unknown-inventory": 91},
        {"unknown-project": 1, "pending-confirmation": 3},
        {"project-renamed": 1},
        {"rollback-hold": 4},
    ],
)
def test_check_says_held_never_in_sync_while_holding(held: dict[str, int]) -> None:
    v = check.evaluate(_status(held), None, TH, NOW)
    assert v.code == OK, v.line()  # young: not a warning yet
    assert "in sync" not in v.text, v.line()
    assert v.text.startswith("held for 60s: "), v.line()
    assert "(WARNING after 15m)" in v.text


def test_check_routine_pending_confirmations_stay_quiet() -> None:
    v = check.evaluate(_status({"pending-confirmation": 18}, 10 * 3600), None, TH, NOW)
    assert v.code == OK
    assert v.text == "in sync: 2 projects, 5 pairs; pending: pending-confirmation=18"


@pytest.mark.parametrize("reason", ["too-much-change", "inventory-shrink"])
def test_check_warns_at_once_for_holds_only_a_human_clears(reason: str) -> None:
    v = check.evaluate(_status({reason: 412}, held_since_ago=5), None, TH, NOW)
    assert v.code == WARNING, v.line()
    assert v.text.startswith(f"held: {reason}=412: only a human clears it"), v.line()
    assert "nfs-exportd sync --force" in v.text


# fmt: off
def test_check_line_is_bounded() -> None:
    long = "read-back of the exports in force failed: " + "x.exports: 10.0.0.1 -> /srv " * 80
    st = _status({}).model_copy(
        update={"last_cycle": LastCycle(started=NOW - 2, finished=NOW - 1, result="error",
                                        message=long)}
    )
    line = check.evaluate(st, None, TH, NOW).line()
    text = line.partition(" | ")[0]
    assert len(text) <= len("NFS-EXPORTD CRITICAL - ") + MAX_TEXT, len(text)
    assert text.endswith("('nfs-exportd status' has it all)")
    assert len(line) < 1024  # NRPE v2's buffer, perfdata included
# fmt: on


# ------------------------------------------------------------------ exportfs_command failing


def _fake_command(lab: Lab, stderr: str, code: int = 1) -> Path:
    script = lab.root / "fake-sudo"
    script.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _check_line(lab: Lab, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = lab.cli("check")
    return code, capsys.readouterr().out.strip()


@pytest.mark.parametrize(
    ("said", "fix"),
    [
        ("sudo: a password is required", "add the sudoers rule"),
        ("sudo: /usr/sbin/exportfs: command not found", "install nfs-kernel-server"),
    ],
)
def test_failed_exportfs_command_puts_the_cause_first(
    lab: Lab, capsys: pytest.CaptureFixture[str], said: str, fix: str
) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    lab.config["exportfs_command"] = [str(_fake_command(lab, said))]
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 1
    message = lab.status()["last_cycle"]["message"]
    assert message.startswith(f"exportfs_command failed (exit 1): {said}; {fix}"), message
    code, line = _check_line(lab, capsys)
    assert code == 2
    assert line.startswith(f"NFS-EXPORTD CRITICAL - last cycle failed: exportfs_command failed "
                           f"(exit 1): {said}"), line  # fmt: skip
    assert len(line) < 1024
    capsys.readouterr()
    assert lab.cli("status") == 0
    assert f"exportfs_command failed (exit 1): {said}" in capsys.readouterr().out
    assert "re-applied them (exportfs_command failed again" in message  # undone: nothing lost


def test_failed_first_apply_is_not_called_interrupted_next_cycle(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """A new server whose sudoers rule is missing: nothing was ever in force, so the undo
    cannot be verified and the apply-pending marker stays; the next cycle must say the
    apply failed (it did), not that it was interrupted."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    good = lab.config["exportfs_command"]
    lab.config["exportfs_command"] = [str(_fake_command(lab, "sudo: a password is required"))]
    assert lab.cli("sync") == 1
    message = lab.status()["last_cycle"]["message"]
    assert message.startswith("exportfs_command failed (exit 1): sudo: a password is"), message
    assert "UNDO FAILED" in message and message.count("sudo: a password") == 1, message
    lab.config["exportfs_command"] = good
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert lab.cli("sync") == 0
    logged = caplog.text
    assert "was interrupted" not in logged, logged
    assert "failed and its undo was not verified (exportfs_command failed again)" in logged


# ------------------------------------------------------------------ --plan-checksum


def test_refused_plan_checksum_is_not_a_failed_cycle(
    lab: Lab, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    prom = lab.root / "nfs_exportd.prom"
    lab.config["metrics"] = {"textfile": str(prom)}
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    before, counted = lab.status(), prom.read_text()
    lab.add_instance("i-2", "tools", "172.16.0.6")
    capsys.readouterr()
    assert lab.cli("plan") == 0
    head = capsys.readouterr().out.splitlines()[0]
    short = head.split()[1].rstrip(":")
    assert len(short) == 12
    mistyped = ("0" if short[0] != "0" else "1") + short[1:]
    caplog.clear()
    assert lab.cli("sync", "--plan-checksum", mistyped) == 1
    assert "refused, nothing changed: the plan now is " + short in caplog.text
    assert lab.status() == before  # not recorded as a cycle at all
    assert prom.read_text() == counted  # nor counted in the metrics
    code, line = _check_line(lab, capsys)
    assert code == 0, line
    assert lab.cli("sync", "--plan-checksum", "abc") == 1  # too short to be unambiguous
    assert "at least its first 12 hex digits" in caplog.text
    # the 12 hex digits the text plan prints are accepted
    assert lab.cli("sync", "--plan-checksum", short) == 0
    assert (lab.srv("tools", "home"), "172.16.0.6") in lab.in_force()


# ------------------------------------------------------------------ status: older inventory


def test_status_does_not_show_an_older_inventory_problem_as_current(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    lab.config["inventory"] = {"source": "static", "file": "missing.yaml"}  # unknown: held
    assert lab.cli("sync") == 3
    assert lab.status()["inventory"]["problem"]
    lab.config["inventory"] = {"source": "static", "file": "inventory.yaml"}
    lab.config["exportfs_command"] = [str(_fake_command(lab, "sudo: a password is required"))]
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 1  # the inventory is fine again; the apply failed
    capsys.readouterr()
    assert lab.cli("status") == 0
    out = capsys.readouterr().out
    inv = next(ln for ln in out.splitlines() if ln.startswith("inventory:"))
    assert "as read by an earlier cycle at " in inv and "the last cycle failed" in inv, out


# ------------------------------------------------------------------ clouds.yaml


@pytest.fixture
def cloud(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCloud]:
    sim = SimCloud(
        {
            "projects": [{"name": "admin"}, {"name": "tools"}],
            "users": [
                {
                    "name": "admin",
                    "password": "admin-pw",
                    "roles": [{"role": "admin", "project": "admin"}],
                },
            ],
            "servers": [
                {"id": "t1", "name": "tools-1", "project": "tools", "addresses": ["172.16.0.5"]}
            ],
        }
    )
    sim.start()
    try:
        sim.clouds_yaml(
            lab.root / "clouds.yaml",
            {"nfs": {"user": "admin", "password": "admin-pw", "project": "admin"}},
        )
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(lab.root / "clouds.yaml"))
        lab.config["inventory"] = {"source": "openstack", "cloud": "nfs", "timeout_seconds": 5}
        lab.add_project("tools", 50380)
        yield sim
    finally:
        sim.stop()


def test_missing_clouds_yaml_entry_is_a_config_error_naming_files_key_and_entries(
    lab: Lab, cloud: SimCloud, caplog: pytest.LogCaptureFixture
) -> None:
    lab.config["inventory"]["cloud"] = "nsf"  # mistyped
    caplog.clear()
    assert lab.cli("plan") == 2
    said = caplog.text
    assert "inventory.cloud: clouds.yaml entry 'nsf' does not exist" in said, said
    assert f"{lab.root / 'clouds.yaml'} is used and has entries: nfs" in said, said
    assert lab.cli("sync") == 2
    lab.config["inventory"] = {**lab.config["inventory"], "cloud": "nfs",
                               "identity_cloud": "nfs-observer"}  # fmt: skip
    caplog.clear()
    assert lab.cli("plan") == 2
    assert "inventory.identity_cloud: clouds.yaml entry 'nfs-observer'" in caplog.text


def test_unset_os_client_config_file_is_said(
    lab: Lab, cloud: SimCloud, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OS_CLIENT_CONFIG_FILE")
    monkeypatch.chdir(lab.root / "srv")  # no clouds.yaml in the working directory
    caplog.clear()
    assert lab.cli("plan") == 2
    assert "OS_CLIENT_CONFIG_FILE is not set" in caplog.text, caplog.text
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(lab.root / "nowhere.yaml"))
    caplog.clear()
    assert lab.cli("plan") == 2
    assert f"OS_CLIENT_CONFIG_FILE={lab.root / 'nowhere.yaml'} does not exist" in caplog.text


def test_401_names_the_clouds_yaml_entry(lab: Lab, cloud: SimCloud) -> None:
    cloud.add_fault(service="identity", method="POST", path_regex="auth/tokens", status=401)
    assert lab.cli("sync") == 3
    problem = lab.status()["inventory"]["problem"]
    assert problem.startswith("clouds.yaml entry 'nfs' (inventory.cloud): "), problem


# ------------------------------------------------------------------ logs: holds, changes


def test_holds_are_logged_when_they_start_change_and_end_and_as_a_reminder(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    from nfs_exportd import cycle
    from nfs_exportd.config import load_config

    lab.add_project("tools", 50380)
    for n in range(1, 5):
        lab.add_instance(f"i-{n}", "tools", f"172.16.0.{n + 4}")
    lab.config["safety"] = {"removal_confirmations": 4, "max_removal_fraction": 1.0,
                            "max_project_shrink_fraction": 1.0}  # fmt: skip
    assert lab.cli("sync") == 0
    for n in range(1, 4):
        lab.remove_instance(f"i-{n}")
    lab.write()
    cfg = load_config(lab.config_path)
    served = cycle.load_served(cfg)
    cycle.hold_log.reset()

    def cycles(n: int) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="nfs_exportd"):
            for _ in range(n):
                cycle.sync(cfg, served)
        return [r.getMessage() for r in caplog.records if "held" in r.getMessage()
                or "ended" in r.getMessage()]  # fmt: skip

    lines = cycles(2)  # 1 and 2 of 4 confirmations: said once, collapsed into one line
    assert len(lines) == 1, lines
    assert lines[0].startswith("held 3 removals (pending-confirmation): 1 of 4 "), lines
    cycle.hold_log.logged_at -= cycle.HOLD_REMINDER_SECONDS  # an hour later, unchanged
    lines = cycles(1)
    assert lines == [lines[0]] and lines[0].startswith("still held, unchanged since "), lines
    assert lines[0].endswith(": pending-confirmation=3"), lines
    lines = cycles(1)  # the 4th confirmation: removed, the hold ends
    assert lines == ["3 removals ended (pending-confirmation)"], lines


def test_changes_are_logged_only_once_applied(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    good = lab.config["exportfs_command"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nfs_exportd"):
        assert lab.cli("sync") == 0
    assert caplog.text.count(f"applied add tools {lab.srv('tools', 'home')} -> 172.16.0.5") == 1
    lab.add_instance("i-2", "tools", "172.16.0.6")
    lab.config["exportfs_command"] = [str(_fake_command(lab, "sudo: a password is required"))]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nfs_exportd"):
        assert lab.cli("sync") == 1
    assert "add tools" not in caplog.text, caplog.text  # nothing was applied
    lab.config["exportfs_command"] = good


# ------------------------------------------------------------------ config check, broken config


def test_config_check_validates_without_state(
    lab: Lab, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    lab.add_project("tools", 50380)
    capsys.readouterr()
    assert lab.cli("config", "check") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"config OK: {lab.config_path}: backend exportfs"), out
    assert "1 projects with volumes on this server" in out
    assert not lab.state_dir.exists()  # reads no state, writes none
    lab.config["interval_seconds"] = "soon"
    caplog.clear()
    assert lab.cli("config", "check") == 2
    assert "interval_seconds" in caplog.text
    lab.config["interval_seconds"] = 60
    lab.projects["tools"]["gid"] = "x"  # the projects file is checked too
    assert lab.cli("config", "check") == 2


def test_read_only_commands_work_from_the_running_config_when_the_file_is_broken(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    from nfs_exportd.cli import main

    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    lab.config_path.write_text(lab.config_path.read_text() + "interval_seconds: [\n")
    pre = ["--config", str(lab.config_path)]
    capsys.readouterr()
    assert main([*pre, "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"config-invalid: {lab.config_path}: not valid YAML"), out
    assert "showing the state of the daemon" in out and "last cycle: " in out, out
    assert main([*pre, "history"]) == 0
    assert capsys.readouterr().out.count("sync") == 1  # the one journal entry
    assert main([*pre, "check"]) == 1
    line = capsys.readouterr().out
    assert line.startswith("NFS-EXPORTD WARNING - config-invalid: "), line
    assert "then: in sync: 1 projects, 1 pairs" in line, line
    assert main([*pre, "config", "check"]) == 2  # the validator never falls back


# ------------------------------------------------------------------ journal user, textfile


def test_journal_records_the_human_who_logged_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sudo -u nfsmanager`` from a root shell sets SUDO_USER=root; the audit login uid
    still names the human (65534 stands for them here: nobody exists on every system)."""
    import pwd

    from nfs_exportd.memory import journal

    monkeypatch.setenv("SUDO_USER", "root")
    loginuid = tmp_path / "loginuid"
    loginuid.write_text("65534")
    assert journal.current_user(loginuid) == pwd.getpwuid(65534).pw_name
    loginuid.write_text(str(journal.UNSET_LOGINUID))  # a service: no login session
    assert journal.current_user(loginuid) == "root"  # then SUDO_USER, as before


def test_one_shot_sync_leaves_the_textfile_to_the_running_daemon(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    prom = lab.root / "nfs_exportd.prom"
    lab.config["metrics"] = {"textfile": str(prom)}
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.state_dir.mkdir()
    (lab.state_dir / "run.lock").write_text(f"{os.getpid()}\n")  # a live run loop
    caplog.clear()
    assert lab.cli("sync") == 0
    assert not prom.exists()
    assert f"metrics.textfile left to the running daemon (pid {os.getpid()})" in caplog.text
    (lab.state_dir / "run.lock").write_text("")  # the run loop stopped
    assert lab.cli("sync") == 0
    assert "nfs_exportd_" in prom.read_text()


# ------------------------------------------------------------------ texts (section 2)


def test_absence_count_past_its_target_says_the_age_rule_waits() -> None:
    """13 absences of 3 needed read as "13 of 3": say the count is reached and the age
    rule (safety.removal_min_age_seconds) is what waits."""
    from nfs_exportd.decide.lifecycle import Absence, Memory, assess
    from nfs_exportd.model import InventorySnapshot, ProjectRecord

    snap = InventorySnapshot("static", {"other": ProjectRecord("x", "other", True)}, {})
    memory = Memory(absent={"tools": Absence(NOW - 100, 12)}, known_ids={"tools": "id-t"})
    verdicts, _, _ = assess(
        ["tools"], snap, memory, confirmations=3, min_age=3600, now=NOW, counting=True
    )
    detail = verdicts["tools"].detail
    assert "13 of 3" not in detail, detail
    assert detail.startswith(
        "absent from 13 complete Keystone listings (3 needed: reached), "
        "but only for 100 of 3600 s (safety.removal_min_age_seconds)"
    )


def test_explain_project_of_a_renamed_project_and_of_a_down_cell_server(
    lab: Lab, cloud: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab.cli("sync") == 0
    created = cloud.create_server("tools-2", "tools", addresses=["172.16.0.9"])
    cloud.set_down([created])
    capsys.readouterr()
    assert lab.cli("explain", "--project", "tools") == 0
    out = capsys.readouterr().out
    assert f"({created}, UNKNOWN: in a down Nova cell)" in out, out
    assert "UNLISTED" not in out
    cloud.set_down([created], down=False)
    cloud.rename_project("tools", "undo-tool")
    capsys.readouterr()
    assert lab.cli("explain", "--project", "tools") == 0
    out = capsys.readouterr().out
    assert "(id ?" not in out, out
    assert "renamed to 'undo-tool' in Keystone (same id)" in out, out


def test_config_invalid_is_not_logged_as_holding_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from nfs_exportd.cycle import HoldLog
    from nfs_exportd.decide import Hold, Reason

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nfs_exportd"):
        HoldLog().log((Hold(Reason.CONFIG_INVALID, detail="config.yaml: interval_seconds"),), NOW)
    assert "held everything" not in caplog.text, caplog.text
    assert "held no change (the last good config and projects file run; changes apply) " in (
        caplog.text
    )


def test_forgotten_freeze_flag_says_nothing_changes() -> None:
    from nfs_exportd.ops.check import MaintenanceFlag

    old = 2 * 86400
    v = check.evaluate(_status({}), MaintenanceFlag(old, "freeze: renumbering"), TH, NOW)
    assert v.code == WARNING
    assert "removals are not happening" not in v.text, v.text
    assert "nothing changes (freeze: no additions either)" in v.text
    v = check.evaluate(_status({}), MaintenanceFlag(old, "keystone upgrade"), TH, NOW)
    assert "removals are not happening" in v.text


def test_a_password_that_is_a_word_is_masked_only_as_a_value() -> None:
    from nfs_exportd.logs import MASK, redact, register_secret

    register_secret("wrong")
    hint = "authentication failed (a wrong user or password, no role on the scope asked for)"
    assert redact(hint) == hint  # neither mangled nor giving the password away
    for text in ('{"password": "wrong"}', "password=wrong", "pass: wrong", "'wrong'"):
        assert "wrong" not in redact(text), text
        assert MASK in redact(text)
    register_secret("hunter2xx")  # not a word: masked wherever it stands
    assert "hunter2xx" not in redact("curl -u admin:hunter2xx http://x hunter2xx")


def test_explain_names_the_instance_of_a_floating_ip(
    lab: Lab, cloud: SimCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.create_server(
        "tools-fip", "tools", addresses=["172.16.0.20", {"addr": "203.0.113.5", "type": "floating"}]
    )
    capsys.readouterr()
    assert lab.cli("explain", "203.0.113.5") == 0
    out = capsys.readouterr().out
    assert "not an address of any instance" not in out, out
    assert "203.0.113.5 is a floating IP of instance tools-fip (" in out, out
    assert (
        "of project tools: floating IPs are not exported (inventory.include_floating_ips is off"
        in out
    )


def test_unreadable_clouds_yaml_is_named_with_its_permission_error(tmp_path: Path) -> None:
    """A clouds.yaml mode 0600 root, read by the daemon's unprivileged user: said as a
    permission error on that file, not 'Cloud X was not found'.  As root the reader runs
    as nobody (setpriv), so the kernel really refuses."""
    import os
    import subprocess
    import sys

    tmp_path.chmod(0o755)
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {nfs: {}}\n")
    clouds.chmod(0o000 if os.geteuid() != 0 else 0o600)
    code = (
        "from nfs_exportd.read.inventory.openstack import clouds_yaml_problem as p; "
        "print(p('nfs', 'inventory.cloud'))"
    )
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    import nfs_exportd

    src = str(Path(nfs_exportd.__file__).resolve().parents[1])  # this tree's code
    proc = subprocess.run(
        [*(drop if os.geteuid() == 0 else []), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds), "PYTHONPATH": src},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("inventory.cloud: clouds.yaml entry 'nfs' does not exist: "), out
    assert f"{clouds} cannot be read by uid " in out and "(permission denied)" in out, out


# ------------------------------------------------------------------ command line (section 5)


def test_global_options_are_accepted_after_the_command(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    from nfs_exportd.cli import main

    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.write()
    capsys.readouterr()
    assert main(["sync", "--config", str(lab.config_path), "--allow-root"]) == 0
    assert main(["status", "--config", str(lab.config_path), "-v"]) == 0
    assert "result: ok" in capsys.readouterr().out


def test_every_command_help_says_what_it_does_its_exit_codes_and_config_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nfs_exportd.cli import HELP, main

    for name in HELP:
        capsys.readouterr()
        assert main([name, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert HELP[name][0].split(".")[0] in out, (name, out)
        assert "exit codes: " in out and "config keys: " in out, (name, out)
    assert main(["sync", "--help"]) == 0
    assert "routine pending confirmations too" in " ".join(capsys.readouterr().out.split())


def test_a_closed_pipe_is_a_quiet_exit(lab: Lab) -> None:
    import os
    import subprocess
    import sys

    lab.add_project("tools", 50380)
    for n in range(60):
        lab.add_instance(f"i-{n}", "tools", f"172.16.{n // 200}.{n % 200 + 2}")
    lab.write()
    root = ["--allow-root"] if os.geteuid() == 0 else []
    cmd = [sys.executable, "-m", "nfs_exportd.cli", "--config", str(lab.config_path), *root]
    proc = subprocess.run(
        f"{' '.join(cmd)} plan | head -1", shell=True, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("plan ")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_history_limit_since_and_times_with_their_zone(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    lab.add_project("tools", 50380)
    for n in range(3):
        lab.add_instance(f"i-{n}", "tools", f"172.16.0.{n + 5}")
        assert lab.cli("sync") == 0
    capsys.readouterr()
    assert lab.cli("history", "--limit", "2") == 0
    heads = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith(" " * 9)]
    assert len(heads) == 2, heads
    assert re.match(r"^\s+\d+  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}  sync", heads[0]), heads
    import json

    assert lab.cli("history", "--json") == 0
    every = len(json.loads(capsys.readouterr().out)["entries"])  # the baseline too
    assert every >= 3
    assert lab.cli("history", "--since", "1h", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == every
    assert lab.cli("history", "--since", "2000-01-01T00:00+00:00", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == every
    assert lab.cli("history", "--since", "2999-01-01") == 0
    assert "no journal entry matches" in capsys.readouterr().out
    assert lab.cli("history", "--since", "yesterday") == 2


def test_plan_repeats_its_summary_at_the_end_and_collapses_hold_lines(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.add_project("tools", 50380)
    for n in range(12):
        lab.add_instance(f"i-{n}", "tools", f"172.16.0.{n + 5}")
    assert lab.cli("sync") == 0
    lab.config["inventory"] = {"source": "static", "file": "inventory.yaml"}
    for n in range(10):
        lab.remove_instance(f"i-{n}")
    lab.config["safety"] = {"removal_confirmations": 3, "max_removal_fraction": 1.0,
                            "max_project_shrink_fraction": 1.0}  # fmt: skip
    capsys.readouterr()
    assert lab.cli("plan") == 0
    lines = capsys.readouterr().out.splitlines()
    held = [ln for ln in lines if ln.startswith("    ! ")]
    assert len(held) == 1, lines  # 10 pending removals, one line
    assert "(and 2 more) [remove]  (pending-confirmation)" in held[0], held
    assert lines[-1] == lines[0] and lines[0].startswith("plan "), lines


def test_sim_gen_lab_writes_a_matching_projects_file_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nfs_exportd.cli import main
    from nfs_exportd_sim.cli import main as sim_main
    from nfs_exportd_sim.scenario import load_scenario

    lab = tmp_path / "gen"
    assert sim_main(["gen", "--projects", "6", "--instances", "30", "--lab", str(lab)]) == 0
    err = capsys.readouterr().err
    assert "serve --scenario" in err and "plan" in err
    with SimCloud(load_scenario(lab / "scenario.yaml")) as sim:
        sim.clouds_yaml(lab / "clouds.yaml")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(lab / "clouds.yaml"))
        assert main(["--config", str(lab / "config.yaml"), "config", "check"]) == 0
        capsys.readouterr()
        assert main(["--config", str(lab / "config.yaml"), "plan"]) == 0
        out = capsys.readouterr().out
    assert "nothing held" in out.splitlines()[0], out
    assert " to add" in out and not out.startswith("plan 0 to add"), out


# ------------------------------------------------------------------ docs (section 6)


def test_adopt_changes_no_pair_in_force_and_history_shows_it_as_added(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """migration.md says both, and both must stay true."""
    import json

    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    (lab.exports_dir / "tools.exports").write_text(
        f"{home} -rw,sync,no_subtree_check,root_squash 172.16.0.5 172.16.0.6\n"
    )
    lab.exportfs("-ra")
    before = lab.in_force()
    assert len(before) == 2
    assert lab.cli("adopt") == 0
    assert lab.in_force() == before
    capsys.readouterr()
    assert lab.cli("history", "--json") == 0
    last = json.loads(capsys.readouterr().out)["entries"][-1]
    assert (last["kind"], len(last["added"])) == ("adopt", 2)
    text = " ".join((Path(__file__).parents[1] / "docs" / "migration.md").read_text().split())
    assert "changes no pair in force" in text
    assert "`history` still shows the `adopt` entry as `+N`" in text


def test_state_dir_docs_say_who_creates_it() -> None:
    text = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    row = next(ln for ln in text.splitlines() if ln.startswith("| `state_dir` |"))
    assert "Created if missing." not in row
    assert "StateDirectory=" in row


def test_unit_file_install_steps_are_install_md_s() -> None:
    """The unit's header lists the install commands; each must be install.md's own
    (exports.d ownership, the config files, OS_CLIENT_CONFIG_FILE) - they drifted once."""
    root = Path(__file__).parents[1]
    install = " ".join((root / "docs" / "install.md").read_text().split())
    header = (root / "contrib" / "systemd" / "nfs-exportd.service").read_text().split("[Unit]")[0]
    steps = [
        " ".join(ln.lstrip("#").split("#")[0].split())
        for ln in header.splitlines()
        if ln.startswith("#   ")
    ]
    assert any("/etc/nfs-exportd/config.yaml" in s for s in steps)
    assert any("OS_CLIENT_CONFIG_FILE" in ln for ln in header.splitlines())
    for step in steps:
        assert step in install, f"unit file step not in docs/install.md: {step}"


def test_path_normalisation_warning_is_said_once_per_process(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """The run loop re-reads the projects file every cycle: its warnings once, not every
    minute."""
    from nfs_exportd import cycle
    from nfs_exportd.config import load_config

    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380, {"home": home + "//"})
    lab.write()
    cfg = load_config(lab.config_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nfs_exportd"):
        for _ in range(3):
            cycle.load_served(cfg)
    said = [r.getMessage() for r in caplog.records if "normalised to" in r.getMessage()]
    assert len(said) == 1, said  # the path is this test's own: said once, not 3 times


def test_explain_of_a_deleted_project_says_the_count_and_the_age(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.config["safety"] = {"removal_confirmations": 3, "max_removal_fraction": 1.0,
                            "removal_min_age_seconds": 3600}  # fmt: skip
    assert lab.cli("sync") == 0
    lab.inventory["projects"] = []  # deleted in Keystone
    lab.inventory["instances"] = []
    assert lab.cli("sync") == 3
    capsys.readouterr()
    assert lab.cli("explain", "172.16.0.5") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "pending removal from tools" in ln)
    assert "(it goes after 3 complete cycles without it)" not in line, line
    assert "Keystone listings" in line and "of 3600 s" in line, line


def test_runbook_says_which_holds_check_keeps_quiet() -> None:
    text = " ".join((Path(__file__).parents[1] / "docs" / "runbook.md").read_text().split())
    assert {"maintenance", "freeze", "pending-confirmation"} == check.QUIET
    assert (
        "`check` is quiet about `maintenance`, `freeze` and `pending-confirmation` (listed "
        "after `pending:`)" in text
    )
    assert {"too-much-change", "inventory-shrink"} == check.HUMAN
    assert "`too-much-change` and `inventory-shrink` are WARNING at once" in text
