"""The static inventory (issue 2, point 4): the contract's format; anything wrong with the
file is *unknown data* (the cycle holds with exit 3, nothing changes); an instance with
status UNKNOWN makes its project unknown while others change; DELETED instances are gone;
``incomplete_projects`` (extension) marks projects the writer could not read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Lab
from nfs_exportd.cli import main
from nfs_exportd.read.inventory.static import StaticInventory

HEADER = "# nfs-exportd managed file, do not edit: project="
OPTS = "-rw,sync,no_subtree_check,root_squash"

Snapshot = tuple[set[tuple[str, str]], dict[str, str]]


def snapshot(lab: Lab) -> Snapshot:
    return lab.in_force(), lab.files()


def run_raw(lab: Lab, *args: str) -> int:
    """The CLI without rewriting the lab's files (lab.cli() rewrites the inventory)."""
    pre = ["--config", str(lab.config_path)]
    if os.geteuid() == 0:
        pre.append("--allow-root")
    return main([*pre, *args])


def plan_raw(lab: Lab, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert run_raw(lab, "plan", "--json") == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def eager(lab: Lab) -> None:
    """Safety that would let any wrong "nothing there" through at once: only the
    unknown-data rules stand between a bad file and the exports in force."""
    lab.config["safety"] = {
        "removal_confirmations": 1,
        "max_removal_fraction": 1.0,
        "min_removal_count": 0,
    }


# --------------------------------------------------------------------------- the format


def test_contract_format(lab: Lab) -> None:
    lab.add_project("tools", 50380)
    lab.add_project("paws", 52771)
    lab.inventory["projects"][0]["id"] = "9f1c"
    lab.inventory["projects"][1]["id"] = 4711  # writers may emit numeric ids
    lab.add_instance("i-17", "tools", "172.16.0.10", "fd00:0:0::0a")
    lab.add_instance("i-18", "tools", "172.16.0.5", "fd00::5")
    lab.add_instance("i-19", "tools", "172.16.0.5")  # an address seen twice: one client
    lab.add_instance("i-20", "tools", "198.51.100.20", status="SHUTOFF")  # keeps its address
    lab.add_instance("i-21", "tools", "203.0.113.21", status="ERROR")
    lab.add_instance("i-22", "tools", status="BUILD")  # no address yet
    assert lab.cli("sync") == 0
    home = lab.srv("tools", "home")
    assert lab.files() == {
        # a project with no instances: header (and its id) only
        "paws.exports": f"{HEADER}paws\n# keystone-id=4711\n",
        "tools.exports": f"{HEADER}tools\n# keystone-id=9f1c\n"
        f"{home} {OPTS} 172.16.0.5 172.16.0.10 198.51.100.20 203.0.113.21 fd00::5 fd00::a\n",
    }
    assert lab.in_force() == {
        (home, c)
        for c in (
            "172.16.0.5",
            "172.16.0.10",
            "198.51.100.20",
            "203.0.113.21",
            "fd00::5",
            "fd00::a",
        )
    }


def test_the_designs_example_parses(tmp_path: Path) -> None:
    f = tmp_path / "inventory.yaml"
    f.write_text(
        "projects:\n"
        "  - {id: 9f1c, name: tools, enabled: true}\n"
        "instances:\n"
        "  - {id: i-17, name: tools-worker-1, project: tools, status: ACTIVE,\n"
        '     addresses: ["172.16.0.5", "fd00::5"]}   # project by name; fixed addresses only\n'
    )
    snap = StaticInventory(f).read()
    assert snap.problem is None and snap.listing_complete
    assert snap.projects is not None and snap.projects["tools"].id == "9f1c"
    (inst,) = snap.instances["tools"]
    assert (inst.id, inst.name, inst.status) == ("i-17", "tools-worker-1", "ACTIVE")
    assert [str(a) for a in inst.addresses] == ["172.16.0.5", "fd00::5"]
    assert snap.project_complete("tools")


# --------------------------------------------------------------------------- unknown data


@pytest.fixture
def good(lab: Lab) -> tuple[Lab, Snapshot]:
    eager(lab)
    lab.add_project("tools", 50380)
    lab.add_project("paws", 52771)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    lab.add_instance("i-3", "paws", "172.16.1.5", "fd00::1:5")
    assert lab.cli("sync") == 0
    before = snapshot(lab)
    assert len(before[0]) == 4
    return lab, before


def assert_held(
    lab: Lab, before: Snapshot, capsys: pytest.CaptureFixture[str], *named: str
) -> dict[str, Any]:
    """Sync holds (3) with unknown-inventory naming the culprit; nothing changes."""
    capsys.readouterr()
    assert run_raw(lab, "sync") == 3
    captured = capsys.readouterr()
    assert "held" in captured.out
    assert snapshot(lab) == before
    plan = plan_raw(lab, capsys)
    assert plan["changes"] == []
    top = [h for h in plan["holds"] if h["reason"] == "unknown-inventory" and h["project"] is None]
    assert len(top) == 1, plan["holds"]
    detail = top[0]["detail"]
    for n in named:
        assert n in detail, f"{n!r} not in {detail!r}"
        assert n in captured.err  # and the log says it too
    assert {h["reason"] for h in plan["holds"]} == {"unknown-inventory"}
    # a second cycle: still nothing (no counting, no drift)
    assert run_raw(lab, "sync") == 3
    assert snapshot(lab) == before
    capsys.readouterr()
    assert run_raw(lab, "status", "--json") == 0
    st = json.loads(capsys.readouterr().out)
    assert st["inventory"]["complete"] is False
    assert st["holds_by_reason"].get("unknown-inventory", 0) >= 1
    return plan


def write_inventory(lab: Lab, content: str | bytes | dict[str, Any]) -> Path:
    lab.write()
    path = lab.root / "inventory.yaml"
    if isinstance(content, dict):
        path.write_text(yaml.safe_dump(content, sort_keys=False))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_directory_in_place_of_the_file(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    path = write_inventory(lab, "")
    path.unlink()
    path.mkdir()
    assert_held(lab, before, capsys, str(path), "cannot read")


def test_missing_file(good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]) -> None:
    """A tool that rewrites the file may be between unlink and rename: unknown, not empty."""
    lab, before = good
    path = write_inventory(lab, "")
    path.unlink()
    assert_held(lab, before, capsys, str(path))


def test_invalid_utf8(good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]) -> None:
    lab, before = good
    path = write_inventory(lab, b"projects:\n  - {id: x, name: t\xe9ools}\n")
    assert_held(lab, before, capsys, str(path), "cannot read")


@pytest.mark.parametrize(
    "content",
    [
        "projects: [{id: 9f1c, name: tools\n",
        "projects:\n  - id: a\n\t- id: b\n",
        "instances: *undefined\n",
        "projects: []\n---\nprojects: []\n",
    ],
    ids=["unclosed", "tab", "alias", "two-documents"],
)
def test_unparsable_yaml(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], content: str
) -> None:
    lab, before = good
    path = write_inventory(lab, content)
    assert_held(lab, before, capsys, str(path), "not valid YAML")


def test_truncated_file(good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]) -> None:
    """A writer that died right after the project listing: the file still parses.  Either
    the reader calls it unknown (no 'instances' key) or the size bound holds the mass
    removal; what must not happen is that every export goes."""
    lab, before = good
    lab.config["safety"] = {
        "removal_confirmations": 1,
        "max_removal_fraction": 0.25,
        "min_removal_count": 0,
    }
    lab.write()
    text = (lab.root / "inventory.yaml").read_text()
    write_inventory(lab, text[: text.index("instances:")])
    capsys.readouterr()
    assert run_raw(lab, "sync") == 3
    assert snapshot(lab) == before
    held = {h["reason"] for h in plan_raw(lab, capsys)["holds"]}
    assert held and held <= {"unknown-inventory", "too-much-change"}


def _valid(lab: Lab) -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_dump(lab.inventory))


INVALID: list[tuple[str, Any, list[str]]] = [
    ("top-level-list", lambda d: [d], ["expected a mapping"]),
    ("top-level-empty", lambda d: None, ["expected a mapping"]),
    ("unknown-top-key", lambda d: {**d, "servers": []}, ["servers"]),
    ("projects-missing", lambda d: {"instances": d["instances"]}, ["projects"]),
    ("projects-not-list", lambda d: {**d, "projects": {"tools": {}}}, ["projects"]),
    ("instances-not-list", lambda d: {**d, "instances": {"i-1": {}}}, ["instances"]),
    ("project-not-mapping", lambda d: _set(d, "projects", 0, "tools"), ["projects[0]"]),
    (
        "project-unknown-key",
        lambda d: _upd(d, "projects", 0, domain="x"),
        ["projects[0]", "domain"],
    ),
    ("project-no-name", lambda d: _del(d, "projects", 0, "name"), ["projects[0]", "name"]),
    (
        "project-id-outside-the-grammar",
        lambda d: _upd(d, "projects", 0, id="9f1c *(rw)"),
        ["projects[0].id", "malformed project id"],
    ),
    ("project-no-id", lambda d: _del(d, "projects", 0, "id"), ["projects[0]", "id"]),
    ("project-enabled-str", lambda d: _upd(d, "projects", 0, enabled="yes"), ["tools", "enabled"]),
    (
        "duplicate-project-id",
        lambda d: _upd(d, "projects", 1, id=d["projects"][0]["id"]),
        ["paws", "id-tools", "twice"],
    ),
    (
        "duplicate-project-name",
        lambda d: _upd(d, "projects", 1, name="tools"),
        ["tools", "twice"],
    ),
    ("instance-not-mapping", lambda d: _set(d, "instances", 1, "i-2"), ["instances[1]"]),
    (
        "instance-unknown-key",
        lambda d: _upd(d, "instances", 1, flavor="g3.small"),
        ["instances[1]", "flavor"],
    ),
    (
        "instance-unknown-project",
        lambda d: _upd(d, "instances", 1, project="ghost"),
        ["i-2", "ghost"],
    ),
    (
        "duplicate-instance-id",
        lambda d: _upd(d, "instances", 2, id="i-1"),
        ["i-1", "twice"],
    ),
    ("instance-no-id", lambda d: _del(d, "instances", 1, "id"), ["instances[1]", "id"]),
    ("instance-no-project", lambda d: _del(d, "instances", 1, "project"), ["i-2", "project"]),
    ("instance-no-status", lambda d: _del(d, "instances", 1, "status"), ["i-2", "status"]),
    (
        "addresses-a-string",
        lambda d: _upd(d, "instances", 1, addresses="172.16.0.6"),
        ["i-2", "addresses"],
    ),
    ("addresses-missing", lambda d: _del(d, "instances", 1, "addresses"), ["i-2", "addresses"]),
    (
        "addresses-a-mapping",
        lambda d: _upd(d, "instances", 1, addresses={"public": ["172.16.0.6"]}),
        ["i-2", "addresses"],
    ),
    (
        "incomplete-projects-not-list",
        lambda d: {**d, "incomplete_projects": "tools"},
        ["incomplete_projects"],
    ),
]


def _set(d: dict[str, Any], key: str, i: int, value: Any) -> dict[str, Any]:
    d[key][i] = value
    return d


def _upd(d: dict[str, Any], key: str, i: int, **kw: Any) -> dict[str, Any]:
    d[key][i].update(kw)
    return d


def _del(d: dict[str, Any], key: str, i: int, field: str) -> dict[str, Any]:
    del d[key][i][field]
    return d


@pytest.mark.parametrize(("case", "mutate", "named"), INVALID, ids=[c for c, _, _ in INVALID])
def test_invalid_inventory(
    good: tuple[Lab, Snapshot],
    capsys: pytest.CaptureFixture[str],
    case: str,
    mutate: Any,
    named: list[str],
) -> None:
    lab, before = good
    data = mutate(_valid(lab))
    path = write_inventory(lab, yaml.safe_dump(data, sort_keys=False))
    assert_held(lab, before, capsys, str(path), *named)


BAD_ADDRESSES = [
    "172.16.0.300",
    "172.16.0",
    "172.016.000.006",  # leading zeros: ambiguous (octal to some parsers)
    "172.16.0.0/24",  # a network is not an instance's address
    "tools-worker-2.tools.example",  # a name: never handed to exportfs to resolve
    "fd00::1::2",
    "",
    " 172.16.0.6",
    "172.16.0.6 172.16.0.7",
    "*",
    6,
    None,
]


# The one address grammar (nfs_exportd.addresses), refused in the static file as in the
# cloud: zone ids (the exports-line injection of issue 10), loopback, link-local, ...
REFUSED_ADDRESSES = [
    "fe80::1%x *(rw,no_root_squash,insecure)",
    "fd00::6%eth0",
    "172.16.0.6\n/ *(rw)",
    "127.0.0.1",
    "::1",
    "0.0.0.0",
    "::",
    "169.254.0.6",
    "fe80::6",
    "224.0.0.6",
    "ff02::1",
    "255.255.255.255",
    "240.0.0.6",
    "fec0::6",
    "::172.16.0.6",  # IPv4-compatible (deprecated), not the IPv4-mapped form
    "\uff11\uff17\uff12.16.0.6",  # full-width digits
]


@pytest.mark.parametrize("address", BAD_ADDRESSES + REFUSED_ADDRESSES, ids=repr)
def test_invalid_address_holds_only_its_instances_project(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], address: Any
) -> None:
    """A bad address is data about one instance: its project keeps exactly what is in
    force (unknown-project, naming file, key, instance and value), the others go on."""
    lab, before = good
    data = _valid(lab)
    data["instances"][1]["addresses"] = ["172.16.0.6", address]
    data["instances"].append(
        {"id": "i-4", "name": "paws-i-4", "project": "paws", "status": "ACTIVE",
         "addresses": ["172.16.1.9"]}
    )  # fmt: skip
    path = write_inventory(lab, data)
    plan = plan_raw(lab, capsys)
    assert run_raw(lab, "sync") == 3
    holds = plan["holds"]
    assert {(h["reason"], h["project"]) for h in holds} == {("unknown-project", "tools")}
    detail = holds[0]["detail"]
    for n in (f"{path}: instances[1].addresses[1]", "'i-2'", "'tools-i-2'", "invalid address"):
        assert n in detail, f"{n!r} not in {detail!r}"
    assert "\n" not in detail  # one line: the value is shown escaped
    paws = lab.srv("paws", "home")
    assert lab.in_force() == before[0] | {(paws, "172.16.1.9")}
    assert plan["changes"] == [
        {"project": "paws", "path": paws, "client": "172.16.1.9", "action": "add",
         "reason": "new-instance"}
    ]  # fmt: skip
    assert "tools-i-2" not in "".join(lab.files().values())


def test_v4_mapped_address_is_its_ipv4_address(lab: Lab) -> None:
    """``::ffff:a.b.c.d`` is read as ``a.b.c.d`` before any comparison: written as IPv4,
    and an IPv4 address claimed that way by two projects is a conflict."""
    lab.add_project("tools", 50380)
    lab.add_project("paws", 52771)
    lab.add_instance("i-1", "tools", "::ffff:172.16.0.5", "::FFFF:AC10:0007")
    assert lab.cli("sync") == 0
    tools = lab.srv("tools", "home")
    assert lab.in_force() == {(tools, "172.16.0.5"), (tools, "172.16.0.7")}
    lab.add_instance("i-2", "paws", "172.16.0.5")
    assert lab.cli("sync") == 3  # ip-conflict: exported for neither
    assert lab.in_force() == {(tools, "172.16.0.7")}
    assert lab.status()["holds_by_reason"] == {"ip-conflict": 1}


def test_incomplete_cycles_neither_count_nor_reset(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.config["safety"] = {"removal_confirmations": 2, "max_removal_fraction": 1.0}
    lab.add_project("tools", 50380)
    home = lab.srv("tools", "home")
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 3  # 1 of 2
    for _ in range(3):
        write_inventory(lab, "projects: [\n")
        assert run_raw(lab, "sync") == 3
        assert (home, "172.16.0.6") in lab.in_force()
    assert lab.cli("sync") == 0  # 2 of 2: the unknown cycles did not reset the count
    assert lab.in_force() == {(home, "172.16.0.5")}


# --------------------------------------------------------------------------- per project


def test_unknown_status_holds_that_project_only(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, (pairs, _) = good
    tools_before = {p for p in pairs if "/tools/" in p[0]}
    tools_file = lab.files()["tools.exports"]
    # tools: a down cell shows i-2 as UNKNOWN; i-1 is gone and i-4 is new - none of it counts
    lab.inventory["instances"][1]["status"] = "UNKNOWN"
    lab.remove_instance("i-1")
    lab.add_instance("i-4", "tools", "172.16.0.8")
    # paws changes as usual
    lab.remove_instance("i-3")
    lab.add_instance("i-5", "paws", "172.16.1.9")
    capsys.readouterr()
    assert lab.cli("plan", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert {(c["project"], c["client"], c["action"]) for c in plan["changes"]} == {
        ("paws", "172.16.1.9", "add"),
        ("paws", "172.16.1.5", "remove"),
        ("paws", "fd00::1:5", "remove"),
    }
    holds = plan["holds"]
    assert {h["reason"] for h in holds} == {"unknown-project"}
    assert {h["project"] for h in holds} == {"tools"}
    assert all("i-2" in h["detail"] and "UNKNOWN" in h["detail"] for h in holds)
    assert lab.cli("sync") == 3
    after = lab.in_force()
    assert {p for p in after if "/tools/" in p[0]} == tools_before
    assert lab.files()["tools.exports"] == tools_file
    assert {p for p in after if "/paws/" in p[0]} == {(lab.srv("paws", "home"), "172.16.1.9")}


def test_unknown_status_is_case_insensitive(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, (pairs, _) = good
    lab.inventory["instances"][1]["status"] = "unknown"
    lab.remove_instance("i-1")
    assert lab.cli("sync") == 3
    assert lab.in_force() == pairs


def test_incomplete_projects_extension(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, (pairs, _) = good
    lab.inventory["incomplete_projects"] = ["tools"]
    lab.remove_instance("i-1")
    lab.remove_instance("i-2")  # tools looks empty, but its writer said it could not read it
    lab.add_instance("i-5", "paws", "172.16.1.9")
    capsys.readouterr()
    assert lab.cli("plan", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert {(c["project"], c["client"]) for c in plan["changes"]} == {("paws", "172.16.1.9")}
    assert {(h["reason"], h["project"]) for h in plan["holds"]} == {("unknown-project", "tools")}
    assert lab.cli("sync") == 3
    assert lab.in_force() == pairs | {(lab.srv("paws", "home"), "172.16.1.9")}
    capsys.readouterr()
    assert lab.cli("status", "--json") == 0
    st = json.loads(capsys.readouterr().out)
    assert "tools" in st["inventory"]["incomplete_projects"]
    # once the writer reads tools again, its (now empty) listing counts
    del lab.inventory["incomplete_projects"]
    assert lab.cli("sync") == 0
    assert lab.in_force() == {
        (lab.srv("paws", "home"), c) for c in ("172.16.1.5", "fd00::1:5", "172.16.1.9")
    }
    assert lab.files()["tools.exports"] == f"{HEADER}tools\n# keystone-id=id-tools\n"


def test_deleted_instances_contribute_no_address(lab: Lab) -> None:
    eager(lab)
    lab.add_project("tools", 50380)
    home = lab.srv("tools", "home")
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6", status="DELETED")
    lab.add_instance("i-3", "tools", "172.16.0.7", status="deleted")
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, "172.16.0.5")}
    # an instance that becomes DELETED leaves (after the confirmations: 1 here)
    lab.inventory["instances"][0]["status"] = "DELETED"
    lab.add_instance("i-4", "tools", "172.16.0.8")
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, "172.16.0.8")}


def test_deleted_instance_address_reused_by_a_live_one(lab: Lab) -> None:
    """A DELETED record and a live instance with the same address: the live one counts."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5", status="DELETED")
    lab.add_instance("i-2", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(lab.srv("tools", "home"), "172.16.0.5")}
