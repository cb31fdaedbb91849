"""Issue 10, finding 3: paths are what they say.  Failure-matrix scenarios (the driver of
test_failure_matrix.py: simulated cloud over real openstacksdk, real exportfs), plus lab
tests for the cases the matrix shape does not fit and the decide rules themselves.

* a served path that becomes a symlink to another project's volume: exportfs would
  resolve it and give one project's instances the other's data.  Its pairs leave at
  once (``path-unsafe``), nothing is added there; a real directory brings them back;
* a volume at ``/etc`` (any system directory) or outside ``serve.roots``: held, never
  written; outside the roots (not a system directory) what is in force stays;
* a public export whose path is a symlink: its pairs leave at once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

import pytest

from conftest import HOST, Lab
from nfs_exportd.decide import DecideInput, Policy, decide
from nfs_exportd.model import (
    ExportLine,
    ExportsFile,
    InstanceRecord,
    InventorySnapshot,
    Maintenance,
    ProjectRecord,
    ServedExport,
)
from test_failure_matrix import (  # noqa: F401  (world is a fixture)
    ADD_CHURN,
    BASE,
    CHURN_ADDS,
    CHURNED,
    PENDING,
    T1,
    T1V6,
    T2,
    T3,
    T4,
    Scenario,
    World,
    churn,
    cyc,
    run_scenario,
    seq,
    world,
)

UNSAFE = "path-unsafe"
TOOLS_IPS = (T1, T1V6, T2, T3, T4)


# ---------------------------------------------------------------------------- steps


def tools_project_becomes_symlink_to_paws_home(w: World) -> None:
    """Someone with write access to /srv/tools swaps its project volume for a symlink to
    paws' home.  The expectations follow: tools keeps only its home path."""
    home, project = w.paths["tools"]
    os.rmdir(project)
    os.symlink(w.paths["paws"][0], project)
    w.paths["tools"] = (home,)


def tools_project_is_a_directory_again(w: World) -> None:
    path = w.lab.root / "srv" / "tools" / "project"
    path.unlink()
    path.mkdir()
    w.paths["tools"] = (*w.paths["tools"], str(path))


def nothing_on_paws_volume_for_tools(w: World) -> None:
    """The leak itself: no tools address ever reaches paws' volume (as a path of its own
    or through the symlink)."""
    paws_home = w.paths["paws"][0]
    for path, client in w.lab.in_force():
        assert not (path == paws_home and client in TOOLS_IPS), (path, client)
    assert "/tools/project " not in w.lab.files()["tools.exports"]


def etc_volume_for_tools(w: World) -> None:
    w.lab.projects["tools"]["mounts"]["etc"] = f"{HOST}:/etc"


def no_etc_volume(w: World) -> None:
    del w.lab.projects["tools"]["mounts"]["etc"]


def etc_never_written(w: World) -> None:
    assert all("/etc " not in text for text in w.lab.files().values()), w.lab.files()
    assert all(path != "/etc" for path, _ in w.lab.in_force())


S = [
    Scenario(
        "served-path-becomes-a-symlink-to-another-projects-volume",
        inject=tools_project_becomes_symlink_to_paws_home,
        during=(
            cyc(
                3,
                BASE,
                [UNSAFE],
                {("tools", ip, "remove", UNSAFE) for ip in TOOLS_IPS},
                why="resolves to",
                check=nothing_on_paws_volume_for_tools,
            ),
            cyc(3, BASE, [UNSAFE], (), check=nothing_on_paws_volume_for_tools),
        ),
        clear=tools_project_is_a_directory_again,
        after=(cyc(0, BASE, (), {("tools", ip, "add", "new-export") for ip in TOOLS_IPS}),),
    ),
    Scenario(
        "projects-file-volume-is-etc",
        inject=seq(etc_volume_for_tools, churn),
        during=(
            cyc(
                3,
                CHURN_ADDS,
                [UNSAFE, PENDING],
                ADD_CHURN,
                why="system directory (/etc)",
                check=etc_never_written,
            ),
            cyc(3, CHURNED, [UNSAFE], check=etc_never_written),
        ),
        clear=no_etc_volume,
        after=(cyc(0, CHURNED, (), ()),),
    ),
]
SCENARIOS = {s.name: s for s in S}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_matrix_trust_paths(world: World, name: str) -> None:  # noqa: F811
    run_scenario(world, SCENARIOS[name])


# ---------------------------------------------------------------------------- lab tests


def _tools_and_paws(lab: Lab) -> None:
    lab.add_project("tools", 50380, {"home": lab.srv("tools", "home")})
    lab.add_project("paws", 52771, {"home": lab.srv("paws", "home")})
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "paws", "172.16.1.5")


def test_outside_serve_roots_is_held_and_what_is_in_force_stays(lab: Lab) -> None:
    """Narrowing serve.roots (or upgrading to the default /srv on a server whose volumes
    live elsewhere) holds the paths outside, loudly, and removes nothing."""
    _tools_and_paws(lab)
    assert lab.cli("sync") == 0
    before = lab.in_force()
    lab.config["serve"]["roots"] = [str(lab.root / "srv" / "paws")]
    lab.add_instance("i-3", "tools", "172.16.0.6")  # an addition to the path outside
    lab.add_instance("i-4", "paws", "172.16.1.6")  # and one to the path inside
    for _ in range(3):
        assert lab.cli("sync") == 3
        st = lab.status()
        assert st["holds_by_reason"].get(UNSAFE), st
        assert "outside serve.roots" in str(st["plan"]["holds"])
        assert lab.in_force() == before | {(lab.srv("paws", "home"), "172.16.1.6")}
    lab.config["serve"]["roots"] = [str(lab.root / "srv")]
    assert lab.cli("sync") == 0
    assert (lab.srv("tools", "home"), "172.16.0.6") in lab.in_force()


def test_public_export_through_a_symlink_leaves_at_once(lab: Lab) -> None:
    _tools_and_paws(lab)
    scratch = lab.srv("scratch")
    lab.config["public_exports"] = {"scratch": {"path": scratch, "clients": ["172.16.0.0/21"]}}
    assert lab.cli("sync") == 0
    assert (scratch, "172.16.0.0/21") in lab.in_force()
    os.rmdir(scratch)
    os.symlink(lab.srv("tools", "home"), scratch)
    assert lab.cli("sync") == 3
    assert (scratch, "172.16.0.0/21") not in lab.in_force()
    assert all(path != lab.srv("tools", "home") or c == "172.16.0.5" for path, c in lab.in_force())
    changes = lab.status()["plan"]["changes"]
    assert {(c["project"], c["action"], c["reason"]) for c in changes} == {
        ("public:scratch", "remove", UNSAFE)
    }
    assert lab.files()["public-scratch.exports"].count("\n") == 1  # the header only


def test_a_symlinked_parent_directory_is_unsafe(lab: Lab) -> None:
    """Not only the last component: /srv/tools -> /srv/paws moves every tools volume."""
    _tools_and_paws(lab)
    assert lab.cli("sync") == 0
    tools = lab.root / "srv" / "tools"
    (tools / "home").rmdir()
    tools.rmdir()
    os.symlink(lab.root / "srv" / "paws", tools)
    assert lab.cli("sync") == 3
    assert lab.in_force() == {(lab.srv("paws", "home"), "172.16.1.5")}
    holds = lab.status()["plan"]["holds"]
    assert any(h["reason"] == UNSAFE and "resolves to" in h["detail"] for h in holds), holds


# ---------------------------------------------------------------------------- decide rules


def _input(**kw: object) -> DecideInput:
    path = "/srv/tools/home"
    snap = InventorySnapshot(
        "test",
        {"tools": ProjectRecord("id-tools", "tools", True)},
        {
            "tools": tuple(
                InstanceRecord(f"i-{n}", f"i-{n}", "tools", "ACTIVE", (ipaddress.ip_address(a),))
                for n, a in enumerate(("172.16.0.5", "172.16.0.6"))
            )
        },
    )
    in_force = {
        "tools.exports": ExportsFile(
            "tools.exports", "project", "tools", (ExportLine(path, "rw", ("172.16.0.5",)),)
        )
    }
    base = DecideInput(
        private={"tools": (ServedExport("tools", "home", path, "rw"),)},
        public=(),
        snapshot=snap,
        in_force=in_force,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "policy",
    [Policy(), Policy(maintenance=Maintenance.FREEZE), Policy(maintenance=Maintenance.HOLD)],
    ids=["normal", "freeze", "maintenance"],
)
def test_decide_unsafe_path_removes_at_once_whatever_holds(policy: Policy) -> None:
    plan = decide(_input(unsafe_paths={"/srv/tools/home": "a symlink"}), policy)
    assert [(c.client, c.action.value, c.reason.value) for c in plan.changes] == [
        ("172.16.0.5", "remove", UNSAFE)
    ]
    assert plan.files["tools.exports"] is not None
    assert plan.files["tools.exports"].lines == ()
    assert any(h.reason.value == UNSAFE and h.detail == "a symlink" for h in plan.holds)


def test_decide_held_path_keeps_what_is_in_force_and_adds_nothing() -> None:
    plan = decide(_input(held_paths={"/srv/tools/home": "outside"}), Policy())
    assert plan.changes == ()
    f = plan.files["tools.exports"]
    assert f is not None and f.lines[0].clients == ("172.16.0.5",)
    held = {(h.client, h.reason.value) for h in plan.holds}
    assert ("172.16.0.6", UNSAFE) in held and (None, UNSAFE) in held


def test_check_served_paths(tmp_path: Path) -> None:
    from nfs_exportd.read.projects import check_served_paths  # type: ignore[attr-defined]

    root = tmp_path.resolve() / "srv"
    (root / "a" / "home").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "link").symlink_to(root / "b")
    (root / "a" / "loop").symlink_to("loop")
    (root / "a" / "dangling").symlink_to(root / "nowhere")
    paths = {
        "ok": str(root / "a" / "home"),
        "missing": str(root / "a" / "missing"),
        "link": str(root / "a" / "link"),
        "below-link": str(root / "a" / "link" / "x"),
        "loop": str(root / "a" / "loop"),
        "dangling": str(root / "a" / "dangling"),
        "etc": "/etc",
        "root": "/",
        "outside": "/data/tools/home",
    }
    res = check_served_paths(paths.values(), [str(root)])
    assert set(res.unsafe) == {
        paths[k] for k in ("link", "below-link", "loop", "dangling", "etc", "root")
    }
    assert set(res.held) == {paths["outside"]}
