"""The rollback rules of ``decide.restore`` from data: given an entry, what is in force,
the inventory and the projects file now, expect these files and these dropped pairs.

Every expectation is written from the rules in the module docstring, not copied from the
code's output.  ``tests/test_history_rollback.py`` runs the same rules end to end.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

import pytest

from nfs_exportd.decide.restore import RestoreInput, restore
from nfs_exportd.errors import UsageError
from nfs_exportd.model import (
    AddressClaim,
    ExportLine,
    ExportsFile,
    FileKind,
    InstanceRecord,
    InventorySnapshot,
    ProjectRecord,
    ServedExport,
)

OPTS = "rw,sync,no_subtree_check,root_squash"


def files(spec: dict[str, dict[str, list[str]]]) -> dict[str, ExportsFile]:
    """{project: {path: [clients]}} -> managed files."""
    return {
        f"{p}.exports": ExportsFile(
            f"{p}.exports",
            FileKind.PROJECT,
            p,
            tuple(ExportLine(path, OPTS, tuple(c)) for path, c in lines.items()),
        )
        for p, lines in spec.items()
    }


def snap(spec: dict[str, Any]) -> InventorySnapshot:
    if "unknown" in spec:
        return InventorySnapshot.unknown("test", spec["unknown"])
    ids = spec.get("ids", {})
    return InventorySnapshot(
        source="test",
        projects={n: ProjectRecord(ids.get(n, f"id-{n}"), n, True) for n in spec["projects"]},
        instances={
            p: tuple(
                InstanceRecord(f"i{k}", f"{p}{k}", p, "ACTIVE", (ipaddress.ip_address(a),))
                for k, a in enumerate(addrs)
            )
            for p, addrs in spec.get("instances", {}).items()
        },
        incomplete=spec.get("incomplete", {}),
        claims={ip: (AddressClaim(why),) for ip, why in spec.get("claims", {}).items()},
    )


def served(spec: dict[str, list[str]]) -> dict[str, tuple[ServedExport, ...]]:
    return {
        p: tuple(ServedExport(p, f"v{i}", x, OPTS) for i, x in enumerate(ps))
        for p, ps in spec.items()
    }


TOOLS = "/srv/tools/home"
WEB = "/srv/web/home"

# name: (restored, in force, inventory, served, known ids, unsafe,
#        expected files {project: {path: clients}} (None: file deleted), expected dropped
#        [(project, path, client, why-prefix)])
CASES: dict[str, tuple[Any, ...]] = {
    "restores_what_is_still_its_own": (
        {"tools": {TOOLS: ["10.0.0.5", "10.0.0.6"]}},
        {"tools": {TOOLS: ["10.0.0.6"]}},
        {"projects": ["tools"], "instances": {"tools": ["10.0.0.5", "10.0.0.6"]}},
        {"tools": [TOOLS]},
        {},
        {},
        {"tools": {TOOLS: ["10.0.0.5", "10.0.0.6"]}},
        [],
    ),
    "an_address_another_projects_instance_has_is_dropped": (
        {"tools": {TOOLS: ["10.0.0.5", "10.0.0.6"]}},
        {"tools": {TOOLS: ["10.0.0.6"]}},
        {"projects": ["tools", "web"], "instances": {"web": ["10.0.0.5"]}},
        {"tools": [TOOLS], "web": [WEB]},
        {},
        {},
        {"tools": {TOOLS: ["10.0.0.6"]}},
        [("tools", TOOLS, "10.0.0.5", "now belongs to project web")],
    ),
    "an_address_another_projects_file_exports_is_dropped": (
        {"tools": {TOOLS: ["10.0.0.5"]}},
        {"web": {WEB: ["10.0.0.5"]}},
        {"projects": ["tools", "web"]},
        {"tools": [TOOLS], "web": [WEB]},
        {},
        {},
        {"tools": {}, "web": None},
        [("tools", TOOLS, "10.0.0.5", "now belongs to project web")],
    ),
    "a_foreign_port_claims_the_address": (
        {"tools": {TOOLS: ["10.0.0.5"]}},
        {},
        {"projects": ["tools"], "claims": {"10.0.0.5": "port p of project x"}},
        {"tools": [TOOLS]},
        {},
        {},
        {"tools": {}},
        [("tools", TOOLS, "10.0.0.5", "now belongs to project (port p of project x)")],
    ),
    "an_address_in_two_restored_files_stays_with_neither": (
        {"tools": {TOOLS: ["10.0.0.5"]}, "web": {WEB: ["10.0.0.5"]}},
        {},
        {"projects": ["tools", "web"]},
        {"tools": [TOOLS], "web": [WEB]},
        {},
        {},
        {"tools": {}, "web": {}},
        [
            ("tools", TOOLS, "10.0.0.5", "now belongs to project web"),
            ("web", WEB, "10.0.0.5", "now belongs to project tools"),
        ],
    ),
    "the_inventory_says_whose_a_shared_address_is": (
        {"tools": {TOOLS: ["10.0.0.5"]}, "web": {WEB: ["10.0.0.5"]}},
        {},
        {"projects": ["tools", "web"], "instances": {"web": ["10.0.0.5"]}},
        {"tools": [TOOLS], "web": [WEB]},
        {},
        {},
        {"tools": {}, "web": {WEB: ["10.0.0.5"]}},
        [("tools", TOOLS, "10.0.0.5", "now belongs to project web")],
    ),
    "a_renamed_project_keeps_its_pairs_by_id": (
        {"old": {TOOLS: ["10.0.0.5"]}},
        {},
        {"projects": ["new"], "ids": {"new": "id-7"}, "instances": {"new": ["10.0.0.5"]}},
        {"new": [TOOLS]},
        {"old": "id-7"},
        {},
        {"old": {TOOLS: ["10.0.0.5"]}},
        [],
    ),
    "a_path_moved_to_another_project_is_dropped": (
        {"tools": {TOOLS: ["10.0.0.5"]}},
        {},
        {"projects": ["tools", "web"]},
        {"tools": [], "web": [TOOLS + "/sub"]},
        {},
        {},
        {"tools": {}},
        [("tools", TOOLS, "10.0.0.5", "path now served for project web")],
    ),
    "a_path_no_longer_served_is_dropped": (
        {"tools": {TOOLS: ["10.0.0.5"]}},
        {},
        {"projects": ["tools"]},
        {"tools": []},
        {},
        {},
        {"tools": {}},
        [("tools", TOOLS, "10.0.0.5", "path no longer served for project tools")],
    ),
    "an_unsafe_path_is_dropped": (
        {"tools": {TOOLS: ["10.0.0.5"]}},
        {},
        {"projects": ["tools"]},
        {"tools": [TOOLS]},
        {},
        {TOOLS: "a symlink"},
        {"tools": {}},
        [("tools", TOOLS, "10.0.0.5", "path now unsafe: a symlink")],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_restore_case(name: str) -> None:
    restored, now, inv, srv, known, unsafe, want_files, want_dropped = CASES[name]
    out = restore(
        RestoreInput(
            entry_id=4,
            restored=files(restored),
            in_force=files(now),
            snapshot=snap(inv),
            known_ids=known,
            private=served(srv),
            unsafe_paths=unsafe,
            max_removal_fraction=1.0,
        )
    )
    got_files = {
        n.removesuffix(".exports"): (
            None if f is None else {ln.path: list(ln.clients) for ln in f.lines}
        )
        for n, f in out.files.items()
    }
    assert got_files == want_files
    got = sorted(out.dropped)
    assert [d[:3] for d in got] == [w[:3] for w in sorted(want_dropped)]
    for (_p, _path, _c, why), (*_, prefix) in zip(got, sorted(want_dropped), strict=True):
        assert why.startswith(prefix), why


def test_restore_an_unknown_inventory_refuses_unless_forced() -> None:
    inp = RestoreInput(
        4,
        files({"tools": {TOOLS: ["10.0.0.5"]}}),
        {},
        snap({"unknown": "401"}),
        {},
        served({"tools": [TOOLS]}),
    )
    with pytest.raises(UsageError, match=r"inventory unknown: 401.*--force"):
        restore(inp)

    out = restore(replace(inp, force=True))
    assert out.inventory_partial and "checked only against" in out.inventory_note
    assert out.files["tools.exports"] is not None


def test_restore_a_partial_inventory_is_said() -> None:
    inp = RestoreInput(
        4,
        files({"tools": {TOOLS: ["10.0.0.5"]}}),
        {},
        snap({"projects": ["tools"], "incomplete": {"tools": "403"}}),
        {},
        served({"tools": [TOOLS]}),
    )
    out = restore(inp)
    assert out.inventory_partial and "inventory unknown for tools" in out.inventory_note


def test_restore_is_bounded_like_a_sync() -> None:
    now = files({"tools": {TOOLS: [f"10.0.1.{i}" for i in range(20)]}})
    inp = RestoreInput(
        9,
        files({"tools": {TOOLS: []}}),
        now,
        snap({"projects": ["tools"]}),
        {},
        served({"tools": [TOOLS]}),
        max_removal_fraction=0.25,
        min_removal_count=10,
    )
    with pytest.raises(UsageError, match=r"would remove 20 of 20 pairs.*--show 9"):
        restore(inp)

    assert restore(replace(inp, min_removal_count=20)).files["tools.exports"] is not None
    assert restore(replace(inp, force=True)).files["tools.exports"] is not None
