"""History journal, rollback, rollback-hold and release end to end (issue 5, point 5):
CLI in-process, static inventory, the real exportfs in its sandbox; a full journal disk
is a real full tmpfs in a private mount namespace (the CLI then runs as a process)."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import HOST, SANDBOX, Lab, wait_for
from nfs_exportd.memory import state
from nfs_exportd.model import HEADER_PREFIX
from test_apply_exportfs import cli_argv, namespace_prefix

A, B, C, D = "172.16.0.5", "172.16.0.6", "172.16.0.7", "172.16.0.8"
Out = pytest.CaptureFixture[str]


# ----------------------------------------------------------------------------- helpers


def _run(lab: Lab, capsys: Out, *args: str, code: int = 0) -> str:
    """Run the CLI, assert its exit code, return its stdout."""
    capsys.readouterr()
    got = lab.cli(*args)
    out = capsys.readouterr().out
    assert got == code, f"{' '.join(args)}: exit {got}, expected {code}; stdout: {out}"
    return out


def _json(lab: Lab, capsys: Out, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_run(lab, capsys, *args))
    return data


def _entries(lab: Lab, capsys: Out) -> list[dict[str, Any]]:
    hist = _json(lab, capsys, "history", "--json")
    assert hist["schema"] == 1
    entries: list[dict[str, Any]] = hist["entries"]
    return entries


def _ids(lab: Lab) -> list[int]:
    hdir = lab.state_dir / "history"
    if not hdir.exists():
        return []
    return sorted(int(p.stem) for p in hdir.glob("*.json") if p.stem.isdigit())


def _entry_file(lab: Lab, entry_id: int) -> Path:
    return lab.state_dir / "history" / f"{entry_id:06d}.json"


def _entry(lab: Lab, entry_id: int) -> dict[str, Any]:
    """The entry as stored: its summary, with the files from NNNNNN.files.json."""
    data: dict[str, Any] = json.loads(_entry_file(lab, entry_id).read_text())
    files_path = _entry_file(lab, entry_id).with_name(f"{entry_id:06d}.files.json")
    stored = json.loads(files_path.read_text())
    assert stored["id"] == entry_id and len(stored["files"]) == data["files"]
    data["files"] = stored["files"]
    return data


def _marker(lab: Lab) -> Path:
    return lab.state_dir / state.ROLLBACK_HOLD


def _holds(plan: dict[str, Any]) -> set[str]:
    return {h["reason"] for h in plan["holds"]}


def _tools(lab: Lab, *ips: str) -> str:
    """Project tools with one instance i-N per address; returns its home path."""
    lab.add_project("tools", 50380)
    for n, ip in enumerate(ips, start=1):
        lab.add_instance(f"i-{n}", "tools", ip)
    return lab.srv("tools", "home")


def _owners_by_path(lab: Lab) -> dict[str, str]:
    out: dict[str, str] = {}
    for project, spec in lab.projects.items():
        for mount in spec["mounts"].values():
            out[mount.partition(":")[2]] = project
    return out


def _assert_no_client_in_two_projects(lab: Lab) -> None:
    """Neither the files nor the etab export one address for two projects."""
    from nfs_exportd.exportsfile import parse

    owner_of: dict[str, set[str]] = {}
    for name, text in lab.files().items():
        f = parse(name, text)
        assert f is not None, name
        for _path, client in f.pairs():
            owner_of.setdefault(client, set()).add(f.owner)
    assert {c: o for c, o in owner_of.items() if len(o) > 1} == {}
    by_path = _owners_by_path(lab)
    in_etab: dict[str, set[str]] = {}
    for path, client in lab.in_force():
        in_etab.setdefault(client, set()).add(by_path[path])
    assert {c: o for c, o in in_etab.items() if len(o) > 1} == {}


def _pair_rows(entry: dict[str, Any], key: str) -> set[tuple[str, ...]]:
    return {tuple(row) for row in entry[key]}


# ----------------------------------------------------------------------------- 1. history


def test_history_lists_every_applied_change(lab: Lab, capsys: Out) -> None:
    lab.config["safety"]["removal_confirmations"] = 2
    home = _tools(lab, A, B)
    t0 = time.time()

    # first change: preceded by a baseline of what was in force (nothing)
    plan1 = _json(lab, capsys, "plan", "--json")
    assert _run(lab, capsys, "sync").startswith("sync ok")
    files1 = lab.files()
    entries = _entries(lab, capsys)
    assert [(e["id"], e["kind"]) for e in entries] == [(1, "baseline"), (2, "sync")]
    base, first = entries
    assert base["files"] == 0 and base["added"] == [] and base["removed"] == []
    assert _entry(lab, 1)["files"] == {}
    assert first["checksum"] == plan1["checksum"]
    assert len(first["checksum"]) == 64
    assert _pair_rows(first, "added") == {  # a new file: its path is a new export
        ("tools", home, A, "new-export"),
        ("tools", home, B, "new-export"),
    }
    assert first["removed"] == [] and first["updated"] == []
    assert first["files"] == 1
    assert t0 - 1 <= base["time"] <= first["time"] <= time.time() + 1

    # a no-change sync adds nothing
    assert lab.cli("sync") == 0
    assert _ids(lab) == [1, 2]

    # an addition
    lab.add_instance("i-3", "tools", C)
    plan2 = _json(lab, capsys, "plan", "--json")
    assert lab.cli("sync") == 0
    files2 = lab.files()
    e3 = _entries(lab, capsys)[-1]
    assert (e3["id"], e3["kind"], e3["checksum"]) == (3, "sync", plan2["checksum"])
    assert _pair_rows(e3, "added") == {("tools", home, C, "new-instance")}

    # a removal that waits for its confirmation: the held cycle journals nothing
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 3
    assert _ids(lab) == [1, 2, 3]
    plan3 = _json(lab, capsys, "plan", "--json")
    assert [c["reason"] for c in plan3["changes"]] == ["instance-gone"]
    assert lab.cli("sync") == 0
    files3 = lab.files()
    e4 = _entries(lab, capsys)[-1]
    assert (e4["id"], e4["checksum"]) == (4, plan3["checksum"])
    assert _pair_rows(e4, "removed") == {("tools", home, B, "instance-gone")}
    assert e4["added"] == [] and e4["updated"] == []

    # an option change
    lab.config["export_options"] = {"volumes": {"home": "ro,sync,no_subtree_check,root_squash"}}
    plan4 = _json(lab, capsys, "plan", "--json")
    assert lab.cli("sync") == 0
    files4 = lab.files()
    assert "-ro," in files4["tools.exports"]
    e5 = _entries(lab, capsys)[-1]
    assert (e5["id"], e5["checksum"]) == (5, plan4["checksum"])
    assert _pair_rows(e5, "updated") == {
        ("tools", home, A, "options-changed"),
        ("tools", home, C, "options-changed"),
    }
    assert e5["added"] == [] and e5["removed"] == []
    assert lab.cli("sync") == 0
    assert _ids(lab) == [1, 2, 3, 4, 5]

    entries = _entries(lab, capsys)
    assert [e["id"] for e in entries] == [1, 2, 3, 4, 5]
    times = [e["time"] for e in entries]
    assert times == sorted(times)
    assert all(e["reason"] for e in entries)

    # each entry keeps the files verified after its change, byte for byte
    for entry_id, files in ((2, files1), (3, files2), (4, files3), (5, files4)):
        shown = _json(lab, capsys, "history", "--show", str(entry_id), "--json")
        assert shown["files"] == files, entry_id
        assert _entry(lab, entry_id)["files"] == files

    # the text listing says the same
    text = _run(lab, capsys, "history")
    heads = [ln.split() for ln in text.splitlines() if ln.split()[0].isdigit()]
    assert [(int(h[0]), h[4]) for h in heads] == [  # id, date, time, UTC offset, kind
        (1, "baseline"),
        (2, "sync"),
        (3, "sync"),
        (4, "sync"),
        (5, "sync"),
    ]
    assert f"+ tools {home} {A}  (new-export)" in text
    assert f"+ tools {home} {C}  (new-instance)" in text
    assert f"- tools {home} {B}  (instance-gone)" in text
    assert f"~ tools {home} {A}  (options-changed)" in text

    # --show ID prints the entry and its files
    shown_text = _run(lab, capsys, "history", "--show", "4")
    assert "--- tools.exports" in shown_text
    assert files3["tools.exports"] in shown_text
    assert f"- tools {home} {B}  (instance-gone)" in shown_text


# ----------------------------------------------------------------------------- 2. rollback


def test_rollback_restores_holds_until_release(lab: Lab, capsys: Out) -> None:
    lab.config["safety"]["removal_confirmations"] = 2
    home = _tools(lab, A, B, C)
    lab.add_project("web", 50400)
    web = lab.srv("web", "home")

    assert lab.cli("sync") == 0  # sync A
    files_a = lab.files()
    id_a = _ids(lab)[-1]
    assert lab.in_force() == {(home, A), (home, B), (home, C)}

    lab.remove_instance("i-2")
    lab.remove_instance("i-3")
    assert lab.cli("sync") == 3  # 1 of 2
    assert lab.cli("sync") == 0  # sync B: removed
    assert lab.in_force() == {(home, A)}
    id_b = _ids(lab)[-1]
    assert id_b == id_a + 1

    out = _run(lab, capsys, "rollback")
    assert f"rolled back to journal entry {id_a}" in out
    assert "release" in out
    assert lab.in_force() == {(home, A), (home, B), (home, C)}
    assert lab.files() == files_a
    assert _entry(lab, id_a)["files"] == files_a
    rb = _entries(lab, capsys)[-1]
    assert rb["kind"] == "rollback" and rb["id"] == id_b + 1
    assert {tuple(r[:3]) for r in rb["added"]} == {("tools", home, B), ("tools", home, C)}
    assert rb["removed"] == [] and str(id_a) in rb["reason"]
    assert _entry(lab, rb["id"])["files"] == files_a
    assert _marker(lab).exists()
    marker = json.loads(_marker(lab).read_text())
    assert marker["to"] == id_a and marker["entry"] == rb["id"]

    # the next cycles hold: the restored pairs are not removed again
    n_entries = len(_ids(lab))
    for _ in range(3):
        assert lab.cli("sync") == 3
        assert lab.in_force() == {(home, A), (home, B), (home, C)}
        assert lab.files() == files_a
    assert len(_ids(lab)) == n_entries
    st = _json(lab, capsys, "status", "--json")
    assert "rollback-hold" in st["holds_by_reason"]
    assert st["rollback_hold"]
    assert "rollback-hold" in _run(lab, capsys, "status")
    plan = _json(lab, capsys, "plan", "--json")
    assert plan["changes"] == []
    held = {(h["reason"], h["client"], h.get("action")) for h in plan["holds"]}
    assert ("rollback-hold", None, None) in held
    assert ("rollback-hold", B, "remove") in held
    assert ("rollback-hold", C, "remove") in held

    # a conflict removal still goes under the hold: C is now web's
    lab.add_instance("w-1", "web", C)
    assert lab.cli("sync") == 3
    assert lab.in_force() == {(home, A), (home, B)}  # web's addition holds too
    _assert_no_client_in_two_projects(lab)
    conflict = _entries(lab, capsys)[-1]
    assert conflict["kind"] == "sync"
    assert _pair_rows(conflict, "removed") == {("tools", home, C, "ip-conflict")}
    assert conflict["added"] == []
    assert lab.cli("sync") == 3
    assert (home, B) in lab.in_force()

    out = _run(lab, capsys, "release")
    assert "released" in out
    assert not _marker(lab).exists()
    assert "no rollback-hold" in _run(lab, capsys, "release")

    # normal rules again: web gets C now, B leaves after its 2 confirmations
    assert lab.cli("sync") == 3
    assert lab.in_force() == {(home, A), (home, B), (web, C)}
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A), (web, C)}
    st = _json(lab, capsys, "status", "--json")
    assert not st["rollback_hold"] and "rollback-hold" not in st["holds_by_reason"]


def test_status_shows_the_rollback_hold_right_after_rollback(lab: Lab, capsys: Out) -> None:
    """An operator who runs rollback and then status (or the check plugin) must see the
    hold before the next cycle runs; and no longer see it once released."""
    lab.config["safety"]["removal_confirmations"] = 1
    _tools(lab, A, B)
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 0
    _run(lab, capsys, "rollback")
    assert _marker(lab).exists()
    st = _json(lab, capsys, "status", "--json")
    assert st.get("rollback_hold"), "status --json does not show the rollback-hold in force"
    assert "rollback-hold" in _run(lab, capsys, "status")
    assert lab.cli("sync") == 3  # status.json now records the hold too: release clears it
    assert lab.status()["rollback_hold"] and lab.status()["holds_by_reason"]["rollback-hold"]
    _run(lab, capsys, "release")
    st = _json(lab, capsys, "status", "--json")
    assert not st.get("rollback_hold") and "rollback-hold" not in st["holds_by_reason"]
    assert st["held_since"] is None  # check no longer warns about it
    lines = _run(lab, capsys, "status").splitlines()  # (the last cycle's message may say it)
    assert not [ln for ln in lines if ln.startswith("rollback-hold")]
    assert "holds: none" in lines


# ----------------------------------------------------------------------------- 3. dropped pairs


def test_rollback_drops_pairs_whose_address_is_now_another_projects(lab: Lab, capsys: Out) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    lab.add_project("web", 50400)
    web = lab.srv("web", "home")
    lab.add_instance("w-1", "web", D)
    assert lab.cli("sync") == 0
    id_a = _ids(lab)[-1]

    lab.remove_instance("i-2")
    assert lab.cli("sync") == 0
    lab.add_instance("w-2", "web", B)  # the address is reused by web
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A), (web, D), (web, B)}

    out = _run(lab, capsys, "rollback", "--to", str(id_a))
    assert f"dropped tools {home} {B}: now belongs to project web" in out
    assert "complete inventory" in out
    assert (home, B) not in lab.in_force()
    assert (home, A) in lab.in_force()
    assert f" {B}" not in lab.files()["tools.exports"]
    _assert_no_client_in_two_projects(lab)
    rb = _entries(lab, capsys)[-1]
    assert rb["kind"] == "rollback" and "dropped" in rb["reason"]
    assert ("tools", home, B) not in {tuple(r[:3]) for r in rb["added"]}

    # held cycles afterwards never put it back for tools either
    for _ in range(2):
        assert lab.cli("sync") == 3
        assert (home, B) not in lab.in_force()
        _assert_no_client_in_two_projects(lab)


def test_rollback_drops_an_address_claimed_now_even_without_a_sync(lab: Lab, capsys: Out) -> None:
    """The address moved to web in the cloud, but no cycle has run since: rollback still
    does not restore it for tools (web's addition waits for release, then applies)."""
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    lab.add_project("web", 50400)
    web = lab.srv("web", "home")
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 0
    lab.add_instance("w-1", "web", B)
    out = _run(lab, capsys, "rollback")
    assert f"dropped tools {home} {B}: now belongs to project web" in out
    assert lab.in_force() == {(home, A)}
    _assert_no_client_in_two_projects(lab)
    assert _run(lab, capsys, "release")
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A), (web, B)}
    _assert_no_client_in_two_projects(lab)


@pytest.mark.parametrize("mode", ["project-incomplete", "inventory-unknown-forced"])
def test_rollback_never_moves_an_address_in_force_for_another_project(
    lab: Lab, capsys: Out, mode: str
) -> None:
    """B was tools', then web's (web's file in force has it).  Web's data is now unknown
    (its listing incomplete, or the whole inventory with --force): the rollback cannot
    know that B left web, so it must not export B for tools.  rollback.py says so itself:
    "Restored pairs whose address now belongs to another project (in a complete listing,
    or in another managed file in force) are dropped"."""
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    lab.add_project("web", 50400)
    web = lab.srv("web", "home")
    assert lab.cli("sync") == 0
    id_a = _ids(lab)[-1]
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 0
    lab.add_instance("w-1", "web", B)
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A), (web, B)}
    if mode == "project-incomplete":
        lab.inventory["incomplete_projects"] = ["web"]  # the writer could not list web
        lab.remove_instance("w-1")
        assert lab.cli("sync") == 3
        assert lab.in_force() == {(home, A), (web, B)}  # web unknown: kept as it is
        args: tuple[str, ...] = ("rollback", "--to", str(id_a))
    else:
        lab.inventory = {"projects": "not a list", "instances": []}
        args = ("rollback", "--to", str(id_a), "--force")
    out = _run(lab, capsys, *args)
    assert (home, B) not in lab.in_force(), (
        f"rollback exported {B} (in force for web, whose data is unknown) for tools: {out}"
    )
    assert f"dropped tools {home} {B}" in out
    _assert_no_client_in_two_projects(lab)


def test_rollback_leaves_a_foreign_file_alone(lab: Lab, capsys: Out) -> None:
    home = _tools(lab, A)
    lab.add_project("web", 50400)
    assert lab.cli("sync") == 0
    id_a = _ids(lab)[-1]
    assert set(lab.files()) == {"tools.exports", "web.exports"}
    del lab.projects["web"]  # no longer served: its empty file goes
    assert lab.cli("sync") == 0
    assert set(lab.files()) == {"tools.exports"}
    foreign = lab.exports_dir / "web.exports"
    foreign.write_text("# written by hand\n")  # not ours: exportfs reads it, we never touch it
    out = _run(lab, capsys, "rollback", "--to", str(id_a))
    assert "skipped web.exports" in out
    assert foreign.read_text() == "# written by hand\n"
    assert lab.in_force() == {(home, A)}


# ----------------------------------------------------------------------------- 4. targets


def test_rollback_to_an_older_entry_and_bad_targets(
    lab: Lab, capsys: Out, caplog: pytest.LogCaptureFixture
) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A)

    # an empty journal: nothing to roll back to
    caplog.clear()
    assert lab.cli("rollback") == 2
    assert "journal is empty" in caplog.text
    assert lab.files() == {} and lab.in_force() == set()
    assert not _marker(lab).exists()

    assert lab.cli("sync") == 0  # baseline (nothing) + A
    lab.add_instance("i-2", "tools", B)
    assert lab.cli("sync") == 0
    id_1 = _ids(lab)[-1]
    files_1 = lab.files()
    lab.add_instance("i-3", "tools", C)
    assert lab.cli("sync") == 0
    lab.add_instance("i-4", "tools", D)
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A), (home, B), (home, C), (home, D)}
    files_now = lab.files()
    etab_now = lab.in_force()
    ids_now = _ids(lab)

    caplog.clear()
    assert lab.cli("rollback", "--to", "999") in (1, 2)
    assert "999" in caplog.text
    assert lab.files() == files_now and lab.in_force() == etab_now
    assert _ids(lab) == ids_now and not _marker(lab).exists()

    out = _run(lab, capsys, "rollback", "--to", str(id_1))
    assert f"rolled back to journal entry {id_1}" in out
    assert lab.files() == files_1
    assert lab.in_force() == {(home, A), (home, B)}
    rb = _entries(lab, capsys)[-1]
    assert rb["kind"] == "rollback"
    assert {tuple(r[:3]) for r in rb["removed"]} == {("tools", home, C), ("tools", home, D)}

    # the baseline (the files before the first journaled change) can be restored too
    base = _ids(lab)[0]
    base_files = _entry(lab, base)["files"]
    assert _run(lab, capsys, "rollback", "--to", str(base))
    assert lab.files() == base_files
    assert lab.in_force() == set()


# ----------------------------------------------------------------------------- 5. unknown inventory


def test_rollback_refuses_when_the_inventory_is_unknown_unless_forced(
    lab: Lab, capsys: Out, caplog: pytest.LogCaptureFixture
) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    files_a = lab.files()
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 0
    files_b, etab_b, ids_b = lab.files(), lab.in_force(), _ids(lab)
    assert etab_b == {(home, A)}

    good = lab.inventory
    lab.inventory = {"projects": "not a list", "instances": []}  # invalid: unknown inventory
    caplog.clear()
    assert lab.cli("rollback") == 2
    assert "--force" in caplog.text
    assert "inventory unknown" in caplog.text
    assert "inventory.yaml: projects: Input should be a valid list" in caplog.text
    assert lab.files() == files_b and lab.in_force() == etab_b
    assert _ids(lab) == ids_b
    assert not _marker(lab).exists()

    out = _run(lab, capsys, "rollback", "--force")
    assert "--force" in out and "inventory unknown" in out
    assert lab.files() == files_a
    assert lab.in_force() == {(home, A), (home, B)}
    assert _marker(lab).exists()
    lab.inventory = good
    assert lab.cli("sync") == 3
    assert (home, B) in lab.in_force()


# ----------------------------------------------------------------------------- 6. failed apply


@pytest.mark.parametrize(
    ("script", "message"),
    [
        # exportfs refuses: nothing applied
        ('echo "exportfs: simulated failure" >&2\nexit 1\n', "simulated failure"),
        # exportfs applies the restored files, then fails: the undo must re-apply the old
        ('"{sandbox}" "$@"\nexit 1\n', "failed with exit 1"),
    ],
    ids=["refused", "applied-then-failed"],
)
def test_rollback_apply_failure_is_undone(
    lab: Lab, caplog: pytest.LogCaptureFixture, tmp_path: Path, script: str, message: str
) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 0
    files_b, etab_b, ids_b = lab.files(), lab.in_force(), _ids(lab)
    assert etab_b == {(home, A)}
    verified = state.load_verified(lab.state_dir)
    assert verified == files_b

    good_cmd = lab.config["exportfs_command"]
    failing = tmp_path / "failing-exportfs"
    failing.write_text("#!/bin/sh\n" + script.format(sandbox=SANDBOX))
    failing.chmod(0o755)
    lab.config["exportfs_command"] = [str(failing), *good_cmd[1:]]
    caplog.clear()
    assert lab.cli("rollback") == 1
    assert message in caplog.text
    assert "restored the previous files" in caplog.text
    assert lab.files() == files_b
    assert lab.in_force() == etab_b
    assert _ids(lab) == ids_b  # not journaled
    assert not _marker(lab).exists()
    assert state.load_verified(lab.state_dir) == verified

    lab.config["exportfs_command"] = good_cmd
    assert lab.cli("sync") == 0  # no hold: the failed rollback left none
    assert lab.in_force() == {(home, A)}


# ----------------------------------------------------------------------------- 7. retention


def test_journal_is_bounded_by_max_entries(lab: Lab, capsys: Out) -> None:
    lab.config["history"] = {"max_entries": 3}
    lab.config["safety"]["removal_confirmations"] = 1
    _tools(lab, A)
    assert lab.cli("sync") == 0  # baseline + 1 change
    for n, ip in enumerate(["172.16.1.1", "172.16.1.2", "172.16.1.3", "172.16.1.4"], start=10):
        lab.add_instance(f"i-{n}", "tools", ip)
        assert lab.cli("sync") == 0
    lab.remove_instance("i-10")
    assert lab.cli("sync") == 0  # 6 changes in all, 7 entries written
    assert _ids(lab) == [5, 6, 7]
    assert [e["id"] for e in _entries(lab, capsys)] == [5, 6, 7]
    assert _entries(lab, capsys)[-1]["removed"]


def test_journal_is_bounded_by_retention_days_the_newest_stays(lab: Lab, capsys: Out) -> None:
    lab.config["history"] = {"retention_days": 0.001}  # 86.4 s
    lab.config["safety"]["removal_confirmations"] = 1
    _tools(lab, A)
    assert lab.cli("sync") == 0
    lab.add_instance("i-2", "tools", B)
    assert lab.cli("sync") == 0
    assert _ids(lab) == [1, 2, 3]

    def age(entry_id: int, seconds: float) -> None:
        data = json.loads(_entry_file(lab, entry_id).read_text())  # the summary
        data["time"] -= seconds
        _entry_file(lab, entry_id).write_text(json.dumps(data))

    age(1, 3600)
    age(2, 3600)
    age(3, 60)  # younger than the retention: stays
    lab.add_instance("i-3", "tools", C)
    assert lab.cli("sync") == 0
    assert _ids(lab) == [3, 4]

    # every entry older than the retention, the newest included: the newest stays
    age(3, 3600)
    age(4, 3600)
    from nfs_exportd.memory import journal

    assert journal.prune(lab.state_dir, retention_days=0.001, max_entries=10, now=time.time()) == [
        3
    ]
    assert _ids(lab) == [4]
    # each entry's files went with its summary
    assert sorted(p.name for p in (lab.state_dir / "history").iterdir()) == [
        "000004.files.json",
        "000004.json",
    ]
    # and a journal with one entry has nothing before it to roll back to
    assert lab.cli("rollback") == 2
    assert [e["id"] for e in _entries(lab, capsys)] == [4]


# ----------------------------------------------------------------------------- 8. beside run


def test_rollback_beside_a_running_daemon(lab: Lab, capsys: Out, tmp_path: Path) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    lab.config["interval_seconds"] = 1
    # exportfs that takes 1 s, so that the rollback below starts while a cycle applies
    started = tmp_path / "exportfs-started"
    slow = tmp_path / "slow-exportfs"
    slow.write_text(f'#!/bin/sh\ntouch {started}\nsleep 1\nexec {SANDBOX} "$@"\n')
    slow.chmod(0o755)
    lab.config["exportfs_command"] = [str(slow), str(lab.root / "sb")]
    home = _tools(lab, A, B)
    proc: subprocess.Popen[str] | None = None
    try:
        proc = lab.start_run()
        wait_for(lambda: lab.in_force() == {(home, A), (home, B)}, "first cycle")
        wait_for(lambda: lab.status().get("last_cycle", {}).get("result") == "ok", "converged")
        id_before = _ids(lab)[-1]
        started.unlink()
        lab.remove_instance("i-2")
        lab.write()
        wait_for(started.exists, "the daemon applying the removal")

        # the cycle in progress holds the lock: rollback waits for it, then undoes it
        out = _run(lab, capsys, "rollback")
        assert f"rolled back to journal entry {id_before}" in out
        kinds = [(e["id"], e["kind"]) for e in _entries(lab, capsys)[-2:]]
        assert kinds == [(id_before + 1, "sync"), (id_before + 2, "rollback")]
        assert _entry(lab, id_before + 1)["removed"][0][2] == B
        assert lab.in_force() == {(home, A), (home, B)}
        assert proc.poll() is None

        def finished() -> float:
            last = lab.status().get("last_cycle") or {}
            return float(last.get("finished") or 0)

        seen = {finished()}
        deadline = time.monotonic() + 20
        while len(seen) < 4 and time.monotonic() < deadline:
            assert lab.in_force() == {(home, A), (home, B)}, "the daemon undid the rollback"
            seen.add(finished())
            time.sleep(0.05)
        assert len(seen) >= 4, "the daemon did not run 3 cycles"
        assert lab.in_force() == {(home, A), (home, B)}
        assert _ids(lab)[-1] == id_before + 2
        st = lab.status()
        assert st.get("rollback_hold")
        assert "rollback-hold" in st.get("holds_by_reason", {})
        assert st["last_cycle"]["result"] == "held"

        assert "released" in _run(lab, capsys, "release")
        wait_for(lambda: lab.in_force() == {(home, A)}, "the daemon applies the cloud again")
        wait_for(lambda: not lab.status().get("rollback_hold"), "status without the hold")
        assert proc.poll() is None
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=10)
    assert proc.returncode == 0


# ----------------------------------------------------------------------------- 9. corrupt entry


def test_corrupt_journal_entry_is_reported_never_used(
    lab: Lab, capsys: Out, caplog: pytest.LogCaptureFixture
) -> None:
    lab.config["safety"]["removal_confirmations"] = 1
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    id_a = _ids(lab)[-1]
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 0
    files_b, etab_b = lab.files(), lab.in_force()
    _entry_file(lab, id_a).write_text('{"schema": 1, "id": 2, "files": {"tools.exp')

    caplog.clear()
    assert lab.cli("history") == 1
    assert _entry_file(lab, id_a).name in caplog.text
    caplog.clear()
    assert lab.cli("history", "--json") == 1
    assert _entry_file(lab, id_a).name in caplog.text

    ids_before = _ids(lab)
    for args in (("rollback", "--to", str(id_a)), ("rollback",)):
        caplog.clear()
        assert lab.cli(*args) == 1
        assert _entry_file(lab, id_a).name in caplog.text
        assert lab.files() == files_b and lab.in_force() == etab_b == {(home, A)}
        assert _ids(lab) == ids_before
        assert not _marker(lab).exists()


def test_rollback_never_gives_a_moved_volume_back(lab: Lab, capsys: Out) -> None:
    """An entry from before /srv/shared/data moved from project a to project b: the
    rollback restores a's other lines, drops (and reports) the moved one, and
    rollback-hold keeps it dropped."""
    lab.config["safety"]["removal_confirmations"] = 1
    shared = lab.srv("shared", "data")
    a_home = lab.srv("a", "home")
    lab.add_project("a", 1000, {"home": a_home, "data": shared})
    lab.add_project("b", 1001, {"home": lab.srv("b", "home")})
    lab.add_instance("a1", "a", C)
    lab.add_instance("b1", "b", D)
    _run(lab, capsys, "sync")
    before_move = _ids(lab)[-1]
    lab.projects["a"]["mounts"].pop("data")
    lab.projects["b"]["mounts"]["data"] = f"{HOST}:{shared}"
    _run(lab, capsys, "sync")
    assert (shared, C) not in lab.in_force() and (shared, D) in lab.in_force()

    out = _run(lab, capsys, "rollback", "--to", str(before_move))
    assert f"dropped a {shared} {C}: path now served for project b" in out, out
    assert (shared, C) not in lab.in_force()
    assert (a_home, C) in lab.in_force()
    _run(lab, capsys, "sync", code=3)  # rollback-hold
    assert (shared, C) not in lab.in_force()


# ----------------------------------------------------------------------------- 10. full journal


def _with_full_journal(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI (``args``) as a real process in a private mount namespace where
    state_dir/history is a tiny tmpfs holding a copy of the journal, filled up: writing a
    journal entry fails with ENOSPC, nothing else in state_dir does (as in
    test_trust_apply, for sync).  The mount dies with the namespace: afterwards history
    is the one on disk, unchanged."""
    history = lab.state_dir / "history"
    history.mkdir(parents=True, exist_ok=True)
    saved = lab.root / "saved-history"
    shutil.copytree(history, saved)
    h, s = shlex.quote(str(history)), shlex.quote(str(saved))
    script = "\n".join(
        [
            "set -eu",
            f"mount -t tmpfs -o size=256k,mode=0755 nfs-exportd-test {h}",
            f"cp -a {s}/. {h}/",
            f"dd if=/dev/zero of={h}/.filler bs=4096 2>/dev/null || true",
            f"test -s {h}/.filler",
            "set +e",
            shlex.join(cli_argv(lab, *args)),
        ]
    )
    return subprocess.run(
        [*namespace_prefix(), "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_not_journaled(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit 1, no traceback, and stderr says: applied, not recorded, why, what to do."""
    err = proc.stderr
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert "applied and verified" in err and "not recorded" in err, err
    assert "the journal could not be written" in err and "then run sync" in err, err
    assert "No space left on device" in err, err


def _assert_unjournaled_named(lab: Lab, capsys: Out) -> None:
    """The text ``status`` and ``check`` name the change the journal lacks (cause, then
    the fix), with or without a cycle before it; check is CRITICAL, as after a sync
    whose journal failed."""
    out = _run(lab, capsys, "status")
    line = next((ln for ln in out.splitlines() if "not in the journal" in ln), "")
    assert "No space left on device" in line and "then run sync" in line, out
    assert line.index("not in the journal") < line.index("free space in state_dir"), line
    out = _run(lab, capsys, "check", code=2)
    assert out.startswith("NFS-EXPORTD CRITICAL - "), out
    assert "not in the journal" in out and "No space left on device" in out, out
    assert "then run sync" in out and "no cycle has run yet (is" not in out, out


def test_rollback_applied_but_not_journaled_is_reported_then_journaled(
    lab: Lab, capsys: Out
) -> None:
    """The one apply-and-remember sequence: a rollback whose journal cannot be written
    (its disk really full) is applied, keeps its rollback-hold marker, exits 1 naming
    what was not recorded, and leaves ``unjournaled`` in status; the next sync journals
    the catch-up."""
    home = _tools(lab, A, B)
    assert lab.cli("sync") == 0
    id_a = _ids(lab)[-1]
    lab.remove_instance("i-2")
    lab.config["safety"]["removal_confirmations"] = 1
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, A)}
    entries = _ids(lab)

    _assert_not_journaled(_with_full_journal(lab, "rollback", "--to", str(id_a)))
    assert lab.in_force() == {(home, A), (home, B)}  # applied, not undone
    assert _marker(lab).exists()  # the daemon does not undo it
    assert _ids(lab) == entries
    st = lab.status()
    assert st["unjournaled"] and "No space left" in st["unjournaled"]["message"]
    _assert_unjournaled_named(lab, capsys)

    assert lab.cli("sync") == 3  # the rollback hold holds
    assert lab.status().get("unjournaled") is None
    last = _entries(lab, capsys)[-1]
    assert last["reason"].startswith("catch-up")
    assert {tuple(r[:3]) for r in last["added"]} == {("tools", home, B)}


@pytest.mark.parametrize("journal", [False, True], ids=["switch-over", "with-a-journal"])
def test_adopt_applied_but_not_journaled_is_reported_then_journaled(
    lab: Lab, capsys: Out, journal: bool
) -> None:
    """The same sequence for ``adopt``: the original daemon's header-less file is taken
    over (applied and verified: ours now, nothing removed) while the journal's disk is
    full; exit 1 naming what was not recorded, ``unjournaled`` in ``status --json``; the
    next sync records it: with a journal, as a catch-up entry; at the switch-over (no
    journal yet), in the baseline that starts the journal."""
    if journal:
        lab.add_project("web", 50381)
        lab.add_instance("w-1", "web", D)
        assert lab.cli("sync") == 0
    entries = _ids(lab)
    home = _tools(lab, A, B)
    original = f"{home} -rw,nohide,no_subtree_check,async,no_root_squash {A} {B}\n"
    (lab.exports_dir / "tools.exports").write_text(original)
    lab.write()
    lab.exportfs("-ra")
    before = lab.in_force()
    assert {(home, A), (home, B)} <= before

    _assert_not_journaled(_with_full_journal(lab, "adopt"))
    adopted = (lab.exports_dir / "tools.exports").read_text()
    assert adopted.startswith(HEADER_PREFIX + "project=tools"), adopted
    assert lab.in_force() == before  # adopted, nothing removed, not undone
    assert _ids(lab) == entries
    st = _json(lab, capsys, "status", "--json")
    assert st["unjournaled"] and "No space left" in st["unjournaled"]["message"], st
    assert ("last_cycle" in st) == journal, st  # the switch-over: no cycle yet
    _assert_unjournaled_named(lab, capsys)

    assert lab.cli("sync") == 0  # (it also applies the configured options)
    assert lab.status().get("unjournaled") is None
    assert "not in the journal" not in _run(lab, capsys, "status")
    assert "not in the journal" not in _run(lab, capsys, "check")
    assert lab.in_force() == before
    new = _entries(lab, capsys)[len(entries) :]
    assert [e["kind"] for e in new] == (["sync", "sync"] if journal else ["baseline", "sync"])
    if journal:
        assert new[0]["reason"].startswith("catch-up"), new[0]
        added = {tuple(r[:3]) for r in new[0]["added"]}
        assert added == {("tools", home, A), ("tools", home, B)}
    else:
        assert (
            HEADER_PREFIX + "project=tools" in _entry(lab, new[0]["id"])["files"]["tools.exports"]
        )
    assert {tuple(r[:2]) for r in new[1]["updated"]} == {("tools", home)}  # the options
