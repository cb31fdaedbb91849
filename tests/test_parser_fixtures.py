"""Fixture tests of the pure parsers, pyinfra style: given these facts (a file under
``tests/fixtures/<parser>/``), expect these (the ``.yaml`` next to it).

The parsers are otherwise reached only through HTTP (the simulated cloud) or the real
exportfs; here each case is one real answer (see ``tests/fixtures/README.md`` for where
they come from), so a new case is two files and no code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nfs_exportd import errors
from nfs_exportd.apply.exportfs import parse_etab, parse_stderr
from nfs_exportd.model import AddressClaim, InstanceRecord, ProjectRecord
from nfs_exportd.read.inventory.openstack import merge_region, parse_projects, servers_of

FIXTURES = Path(__file__).parent / "fixtures"


def cases(parser: str) -> list[Any]:
    """(input file, expected) per case of one parser, named by the case."""
    folder = FIXTURES / parser
    out = []
    for expected in sorted(folder.glob("*.yaml")):
        (given,) = [p for p in folder.glob(expected.stem + ".*") if p.suffix != ".yaml"]
        want = yaml.safe_load(expected.read_text())
        out.append(pytest.param(given, want, id=expected.stem))
    assert out, f"no cases in {folder}"
    return out


def raised(want: dict[str, Any], call: Callable[[], Any]) -> Any:
    """Run ``call``; when the case expects an error, check its type and whole message."""
    if "error" not in want:
        return call()
    kind = getattr(errors, want["error"]["type"])
    with pytest.raises(kind) as caught:
        call()
    assert type(caught.value) is kind
    assert str(caught.value) == want["error"]["message"]
    return None


def instance(rec: InstanceRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "status": rec.status,
        "addresses": [str(a) for a in rec.addresses],
    }


# --------------------------------------------------------------------------- exportfs


@pytest.mark.parametrize(("given", "want"), cases("exportfs_stderr"))
def test_exportfs_stderr(given: Path, want: dict[str, Any]) -> None:
    """exportfs's stderr -> messages: errors and warnings, attributed to an exports
    file and line, or to an export path, where exportfs says which."""
    got = [
        {k: v for k, v in vars(m).items() if v not in (None, False)}
        for m in parse_stderr(given.read_text())
    ]
    assert got == want["messages"]


@pytest.mark.parametrize(("given", "want"), cases("etab"))
def test_etab(given: Path, want: dict[str, Any]) -> None:
    """/var/lib/nfs/etab -> (path, client) pairs with their options."""
    got = parse_etab(given.read_text())
    assert {f"{path} {client}": sorted(opts) for (path, client), opts in got.items()} == (
        want["pairs"] or {}
    )


# --------------------------------------------------------------------------- OpenStack


@pytest.mark.parametrize(("given", "want"), cases("keystone_projects"))
def test_keystone_projects(given: Path, want: dict[str, Any]) -> None:
    """Keystone's GET /v3/projects answer -> projects by id (and their domains)."""
    got = raised(want, lambda: parse_projects(json.loads(given.read_text())))
    if got is not None:
        records, domains = got
        assert {
            pid: {"name": r.name, "enabled": r.enabled, "domain": domains[pid]}
            for pid, r in records.items()
        } == want["projects"]
        assert all(r.id == pid for pid, r in records.items())


@pytest.mark.parametrize(("given", "want"), cases("nova_servers"))
def test_nova_servers(given: Path, want: dict[str, Any]) -> None:
    """A project-scoped Nova page (per-project mode) -> that project's instances, and
    what makes the project unknown."""
    facts = want["given"]
    project = ProjectRecord(facts["project"]["id"], facts["project"]["name"], True)
    servers = json.loads(given.read_text())["servers"]
    bad: list[str] = []
    got = raised(
        want,
        lambda: servers_of(
            project, facts["region"], servers, bad, facts.get("include_floating_ips", False)
        ),
    )
    if got is not None:
        assert [instance(r) for r in got] == want["instances"]
        assert all(r.project == project.name for r in got)
        assert bad == want["bad"]


@pytest.mark.parametrize(("given", "want"), cases("neutron_region"))
def test_neutron_region(given: Path, want: dict[str, Any]) -> None:
    """One region's Neutron ports, Nova servers and floating IPs (all-projects mode) ->
    instances per project, unknown projects, and claims on addresses."""
    facts = want["given"]
    projects = {pid: ProjectRecord(pid, p["name"], True) for pid, p in facts["projects"].items()}
    page = json.loads(given.read_text())
    instances: dict[str, list[InstanceRecord]] = {}
    incomplete: dict[str, str] = {}
    claims: dict[str, list[AddressClaim]] = {}
    raised(
        want,
        lambda: merge_region(
            facts["region"],
            projects,
            page["ports"],
            page["servers"],
            page.get("floatingips", []),
            instances,
            incomplete,
            claims,
        ),
    )
    if "error" in want:
        return
    assert {p: [instance(r) for r in recs] for p, recs in instances.items()} == want["instances"]
    assert incomplete == want["incomplete"]
    assert {
        ip: [{"detail": c.detail, "projects": list(c.projects), "ids": list(c.ids)} for c in cs]
        for ip, cs in claims.items()
    } == want["claims"]


@pytest.mark.parametrize("bad_id", ["f00 *(rw)", "a/b", "x" * 65, "", "é1"])
def test_a_keystone_id_outside_the_grammar_is_bad_data(bad_id: str) -> None:
    """The id is recorded in the managed file and decides ownership: a listing with a
    malformed id is bad data (unknown, the exports in force kept), never an id written
    into a file (the renderer would refuse every cycle)."""
    from nfs_exportd.errors import InventoryBadData
    from nfs_exportd.read.inventory.openstack import parse_projects

    body = {
        "projects": [
            {"id": "0a1b", "name": "tools", "enabled": True},
            {"id": bad_id, "name": "paws", "enabled": True},
        ]
    }
    with pytest.raises(InventoryBadData, match=r"paws.*malformed id"):
        parse_projects(body)
