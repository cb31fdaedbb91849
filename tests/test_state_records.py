"""The files nfs-exportd keeps in ``state_dir`` are typed records (issue 11): files the
previous version wrote load and keep their keys, and a bad file is refused naming the
file and the key, never half-read.  The samples below are what the previous version
(before the records) wrote after a sync, a held sync and a rollback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Lab
from nfs_exportd.apply import pending
from nfs_exportd.decide import Reason
from nfs_exportd.errors import StateError
from nfs_exportd.memory import journal, state
from nfs_exportd.memory import status as status_file
from nfs_exportd.model import Maintenance, PairKey

HOME = "/srv/tools/home"
PAWS = "/srv/paws/home"

OLD_STATUS = {
    "applied": {"add": 0, "remove": 0, "update": 0},
    "counts": {"clients": 4, "exports": 2, "files": 2, "pairs": 4, "projects": 2},
    "first_cycle": 1796542815.511977,
    "held_since": 1796542815.7013814,
    "hold_first_seen": {f"unknown-project|paws|{PAWS}|": 1796542815.7013814},
    "holds_by_reason": {"pending-confirmation": 1, "unknown-project": 1},
    "inventory": {
        "complete": True,
        "incomplete_projects": {"paws": "marked incomplete by the inventory writer"},
        "problem": None,
        "source": "/etc/nfs-exportd/inventory.yaml",
    },
    "last_complete_inventory": 1796542815.720537,
    "last_cycle": {
        "finished": 1796542815.720405,
        "message": "sync held: 0 to add, 0 to remove, held: pending-confirmation=1, "
        "unknown-project=1; 0 files written, 0 removed; exportfs not run",
        "result": "held",
        "started": 1796542815.7013814,
    },
    "maintenance": "off",
    "plan": {
        "changes": [],
        "checksum": "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
        "holds": [
            {
                "client": None,
                "detail": "marked incomplete by the inventory writer",
                "path": PAWS,
                "project": "paws",
                "reason": "unknown-project",
            },
            {
                "action": "remove",
                "client": "172.16.0.6",
                "detail": "1 of 3 confirmations (instance-gone)",
                "path": HOME,
                "project": "tools",
                "reason": "pending-confirmation",
            },
        ],
        "schema": 1,
    },
    "rollback_hold": None,
    "schema": 1,
    "unjournaled": None,
}
# a first cycle that failed: only these keys
OLD_ERROR_STATUS = {
    "first_cycle": 1796542815.5,
    "last_cycle": {
        "error": "ApplyError",
        "finished": 1796542816.0,
        "message": "exportfs_command '/usr/sbin/exportfs' not found",
        "result": "error",
        "started": 1796542815.5,
    },
    "schema": 1,
}


def _old_json(data: object) -> str:
    """How the previous version wrote status.json (and the journal summaries)."""
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


# ------------------------------------------------------------------------ status.json


@pytest.mark.parametrize("old", [OLD_STATUS, OLD_ERROR_STATUS], ids=["held", "first-error"])
def test_an_old_status_loads_and_is_written_back_unchanged(tmp_path: Path, old: object) -> None:
    text = _old_json(old)
    (tmp_path / "status.json").write_text(text)
    st = status_file.load(tmp_path)
    assert st is not None and st.to_json() == old
    status_file.save(tmp_path, st)
    assert (tmp_path / "status.json").read_text() == text  # byte for byte


def test_the_status_record_reads_as_attributes(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text(_old_json(OLD_STATUS))
    st = status_file.load(tmp_path)
    assert st is not None and st.last_cycle is not None and st.inventory is not None
    assert (st.last_cycle.result, st.last_cycle.error) == ("held", "")
    assert st.last_cycle.finished == 1796542815.720405
    assert st.counts.pairs == 4 and st.counts.clients == 4 and st.counts.projects == 2
    assert st.maintenance is Maintenance.OFF
    assert st.inventory.incomplete_projects == {"paws": "marked incomplete by the inventory writer"}
    assert st.plan is not None and st.plan.holds[1].reason is Reason.PENDING_CONFIRMATION
    assert st.held_since == 1796542815.7013814 and st.unjournaled is None


def test_no_status_file_is_none(tmp_path: Path) -> None:
    assert status_file.load(tmp_path) is None
    assert status_file.load_or_empty(tmp_path).last_cycle is None


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d["last_cycle"].update(result="maybe"), "last_cycle.result"),
        (lambda d: d["counts"].update(pairs="4"), "counts.pairs"),
        (lambda d: d["counts"].update(pairs=-1), "counts.pairs"),
        (lambda d: d.update(held_since=True), "held_since"),
        (lambda d: d["plan"]["holds"][0].update(reason="whatever"), "plan.holds[0].reason"),
        (lambda d: d.update(extra_key=1), "extra_key"),
        (lambda d: d.update(last_cycle={"finished": 1.0}), "last_cycle.started"),
    ],
    ids=["result", "count-text", "count-negative", "bool-time", "reason", "unknown", "missing"],
)
def test_a_bad_status_names_the_file_and_the_key(tmp_path: Path, edit: object, key: str) -> None:
    data = json.loads(json.dumps(OLD_STATUS))
    edit(data)  # type: ignore[operator]
    (tmp_path / "status.json").write_text(json.dumps(data))
    with pytest.raises(StateError) as err:
        status_file.load(tmp_path)
    assert f"{tmp_path / 'status.json'}: {key}" in str(err.value), str(err.value)
    assert status_file.load_or_empty(tmp_path).last_cycle is None  # the writer starts afresh


def test_check_names_the_key_of_a_bad_status(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    path = lab.state_dir / "status.json"
    data = json.loads(path.read_text())
    data["last_cycle"]["finished"] = "yesterday"
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert lab.cli("check") == 3
    line = capsys.readouterr().out.strip()
    assert line.startswith("NFS-EXPORTD UNKNOWN - ")
    assert "status.json: last_cycle.finished: Input should be a valid number" in line, line
    # the next cycle writes it afresh
    assert lab.cli("sync") == 0
    assert lab.cli("check") == 0


# ---------------------------------------------------------------------- counters.json

OLD_COUNTERS = {
    "schema": 1,
    "counters": [{"owner": "tools", "path": HOME, "client": "172.16.0.6", "missing": 1}],
    "absent_projects": [{"name": "gone", "since": 1796542000.5, "cycles": 2}],
    "known_ids": {"paws": "id-paws", "tools": "id-tools"},
    "instances": {"paws": 1, "tools": 1},
    "project_deletions": [{"name": "older", "time": 1796541000.0}],
    "last_counted": 1796542815.702439,
}


def test_old_counters_load_with_their_memory(tmp_path: Path) -> None:
    (tmp_path / "counters.json").write_text(json.dumps(OLD_COUNTERS, indent=1) + "\n")
    c = state.load_counters(tmp_path, move_corrupt=True)
    assert c.problem is None
    assert dict(c.values) == {PairKey("tools", HOME, "172.16.0.6"): 1}
    m = c.memory
    assert (m.absent["gone"].since, m.absent["gone"].cycles) == (1796542000.5, 2)
    assert dict(m.known_ids) == {"paws": "id-paws", "tools": "id-tools"}
    assert dict(m.instances) == {"paws": 1, "tools": 1}
    assert dict(m.deletions) == {"older": 1796541000.0}
    assert m.last_counted == 1796542815.702439
    # and written again, the same content
    state.save_counters(tmp_path, c.values, c.memory)
    assert json.loads((tmp_path / "counters.json").read_text()) == OLD_COUNTERS


def test_counters_from_before_the_memory_load(tmp_path: Path) -> None:
    old = {"schema": 1, "counters": OLD_COUNTERS["counters"]}
    (tmp_path / "counters.json").write_text(json.dumps(old))
    c = state.load_counters(tmp_path, move_corrupt=True)
    assert c.problem is None and len(c.values) == 1
    assert not c.memory.absent and not c.memory.known_ids and c.memory.last_counted is None


def test_rebuilding_is_kept(tmp_path: Path) -> None:
    state.save_counters(tmp_path, {}, rebuilding="counters.json: was corrupt")
    assert state.load_counters(tmp_path, move_corrupt=True).problem == "counters.json: was corrupt"


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d["counters"][0].update(missing=-1), "counters[0].missing"),
        (lambda d: d["counters"][0].update(missing=True), "counters[0].missing"),
        (lambda d: d["counters"][0].pop("client"), "counters[0].client"),
        (lambda d: d["known_ids"].update(tools=5), "known_ids.tools"),
        (lambda d: d["instances"].update(tools=1.5), "instances.tools"),
        (lambda d: d["absent_projects"][0].update(since=float("nan")), "absent_projects[0].since"),
        (lambda d: d.update(schema=2), "schema"),
    ],
    ids=["negative", "bool", "no-client", "id-number", "count-float", "nan", "schema"],
)
def test_bad_counters_are_kept_aside_naming_the_key(tmp_path: Path, edit: object, key: str) -> None:
    data = json.loads(json.dumps(OLD_COUNTERS))
    edit(data)  # type: ignore[operator]
    (tmp_path / "counters.json").write_text(json.dumps(data))
    c = state.load_counters(tmp_path, move_corrupt=True)
    assert c.problem is not None and f"{tmp_path / 'counters.json'}: {key}:" in c.problem
    assert "kept aside as counters.json.corrupt-" in c.problem
    assert not c.values and not c.memory.known_ids  # nothing of it is used
    assert not (tmp_path / "counters.json").exists()


# ------------------------------------------------------------------------ the journal

OLD_ENTRY = {
    "added": [["tools", HOME, "172.16.0.5", "new-export"]],
    "checksum": "3d689faf8d4240023d78bd6380cbf7feba0e924d093f92289ac18afa0d505fa9",
    "files": 1,
    "id": 2,
    "kind": "sync",
    "reason": "1 to add, 0 to remove, nothing held",
    "removed": [["tools", HOME, "172.16.0.6", "instance-gone"]],
    "schema": 1,
    "time": 1796542815.6563914,
    "updated": [],
    "user": "root",
}
TOOLS_FILE = (
    "# nfs-exportd managed file, do not edit: project=tools\n# keystone-id=id-tools\n"
    f"{HOME} -rw,sync,no_subtree_check,root_squash 172.16.0.5\n"
)
OLD_FILES = {"schema": 1, "id": 2, "files": {"tools.exports": TOOLS_FILE}}


def _journal(tmp_path: Path, entry: object, files: object = OLD_FILES) -> Path:
    hdir = tmp_path / journal.HISTORY
    hdir.mkdir(exist_ok=True)
    (hdir / "000002.json").write_text(_old_json(entry))
    (hdir / "000002.files.json").write_text(json.dumps(files, indent=1) + "\n")
    return hdir / "000002.json"


def test_an_old_journal_entry_loads_with_its_files(tmp_path: Path) -> None:
    path = _journal(tmp_path, OLD_ENTRY)
    e = journal.load(tmp_path, 2)
    assert (e.id, e.kind, e.user, e.file_count) == (2, "sync", "root", 1)
    assert [p.as_row() for p in e.added] == [("tools", HOME, "172.16.0.5", "new-export")]
    assert [p.as_row() for p in e.removed] == [("tools", HOME, "172.16.0.6", "instance-gone")]
    assert e.files == {"tools.exports": TOOLS_FILE}
    assert e.summary() == OLD_ENTRY  # history --json: the same record
    assert _old_json(e.summary()) == path.read_text()


def test_an_entry_of_an_older_version_without_user_loads(tmp_path: Path) -> None:
    old = {k: v for k, v in OLD_ENTRY.items() if k not in ("user", "checksum")}
    _journal(tmp_path, old)
    (e,) = journal.entries(tmp_path)
    assert (e.user, e.checksum) == ("", "")


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d.update(kind="undo"), "kind"),
        (lambda d: d.update(time="now"), "time"),
        (lambda d: d["added"][0].pop(), "added[0]"),
        (lambda d: d.update(files=True), "files"),
    ],
    ids=["kind", "time", "short-row", "files-bool"],
)
def test_a_bad_journal_entry_names_the_file_and_key(tmp_path: Path, edit: object, key: str) -> None:
    data = json.loads(json.dumps(OLD_ENTRY))
    edit(data)  # type: ignore[operator]
    path = _journal(tmp_path, data)
    with pytest.raises(StateError) as err:
        journal.entries(tmp_path)
    assert f"{path}: {key}" in str(err.value), str(err.value)


def test_files_of_another_entry_are_refused(tmp_path: Path) -> None:
    _journal(tmp_path, OLD_ENTRY, {**OLD_FILES, "id": 3})
    with pytest.raises(StateError, match=r"000002\.files\.json: id 3 .* does not belong"):
        journal.load(tmp_path, 2)
    _journal(tmp_path, OLD_ENTRY, {**OLD_FILES, "files": {"tools.exports": 7}})
    with pytest.raises(StateError, match=r"000002\.files\.json: files\.tools\.exports: "):
        journal.load(tmp_path, 2)


# --------------------------------------------------------------------------- markers

OLD_MARKER = {"dropped": [], "entry": 3, "time": 1796542815.8842611, "to": 1, "user": "root"}


def test_an_old_rollback_hold_marker_loads(tmp_path: Path) -> None:
    (tmp_path / state.ROLLBACK_HOLD).write_text(_old_json(OLD_MARKER))
    marker = state.load_rollback_hold(tmp_path)
    assert isinstance(marker, state.RollbackHold)
    assert (marker.to, marker.entry, marker.user, marker.since) == (
        1,
        3,
        "root",
        OLD_MARKER["time"],
    )
    assert marker.detail().startswith("rolled back to journal entry 1 at ")
    assert marker.detail().endswith(" by root; run 'nfs-exportd release' to resume changes")
    state.save_rollback_hold(tmp_path, marker)
    assert json.loads((tmp_path / state.ROLLBACK_HOLD).read_text()) == OLD_MARKER


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("{not json", "Invalid JSON"),
        ('{"time": "yesterday", "to": 1}', "rollback-hold: time: "),
        ('{"time": 1.0, "to": 1, "dropped": [["a", "/srv/a"]]}', "rollback-hold: dropped[0]"),
    ],
    ids=["json", "time", "dropped"],
)
def test_a_bad_rollback_hold_marker_still_holds_naming_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    (tmp_path / state.ROLLBACK_HOLD).write_text(text)
    marker = state.load_rollback_hold(tmp_path)
    assert marker is not None  # written on purpose: it holds
    assert named in marker.detail() and marker.detail().endswith("run release to clear")
    assert marker.since is None


def test_apply_pending_marker(tmp_path: Path) -> None:
    path = tmp_path / "apply-pending"
    assert pending.interrupted(path) is None
    pending.write(path)
    now = pending.interrupted(path)
    assert now is not None and now.startswith(f"pid {os.getpid()}, started ")
    path.write_text("4242\n")  # the previous version's marker: the pid alone
    assert pending.interrupted(path) == "pid 4242"
    path.write_text('{"pid": "x"}')  # any marker at all means interrupted
    problem = pending.interrupted(path)
    assert problem is not None and f"{path}: pid: " in problem


def test_the_status_line_reads_the_record(tmp_path: Path) -> None:
    """systemd's STATUS= line: pairs, not clients (4 pairs, 3 clients here)."""
    from nfs_exportd.commands.run import status_line

    data = json.loads(json.dumps(OLD_STATUS))
    data["counts"]["clients"] = 3
    data["maintenance"] = "hold"
    (tmp_path / "status.json").write_text(json.dumps(data))
    st = status_file.load(tmp_path)
    assert st is not None
    assert status_line(st).split("; ")[1:] == [
        "2 projects, 4 pairs in force",
        "held: pending-confirmation=1, unknown-project=1",
        "maintenance hold",
    ]
    assert status_line(status_file.Status()).startswith("no cycle yet at ")


def test_unjournaled_keeps_its_first_time_until_the_journal_catches_up(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """status.json's ``unjournaled`` says since when the journal lacks a change: the
    first cycle that could not journal, however many follow."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    history = lab.state_dir / journal.HISTORY
    history.rename(lab.root / "history-aside")
    history.write_text("not a directory: the journal cannot be written\n")
    since = []
    for n in range(2):
        lab.add_instance(f"i-{n + 2}", "tools", f"172.16.0.{n + 6}")
        assert lab.cli("sync") == 1  # applied, not journaled
        st = status_file.load(lab.state_dir)
        assert st is not None and st.unjournaled is not None and st.last_cycle is not None
        assert "journal" in st.unjournaled.message
        since.append((st.unjournaled.since, st.last_cycle.started))
    assert since[1][0] == since[0][0] == since[0][1] < since[1][1]
    history.unlink()
    (lab.root / "history-aside").rename(history)
    assert lab.cli("sync") == 0
    st = status_file.load(lab.state_dir)
    assert st is not None and st.unjournaled is None
    (e,) = journal.entries(lab.state_dir)[-1:]
    assert e.reason.startswith("catch-up: changes applied since ")
