"""``nfs-exportd explain IP`` and ``explain --project P`` (issue 5, point 4), end to end
through the CLI with the real exportfs: every case of "which exports, whose, since when,
or why none", in JSON and in text, and the promise that explaining changes nothing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Lab

OPTS = "rw,sync,no_subtree_check,root_squash"  # config.DEFAULT_OPTIONS
RO = "ro,sync,no_subtree_check,root_squash"
Cap = pytest.CaptureFixture[str]


# --------------------------------------------------------------------------- helpers


def explain_json(lab: Lab, capsys: Cap, *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert lab.cli("explain", *args, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, dict)
    assert data["schema"] == 1
    return data


def explain_text(lab: Lab, capsys: Cap, *args: str) -> str:
    capsys.readouterr()
    assert lab.cli("explain", *args) == 0
    return capsys.readouterr().out


def history(lab: Lab, capsys: Cap) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert lab.cli("history", "--json") == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    assert isinstance(entries, list)
    return entries


def added_by(entries: list[dict[str, Any]], owner: str, path: str, client: str) -> dict[str, Any]:
    """The newest journal entry that added (owner, path, client)."""
    hits = [
        e
        for e in entries
        if e["kind"] != "baseline" and any(p[:3] == [owner, path, client] for p in e["added"])
    ]
    assert hits, f"no journal entry added {owner} {path} {client}"
    return hits[-1]


def reason_in(entry: dict[str, Any], owner: str, path: str, client: str) -> str:
    (reason,) = [p[3] for p in entry["added"] if p[:3] == [owner, path, client]]
    assert isinstance(reason, str)
    return reason


def counter(lab: Lab, owner: str, path: str, client: str) -> int:
    """The persisted removal counter of one pair (0 when absent)."""
    doc = json.loads((lab.state_dir / "counters.json").read_text())
    for item in doc["counters"]:
        if (item["owner"], item["path"], item["client"]) == (owner, path, client):
            n = item["missing"]
            assert isinstance(n, int)
            return n
    return 0


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def local(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


# --------------------------------------------------------------------------- 1. exported


def test_exported_ip_names_files_owner_instance_and_since(lab: Lab, capsys: Cap) -> None:
    home, proj = lab.srv("tools", "home"), lab.srv("tools", "project")
    lab.add_project("tools", 50380, {"home": home, "project": proj})
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0
    entries = history(lab, capsys)
    first = added_by(entries, "tools", home, "172.16.0.5")
    second = added_by(entries, "tools", home, "172.16.0.6")
    assert first["id"] < second["id"]

    r = explain_json(lab, capsys, "172.16.0.6")
    assert r["ip"] == "172.16.0.6"
    assert [
        (e["file"], e["kind"], e["owner"], e["path"], e["options"], e["client"])
        for e in r["exports"]
    ] == [
        ("tools.exports", "project", "tools", home, OPTS, "172.16.0.6"),
        ("tools.exports", "project", "tools", proj, OPTS, "172.16.0.6"),
    ]
    for e in r["exports"]:
        assert e["since"] == second["time"]
        assert e["since_source"] == f"journal entry {second['id']} (new-instance)"
    assert r["instances"] == [
        {
            "project": "tools",
            "project_id": "id-tools",
            "instance_id": "i-2",
            "instance_name": "tools-i-2",
            "status": "ACTIVE",
        }
    ]
    assert r["pending_changes"] == [] and r["holds"] == [] and r["global_holds"] == []
    assert r["inventory"]["complete"] is True and r["inventory"]["incomplete_projects"] == []
    assert (
        "172.16.0.6 is instance tools-i-2 (i-2) of project tools (status ACTIVE)"
        in (r["explanation"])
    )
    assert "172.16.0.6 has 2 export(s) in force and keeps them" in r["explanation"]

    # the older address keeps the time of the entry that added it, not the newest one
    old = explain_json(lab, capsys, "172.16.0.5")
    reason = reason_in(first, "tools", home, "172.16.0.5")
    assert {e["since"] for e in old["exports"]} == {first["time"]}
    assert {e["since_source"] for e in old["exports"]} == {
        f"journal entry {first['id']} ({reason})"
    }

    text = explain_text(lab, capsys, "172.16.0.6")
    assert text.startswith("172.16.0.6:\n")
    assert (
        f"exported: {home} (tools, -{OPTS}) since {local(second['time'])}, "
        f"journal entry {second['id']} (new-instance)"
    ) in text
    assert "is instance tools-i-2 (i-2) of project tools" in text


def test_since_is_the_latest_addition_and_unknown_without_journal(lab: Lab, capsys: Cap) -> None:
    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0
    lab.remove_instance("i-1")
    assert [lab.cli("sync") for _ in range(3)] == [3, 3, 0]
    assert (home, "172.16.0.5") not in lab.in_force()
    lab.add_instance("i-1", "tools", "172.16.0.5")  # the address comes back
    assert lab.cli("sync") == 0
    entries = history(lab, capsys)
    latest = added_by(entries, "tools", home, "172.16.0.5")
    assert latest["id"] == entries[-1]["id"]
    assert sum(1 for e in entries if any(p[2] == "172.16.0.5" for p in e["added"])) == 2

    (exp,) = explain_json(lab, capsys, "172.16.0.5")["exports"]
    assert exp["since"] == latest["time"]
    assert exp["since_source"] == f"journal entry {latest['id']} (new-instance)"

    # without a journal, "since" is unknown and says so (and explain does not invent one)
    for p in (lab.state_dir / "history").iterdir():
        p.unlink()
    (exp,) = explain_json(lab, capsys, "172.16.0.5")["exports"]
    assert exp["since"] is None
    assert exp["since_source"] == "unknown (no journal yet)"
    assert "since unknown (no journal yet)" in explain_text(lab, capsys, "172.16.0.5")


# --------------------------------------------------------------------------- 2. unknown


def test_unknown_ip_is_no_instance_address(lab: Lab, capsys: Cap) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    r = explain_json(lab, capsys, "10.9.8.7")
    assert r["ip"] == "10.9.8.7"
    assert r["exports"] == [] and r["instances"] == []
    assert r["pending_changes"] == [] and r["holds"] == []
    assert r["inventory"]["complete"] is True
    assert r["explanation"] == [
        "10.9.8.7 is not an address of any instance in the complete inventory"
    ]
    text = explain_text(lab, capsys, "10.9.8.7")
    assert "no exports on this server" in text
    assert "not an address of any instance" in text


# --------------------------------------------------------------------------- 3. not served


@pytest.mark.parametrize("how", ["not-in-projects-file", "no-mounts", "mounts-elsewhere"])
def test_ip_of_a_project_without_volumes_here(lab: Lab, capsys: Cap, how: str) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    if how == "not-in-projects-file":
        lab.inventory["projects"].append({"id": "id-other", "name": "other", "enabled": True})
    elif how == "no-mounts":
        lab.add_project("other", 50381, volumes={})
    else:
        lab.add_project("other", 50381, volumes={})
        lab.projects["other"]["mounts"] = {"home": "nfs-2.svc.example:/srv/other/home"}
    lab.add_instance("i-7", "other", "172.16.0.7")
    assert lab.cli("sync") == 0
    r = explain_json(lab, capsys, "172.16.0.7")
    assert r["exports"] == [] and r["pending_changes"] == [] and r["holds"] == []
    assert [(i["project"], i["project_id"], i["instance_id"]) for i in r["instances"]] == [
        ("other", "id-other", "i-7")
    ]
    assert (
        "172.16.0.7 is instance other-i-7 (i-7) of project other, which has no volumes on "
        "this server"
    ) in r["explanation"]
    assert "which has no volumes on this server" in explain_text(lab, capsys, "172.16.0.7")


# --------------------------------------------------------------------------- 4. conflicts


def test_reused_ip_leaves_the_old_project_at_the_next_cycle(lab: Lab, capsys: Cap) -> None:
    tools_home = lab.srv("tools", "home")
    other_home = lab.srv("other", "home")
    lab.add_project("tools", 50380)
    lab.add_project("other", 50381)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-8", "other", "172.16.0.8")
    assert lab.cli("sync") == 0
    lab.remove_instance("i-1")
    lab.add_instance("i-9", "other", "172.16.0.5")  # Neutron gave the address to other

    r = explain_json(lab, capsys, "172.16.0.5")
    assert [(e["owner"], e["path"]) for e in r["exports"]] == [("tools", tools_home)]
    assert [(i["project"], i["instance_id"]) for i in r["instances"]] == [("other", "i-9")]
    remove = {
        "project": "tools",
        "path": tools_home,
        "client": "172.16.0.5",
        "action": "remove",
        "reason": "ip-conflict",
    }
    add = {
        "project": "other",
        "path": other_home,
        "client": "172.16.0.5",
        "action": "add",
        "reason": "new-instance",
    }
    assert sorted(r["pending_changes"], key=json.dumps) == sorted([remove, add], key=json.dumps)
    assert (
        f"172.16.0.5 is exported for project tools ({tools_home}) but belongs to other now: "
        "it leaves at the next cycle (ip-conflict)"
    ) in r["explanation"]
    assert (
        f"next cycle: will be removed from tools {tools_home} (ip-conflict)" in (r["explanation"])
    )
    assert not any("keeps them" in line for line in r["explanation"])
    text = explain_text(lab, capsys, "172.16.0.5")
    assert "belongs to other now: it leaves at the next cycle (ip-conflict)" in text

    assert lab.cli("sync") == 0  # conflict removals need no confirmations
    assert (tools_home, "172.16.0.5") not in lab.in_force()
    r = explain_json(lab, capsys, "172.16.0.5")
    assert [(e["owner"], e["path"]) for e in r["exports"]] == [("other", other_home)]
    assert r["pending_changes"] == []
    assert "172.16.0.5 has 1 export(s) in force and keeps them" in r["explanation"]


def test_ip_claimed_by_two_projects_is_exported_for_none(lab: Lab, capsys: Cap) -> None:
    tools_home = lab.srv("tools", "home")
    other_home = lab.srv("other", "home")
    lab.add_project("tools", 50380)
    lab.add_project("other", 50381)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    lab.add_instance("i-9", "other", "172.16.0.5")  # both listings show it now

    conflict = {
        "reason": "ip-conflict",
        "project": None,
        "path": None,
        "client": "172.16.0.5",
        "detail": "claimed by projects other, tools: exported for none of them",
    }
    r = explain_json(lab, capsys, "172.16.0.5")
    assert [(i["project"], i["instance_id"]) for i in r["instances"]] == [
        ("other", "i-9"),
        ("tools", "i-1"),
    ]
    assert r["pending_changes"] == [
        {
            "project": "tools",
            "path": tools_home,
            "client": "172.16.0.5",
            "action": "remove",
            "reason": "ip-conflict",
        }
    ]
    assert r["holds"] == [conflict]
    assert r["explanation"][0] == (
        "172.16.0.5 is claimed by instances of several projects (other, tools): it is "
        "exported for none of their private volumes (ip-conflict)"
    )

    assert lab.cli("sync") == 3  # the conflict is held (reported) after the removal
    assert not {p for p in lab.in_force() if p[1] == "172.16.0.5"}
    r = explain_json(lab, capsys, "172.16.0.5")
    assert r["exports"] == [] and r["pending_changes"] == []
    assert r["holds"] == [conflict]
    assert all(other_home not in line for line in r["explanation"])
    text = explain_text(lab, capsys, "172.16.0.5")
    assert "no exports on this server" in text
    assert "claimed by instances of several projects (other, tools)" in text


# --------------------------------------------------------------------------- 5. pending


def test_pending_removal_counts_confirmations(lab: Lab, capsys: Cap) -> None:
    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")

    def pending() -> dict[str, Any]:
        r = explain_json(lab, capsys, "172.16.0.6")
        assert [(e["path"], e["client"]) for e in r["exports"]] == [(home, "172.16.0.6")]
        assert r["instances"] == []
        return r

    # The plan counts the cycle it describes: persisted count + 1 ("counting this cycle").
    for syncs in range(2):
        n = counter(lab, "tools", home, "172.16.0.6")
        assert n == syncs
        r = pending()
        detail = f"{n + 1} of 3 confirmations (instance-gone)"
        assert r["pending_changes"] == []
        assert r["holds"] == [
            {
                "reason": "pending-confirmation",
                "project": "tools",
                "path": home,
                "client": "172.16.0.6",
                "detail": detail,
                "action": "remove",
            }
        ]
        assert (
            f"pending removal from tools {home}: {detail}, counting this cycle "
            "(it goes after 3 complete cycles without it)"
        ) in r["explanation"]
        assert not any("keeps them" in line for line in r["explanation"])
        assert f"{detail}, counting this cycle" in explain_text(lab, capsys, "172.16.0.6")
        assert lab.cli("sync") == 3

    # two counted cycles persisted: this plan's cycle is the third, the removal goes
    assert counter(lab, "tools", home, "172.16.0.6") == 2
    r = pending()
    assert r["holds"] == []
    assert r["pending_changes"] == [
        {
            "project": "tools",
            "path": home,
            "client": "172.16.0.6",
            "action": "remove",
            "reason": "instance-gone",
        }
    ]
    assert f"next cycle: will be removed from tools {home} (instance-gone)" in r["explanation"]

    assert lab.cli("sync") == 0
    assert (home, "172.16.0.6") not in lab.in_force()
    r = explain_json(lab, capsys, "172.16.0.6")
    assert r["exports"] == [] and r["holds"] == [] and r["pending_changes"] == []
    assert r["explanation"] == [
        "172.16.0.6 is not an address of any instance in the complete inventory"
    ]
    assert "no exports on this server" in explain_text(lab, capsys, "172.16.0.6")


# --------------------------------------------------------------------------- 6. held


def test_freeze_holds_the_addition_and_the_removal(lab: Lab, capsys: Cap) -> None:
    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    Path(lab.config["maintenance_file"]).write_text("freeze: storage migration\n")
    lab.remove_instance("i-1")
    lab.add_instance("i-2", "tools", "172.16.0.6")

    r = explain_json(lab, capsys, "172.16.0.6")
    assert r["exports"] == [] and r["pending_changes"] == []
    assert r["holds"] == [
        {
            "reason": "freeze",
            "project": "tools",
            "path": home,
            "client": "172.16.0.6",
            "detail": "maintenance flag says freeze",
            "action": "add",
        }
    ]
    line = f"held addition to tools {home} (freeze): maintenance flag says freeze"
    assert line in r["explanation"]
    assert line in explain_text(lab, capsys, "172.16.0.6")

    r = explain_json(lab, capsys, "172.16.0.5")
    assert [h["reason"] for h in r["holds"]] == ["freeze"]
    assert r["holds"][0]["action"] == "remove"
    assert (
        f"held removal from tools {home} (freeze): maintenance flag says freeze"
        in (r["explanation"])
    )

    assert lab.cli("sync") == 3
    assert lab.in_force() == {(home, "172.16.0.5")}  # nothing moved
    assert explain_json(lab, capsys, "172.16.0.6")["holds"][0]["reason"] == "freeze"


def test_unknown_project_is_reported_unknown(lab: Lab, capsys: Cap) -> None:
    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    lab.inventory["incomplete_projects"] = ["tools"]
    lab.add_instance("i-2", "tools", "172.16.0.6")  # listed, but the data is not complete

    r = explain_json(lab, capsys, "172.16.0.6")
    assert r["exports"] == [] and r["pending_changes"] == []
    assert r["inventory"]["complete"] is True
    assert r["inventory"]["incomplete_projects"] == ["tools"]
    assert [i["instance_id"] for i in r["instances"]] == ["i-2"]
    assert (
        "project tools's instances could not be read: marked incomplete by the inventory writer"
    ) in r["explanation"]
    assert "could not be read" in explain_text(lab, capsys, "172.16.0.6")

    # an address in force for the unknown project keeps its export, and says whose it is
    r = explain_json(lab, capsys, "172.16.0.5")
    assert [(e["path"], e["client"]) for e in r["exports"]] == [(home, "172.16.0.5")]
    assert r["inventory"]["incomplete_projects"] == ["tools"]
    assert r["pending_changes"] == []

    p = explain_json(lab, capsys, "--project", "tools")
    assert p["inventory"] == (
        "unknown: its instances could not be read (marked incomplete by the inventory writer)"
    )
    assert [(h["reason"], h["path"]) for h in p["holds"]] == [("unknown-project", home)]
    assert lab.cli("sync") == 3
    assert lab.in_force() == {(home, "172.16.0.5")}


def test_unknown_listing_is_reported_unknown(lab: Lab, capsys: Cap) -> None:
    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    del lab.inventory["instances"]  # a file cut short: the whole snapshot is unknown

    for ip in ("172.16.0.5", "10.9.8.7"):
        r = explain_json(lab, capsys, ip)
        assert r["instances"] == []
        assert r["inventory"]["complete"] is False
        problem = r["inventory"]["problem"]
        assert "inventory.yaml: instances: required key is missing (write [] for none)" in problem
        assert [h["reason"] for h in r["global_holds"]] == ["unknown-inventory"]
        assert any(
            line.startswith(f"{ip}: the inventory is unknown (") and "so its owner is too" in line
            for line in r["explanation"]
        ), r["explanation"]
        assert not any("not an address of any instance" in x for x in r["explanation"])
        assert r["pending_changes"] == []
    r = explain_json(lab, capsys, "172.16.0.5")
    assert [(e["path"], e["client"]) for e in r["exports"]] == [(home, "172.16.0.5")]
    assert "the inventory is unknown" in explain_text(lab, capsys, "172.16.0.5")

    p = explain_json(lab, capsys, "--project", "tools")
    assert p["inventory"].startswith("unknown: the project listing could not be read (")
    assert p["project_id"] is None
    assert p["volumes"][0]["clients"] == ["172.16.0.5"]


# --------------------------------------------------------------------------- 7. new


def test_new_instance_will_be_added_next_cycle(lab: Lab, capsys: Cap) -> None:
    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    lab.add_instance("i-2", "tools", "172.16.0.6")

    r = explain_json(lab, capsys, "172.16.0.6")
    assert r["exports"] == [] and r["holds"] == []
    assert r["pending_changes"] == [
        {
            "project": "tools",
            "path": home,
            "client": "172.16.0.6",
            "action": "add",
            "reason": "new-instance",
        }
    ]
    line = f"next cycle: will be added to tools {home} (new-instance)"
    assert line in r["explanation"]
    text = explain_text(lab, capsys, "172.16.0.6")
    assert "no exports on this server" in text and line in text

    assert lab.cli("sync") == 0
    r = explain_json(lab, capsys, "172.16.0.6")
    assert [e["client"] for e in r["exports"]] == ["172.16.0.6"]
    assert r["pending_changes"] == []


# --------------------------------------------------------------------------- 8. --project


def test_project_lists_volumes_clients_and_instances(lab: Lab, capsys: Cap) -> None:
    home, scratch = lab.srv("tools", "home"), lab.srv("tools", "scratch")
    lab.add_project("tools", 50380, {"home": home, "scratch": scratch})
    lab.add_instance("i-1", "tools", "172.16.0.5", "fd00::5")
    assert lab.cli("sync") == 0
    lab.add_instance("i-2", "tools", "172.16.0.6")  # not synced yet
    lab.config["export_options"] = {"volumes": {"home": RO}}  # options will change
    del lab.projects["tools"]["mounts"]["scratch"]  # no longer served here

    p = explain_json(lab, capsys, "--project", "tools")
    assert (p["project"], p["project_id"], p["enabled"]) == ("tools", "id-tools", True)
    assert p["inventory"] == "complete"
    assert p["served_here"] is True and p["file"] == "tools.exports"
    assert p["volumes"] == [
        {
            "volume": "home",
            "path": home,
            "options": RO,
            "options_in_force": OPTS,
            "clients": ["172.16.0.5", "fd00::5"],
        },
        {
            "volume": None,
            "path": scratch,
            "options": None,
            "options_in_force": OPTS,
            "clients": ["172.16.0.5", "fd00::5"],
            "note": "in force but no longer served here",
        },
    ]
    assert sorted(p["instances"], key=lambda i: str(i["instance_id"])) == [
        {
            "instance_id": "i-1",
            "instance_name": "tools-i-1",
            "status": "ACTIVE",
            "addresses": ["172.16.0.5", "fd00::5"],
            "exported": ["172.16.0.5", "fd00::5"],
        },
        {
            "instance_id": "i-2",
            "instance_name": "tools-i-2",
            "status": "ACTIVE",
            "addresses": ["172.16.0.6"],
            "exported": [],
        },
    ]
    changes = {(c["action"], c["path"], c["client"], c["reason"]) for c in p["pending_changes"]}
    assert changes == {
        ("add", home, "172.16.0.6", "new-instance"),
        ("update", home, "172.16.0.5", "options-changed"),
        ("update", home, "fd00::5", "options-changed"),
    }
    assert {(h["reason"], h["path"], h["client"], h["detail"]) for h in p["holds"]} == {
        ("pending-confirmation", scratch, c, "1 of 3 confirmations (not-served)")
        for c in ("172.16.0.5", "fd00::5")
    }

    text = explain_text(lab, capsys, "--project", "tools")
    assert text.startswith("project tools (id id-tools, enabled); inventory: complete\n")
    assert f"home: {home} -{OPTS}" in text
    assert f"options will change to -{RO}" in text
    assert f"-: {scratch} -{OPTS}  [in force but no longer served here]" in text
    assert "clients: 172.16.0.5 fd00::5" in text
    assert "instance tools-i-1 (i-1, ACTIVE): 172.16.0.5 fd00::5 [exported]" in text
    assert "instance tools-i-2 (i-2, ACTIVE): 172.16.0.6 [not exported]" in text
    assert f"next cycle: add {home} 172.16.0.6 (new-instance)" in text
    assert "no volumes on this server" not in text


def test_project_not_served_unknown_and_disabled(lab: Lab, capsys: Cap) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.inventory["projects"].append({"id": "id-other", "name": "other", "enabled": False})
    lab.add_instance("i-7", "other", "172.16.0.7")
    assert lab.cli("sync") == 0

    p = explain_json(lab, capsys, "--project", "other")
    assert (p["project_id"], p["enabled"], p["inventory"]) == ("id-other", False, "complete")
    assert p["served_here"] is False and p["file"] is None and p["volumes"] == []
    assert [(i["instance_id"], i["addresses"], i["exported"]) for i in p["instances"]] == [
        ("i-7", ["172.16.0.7"], [])
    ]
    text = explain_text(lab, capsys, "--project", "other")
    assert text.startswith("project other (id id-other, disabled); inventory: complete\n")
    assert "no volumes on this server" in text
    assert "172.16.0.7 [not exported]" in text

    # a project nobody knows (not served, not in force, not in the complete listing) is a
    # mistyped name: exit 2 saying so, not an empty project (issue 14)
    for args in (("--project", "nope"), ("--project", "nope", "--json")):
        capsys.readouterr()
        assert lab.cli("explain", *args) == 2
        assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- 9. public


def test_public_export_covers_addresses_in_its_network(lab: Lab, capsys: Cap) -> None:
    scratch = lab.srv("scratch")
    home = lab.srv("tools", "home")
    lab.config["public_exports"] = {"scratch": {"path": scratch, "clients": ["172.16.0.0/24"]}}
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    entry = added_by(history(lab, capsys), "public:scratch", scratch, "172.16.0.0/24")
    reason = reason_in(entry, "public:scratch", scratch, "172.16.0.0/24")

    r = explain_json(lab, capsys, "172.16.0.77")  # no instance has it: public only
    assert r["exports"] == [
        {
            "file": "public-scratch.exports",
            "kind": "public",
            "owner": "scratch",
            "path": scratch,
            "options": OPTS,
            "client": "172.16.0.0/24",
            "since": entry["time"],
            "since_source": f"journal entry {entry['id']} ({reason})",
        }
    ]
    assert r["instances"] == []
    assert f"exported: {scratch} (public scratch, -{OPTS})" in explain_text(
        lab, capsys, "172.16.0.77"
    )

    r = explain_json(lab, capsys, "172.16.0.5")
    assert [(e["kind"], e["path"], e["client"]) for e in r["exports"]] == [
        ("public", scratch, "172.16.0.0/24"),
        ("project", home, "172.16.0.5"),
    ]
    assert explain_json(lab, capsys, "172.16.1.5")["exports"] == []  # outside the network


# --------------------------------------------------------------------------- 10. IPv6


def test_ipv6_addresses_are_canonicalised(lab: Lab, capsys: Cap) -> None:
    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5", "fd00::5")
    assert lab.cli("sync") == 0
    lab.add_instance("i-2", "tools", "fd00:0:0::6")  # written non-canonically by the writer

    for spelling in ("fd00:0::5", "FD00::5", "fd00:0000:0000:0000:0000:0000:0000:0005"):
        r = explain_json(lab, capsys, spelling)
        assert r["ip"] == "fd00::5"
        assert [(e["path"], e["client"]) for e in r["exports"]] == [(home, "fd00::5")]
        assert [i["instance_id"] for i in r["instances"]] == ["i-1"]
    assert explain_text(lab, capsys, "fd00:0::5").startswith("fd00::5:\n")

    r = explain_json(lab, capsys, "fd00:0::6")
    assert r["ip"] == "fd00::6"
    assert [(c["action"], c["client"]) for c in r["pending_changes"]] == [("add", "fd00::6")]
    assert explain_json(lab, capsys, "fd00::99")["explanation"] == [
        "fd00::99 is not an address of any instance in the complete inventory"
    ]


# --------------------------------------------------------------------------- 11. usage


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give an address, or --project NAME"),
        (("--json",), "give an address, or --project NAME"),
        (("1.2.3.4", "--project", "x"), "give an address, or --project NAME"),
        (("not-an-ip",), "'not-an-ip' is not an IP address"),
        (("172.16.0.0/24",), "'172.16.0.0/24' is not an IP address"),
    ],
)
def test_bad_usage_exits_2(lab: Lab, capsys: Cap, args: tuple[str, ...], message: str) -> None:
    lab.add_project("tools", 50380)
    capsys.readouterr()
    assert lab.cli("explain", *args) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert message in out.err


# --------------------------------------------------------------------------- 12. read-only


def test_explain_changes_nothing(lab: Lab, capsys: Cap) -> None:
    lab.config["public_exports"] = {
        "scratch": {"path": lab.srv("scratch"), "clients": ["172.16.0.0/24"]}
    }
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")  # a pending removal: explain must not count it
    assert lab.cli("sync") == 3
    lab.add_instance("i-3", "tools", "172.16.0.7")  # a pending addition: not applied
    lab.write()
    for name in ("counters.json", "status.json"):
        assert (lab.state_dir / name).is_file()
    assert lab.etab.is_file()
    before = tree(lab.root)
    calls = [
        ("172.16.0.5",),
        ("172.16.0.6",),
        ("172.16.0.7",),
        ("172.16.0.77",),
        ("fd00::1",),
        ("--project", "tools"),
        ("--project", "nope"),
    ]
    for args in calls:
        for fmt in ((), ("--json",)):
            # read-only: never refused as root, even without --allow-root
            code = 2 if args == ("--project", "nope") else 0  # no such project
            assert lab.cli("explain", *args, *fmt, allow_root=False) == code
    assert tree(lab.root) == before
    if os.geteuid() == 0:
        assert lab.cli("sync", allow_root=False) == 2  # a writing command would be refused

    # a corrupt counters file is reported, not moved aside (that is a writer's job)
    counters = lab.state_dir / "counters.json"
    counters.write_text("{not json")
    before = tree(lab.root)
    r = explain_json(lab, capsys, "172.16.0.6")
    assert "state-corrupt" in [h["reason"] for h in r["global_holds"]]
    assert tree(lab.root) == before


# --------------------------------------------------------------------------- src bugs shown


def test_project_explain_does_not_take_a_public_file_for_the_project(lab: Lab, capsys: Cap) -> None:
    """explain.py explain_project looks up ``NAME + ".exports"`` in the files in force
    without checking that the file is a project file: a Keystone project named
    ``public-scratch`` (allowed: the projects file is the only place a collision is checked)
    is shown with the public export ``scratch`` as its "no longer served" volume."""
    scratch = lab.srv("scratch")
    lab.config["public_exports"] = {"scratch": {"path": scratch, "clients": ["172.16.0.0/24"]}}
    lab.add_project("tools", 50380)
    lab.inventory["projects"].append({"id": "id-ps", "name": "public-scratch", "enabled": True})
    assert lab.cli("sync") == 0
    assert (lab.exports_dir / "public-scratch.exports").is_file()
    p = explain_json(lab, capsys, "--project", "public-scratch")
    assert p["project_id"] == "id-ps" and p["served_here"] is False
    assert p["file"] is None
    assert p["volumes"] == []


def test_project_dropped_from_projects_file_is_not_said_to_have_no_volumes(
    lab: Lab, capsys: Cap
) -> None:
    """explain.py says "which has no volumes on this server" (IP) and "no volumes on this
    server" (project) from the configured volumes only, even while that project's export
    is in force here and listed just above (pending removal as not-served)."""
    home = lab.srv("tools", "home")
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    del lab.projects["tools"]  # dropped from the projects file: its export is still in force

    r = explain_json(lab, capsys, "172.16.0.5")
    assert [(e["owner"], e["path"]) for e in r["exports"]] == [("tools", home)]
    assert [h["reason"] for h in r["holds"]] == ["pending-confirmation"]
    assert not any("has no volumes on this server" in x for x in r["explanation"]), r["explanation"]
    p = explain_json(lab, capsys, "--project", "tools")
    assert [v["path"] for v in p["volumes"]] == [home]
    assert "no volumes on this server" not in explain_text(lab, capsys, "--project", "tools")
