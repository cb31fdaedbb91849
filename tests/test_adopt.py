"""``adopt``: the original daemon's header-less files for 40 projects are taken over with
the real exportfs; the switch-over removes nothing, and the next sync applies only what
the cloud says (option differences show as plan entries)."""

from __future__ import annotations

import json

import pytest

from conftest import Lab

ORIGINAL_OPTIONS = "rw,nohide,no_subtree_check,async,no_root_squash"
N = 40


def _original_file(lab: Lab, project: str, ips: list[str]) -> str:
    """What the original daemon wrote: no header, one line per mount, options hard-coded."""
    mounts = lab.projects[project]["mounts"]
    lines = [
        f"{spec.split(':', 1)[1]} -{ORIGINAL_OPTIONS} {' '.join(ips)}" for spec in mounts.values()
    ]
    return "\n".join(lines) + "\n"


def _setup(lab: Lab) -> dict[str, list[str]]:
    """40 projects, some with two volumes, 1-3 instances each; the original's files in force."""
    ips: dict[str, list[str]] = {}
    for i in range(N):
        name = f"proj{i:02d}"
        vols = {"home": lab.srv(name, "home")}
        if i % 4 == 0:
            vols["project"] = lab.srv(name, "project")
        lab.add_project(name, 50000 + i, vols)
        ips[name] = []
        for k in range(1 + i % 3):
            ip = f"172.16.{i}.{10 + k}"
            lab.add_instance(f"i-{i}-{k}", name, ip)
            ips[name].append(ip)
        (lab.exports_dir / f"{name}.exports").write_text(_original_file(lab, name, ips[name]))
    # files the original also left: a public export and a project this server no longer serves
    scratch = lab.srv("scratch")
    (lab.exports_dir / "public_scratch.exports").write_text(
        f"{scratch} 172.16.0.0/16(rw,sync,no_subtree_check,root_squash)\n"
    )
    old = lab.srv("oldproj", "home")
    (lab.exports_dir / "oldproj.exports").write_text(f"{old} -{ORIGINAL_OPTIONS} 172.16.99.1\n")
    lab.write()
    lab.exportfs("-ra")
    return ips


def test_adopt_forty_projects_removes_nothing_and_next_sync_follows_the_cloud(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    ips = _setup(lab)
    before_pairs = lab.in_force()
    before_files = lab.files()
    assert (
        len(before_pairs)
        == sum(len(v) * len(lab.projects[p]["mounts"]) for p, v in ips.items()) + 2
    )

    # The cloud moved on while the original daemon ran: one new instance, one gone.
    lab.add_instance("i-new", "proj05", "172.16.5.99")
    gone_ip = ips["proj07"][1]
    lab.remove_instance("i-7-1")

    capsys.readouterr()
    assert lab.cli("adopt", "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"would adopt {N} files" in out
    assert "left alone public_scratch.exports" in out
    assert "left alone oldproj.exports" in out
    assert lab.files() == before_files and lab.in_force() == before_pairs  # dry run

    assert lab.cli("adopt") == 0
    out = capsys.readouterr().out
    assert f"adopted {N} files" in out
    after_files = lab.files()
    assert lab.in_force() == before_pairs  # 0 pairs removed (and none added)
    for i in range(N):
        name = f"proj{i:02d}.exports"
        assert after_files[name].startswith(
            f"# nfs-exportd managed file, do not edit: project=proj{i:02d}\n"
        )
        # the same lines, options included: nothing changed silently
        body = after_files[name].split("\n", 1)[1]
        assert sorted(body.splitlines()) == sorted(before_files[name].splitlines())
    assert after_files["public_scratch.exports"] == before_files["public_scratch.exports"]
    assert after_files["oldproj.exports"] == before_files["oldproj.exports"]
    assert lab.cli("history", "--json") == 0
    hist = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in hist["entries"]][-1] == "adopt"

    # The next plan: the option differences are plan entries, the cloud's changes too;
    # the gone instance waits for its confirmations.
    assert lab.cli("plan", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    changes = {(c["project"], c["client"], c["action"], c["reason"]) for c in plan["changes"]}
    adds = {c for c in changes if c[2] == "add"}
    assert adds == {("proj05", "172.16.5.99", "add", "new-instance")}
    assert not [c for c in changes if c[2] == "remove"]
    updates = [c for c in plan["changes"] if c["action"] == "update"]
    assert {u["reason"] for u in updates} == {"options-changed"}
    assert len(updates) == len(before_pairs) - 2  # every adopted pair, not the foreign files
    pending = [h for h in plan["holds"] if h["reason"] == "pending-confirmation"]
    assert {(h["project"], h["client"]) for h in pending} == {("proj07", gone_ip)}

    assert lab.cli("sync") == 3  # held: the pending confirmation
    after = lab.in_force()
    assert before_pairs <= after  # nothing removed
    assert after - before_pairs == {(lab.srv("proj05", "home"), "172.16.5.99")}
    for i in range(N):
        assert ORIGINAL_OPTIONS not in lab.files()[f"proj{i:02d}.exports"]


def test_adopt_with_the_original_options_configured_changes_no_options(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator who keeps the original's options sees no option entries at all."""
    lab.config["export_options"] = {"default": ORIGINAL_OPTIONS}
    _setup(lab)
    before_pairs = lab.in_force()
    assert lab.cli("adopt") == 0
    capsys.readouterr()
    assert lab.cli("plan", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["changes"] == []
    assert lab.cli("sync") == 0
    assert lab.in_force() == before_pairs


def test_adopt_leaves_files_it_cannot_read_as_the_original_format(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.add_project("tools", 50380)
    home = lab.srv("tools", "home")
    lab.add_project("web", 50381)
    web = lab.srv("web", "home")
    (lab.exports_dir / "tools.exports").write_text(f"{home} -{ORIGINAL_OPTIONS} vm1.example\n")
    (lab.exports_dir / "web.exports").write_text(
        f"{web} -{ORIGINAL_OPTIONS} 172.16.0.5\n/srv/other -rw 172.16.0.5\n"
    )
    before = lab.files()
    assert lab.cli("adopt") == 0
    out = capsys.readouterr().out
    assert "adopted 0 files" in out
    assert "tools.exports: not in the original daemon's format" in out and ":1:" in out
    assert "web.exports: exports /srv/other" in out
    assert lab.files() == before


def test_rollback_right_after_adopt_takes_nothing_away(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """The journal's baseline after an adopt holds the adopted files: the pairs in force
    before the adopt were the same.  A rollback to it must not drop the adopted exports."""
    _setup(lab)
    before_pairs = lab.in_force()
    assert lab.cli("adopt") == 0
    capsys.readouterr()
    assert lab.cli("history", "--json") == 0
    hist = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in hist["entries"]] == ["baseline", "adopt"]
    assert hist["entries"][0]["files"] == N
    assert lab.cli("rollback") == 0  # to the baseline
    assert lab.in_force() == before_pairs


def test_rollback_beyond_the_removal_bound_needs_force(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rollback to an entry far from what is in force (here: the empty baseline before
    the first sync) is bounded like a sync: refused, nothing changes, unless --force."""
    for i in range(12):
        lab.add_project(f"p{i:02d}", 51000 + i)
        lab.add_instance(f"i-{i}", f"p{i:02d}", f"172.16.1.{10 + i}")
    assert lab.cli("sync") == 0
    files, pairs = lab.files(), lab.in_force()
    assert len(pairs) == 12
    assert lab.cli("rollback", "--to", "1") == 2
    assert lab.files() == files and lab.in_force() == pairs
    assert not (lab.state_dir / "rollback-hold").exists()
    assert lab.cli("rollback", "--to", "1", "--force") == 0
    assert lab.in_force() == set()
    assert (lab.state_dir / "rollback-hold").exists()
