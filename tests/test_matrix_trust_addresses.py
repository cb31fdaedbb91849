"""Failure-matrix scenarios of issue 10, findings 1 and 2 (addresses and their owners):
driven like every matrix scenario (``run_scenario``: baseline, inject, during, clear,
after, converged) through the simulated cloud (real openstacksdk over HTTP) and the real
exportfs.  The simulator serves the bad data with ``add_port`` (raw fixed IPs, any
project id) and ``delete_project`` (servers stay, as in a real cloud).

* an exports-line injection through a Neutron fixed IP (a zone id with options, a newline
  and exportfs's ``\\057`` escape) never reaches a file: the instance's project holds
  (``unknown-project``, naming the port), the other projects still get their additions;
* ``::ffff:a.b.c.d`` is ``a.b.c.d``: another project's instance with the v4-mapped form
  conflicts with the IPv4 owner;
* a port of project X on a server of project Y: that address goes to neither
  (``ip-conflict`` naming both), the server's own address stays with Y;
* a port of a project Keystone does not list (an orphan of a deleted project) that reuses
  an address takes it from the old project at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

import pytest

from test_failure_matrix import (  # noqa: F401
    ADD_CHURN,
    ADD_CHURN_PAWS,
    BASE,
    CHURN_ADDS,
    CHURNED,
    CONFLICT,
    NEW_P,
    NEW_T,
    PENDING,
    R1,
    REMOVE_T2,
    T1,
    T2,
    T3,
    UNKNOWN_PROJ,
    Scenario,
    World,
    churn,
    create,
    cyc,
    delete,
    run_scenario,
    seq,
    world,
)

EVIL_PORT, EVIL_PORT_2, FOREIGN_PORT = "port-evil-1", "port-evil-2", "zz-port-of-paws"
INJECTIONS = (
    "fe80::1%x *(rw,no_root_squash,insecure)",
    "fd00::3%x\n\\057 *(rw,no_root_squash,insecure)\n\\057srv\\057paws\\057home *(rw)",
)
NEW_X = "172.16.0.71"  # the address of the foreign port

HEADER_RE = re.compile(r"# nfs-exportd managed file, do not edit: project=[a-z][a-z0-9-]*")
LINE_RE = re.compile(r"(/[A-Za-z0-9_.+@,=:-]+)+ -[a-z_]+(,[a-z_]+)*( [0-9a-f:.]+)+")


def canonical(client: str) -> bool:
    """The test's own oracle (independent of the code under test): exactly the
    ``ipaddress`` text of an address without a zone id."""
    try:
        return "%" not in client and str(ipaddress.ip_address(client)) == client
    except ValueError:
        return False


def files_clean(w: World) -> None:
    """Every managed file is the header and strict ``PATH -OPTIONS CLIENT...`` lines with
    canonical unicast clients: nothing of the injected text, in any form."""
    for name, text in w.lab.files().items():
        lines = text.split("\n")
        assert lines[-1] == "" and HEADER_RE.fullmatch(lines[0]), (name, text)
        if lines[1].startswith("# keystone-id="):  # the project's bound id, a comment
            assert re.fullmatch(r"# keystone-id=[A-Za-z0-9_-]{1,64}", lines[1]), (name, text)
            lines.pop(1)
        for line in lines[1:-1]:
            assert LINE_RE.fullmatch(line), (name, line)
            assert all(canonical(c) for c in line.split(" ")[2:]), (name, line)
    etab = w.lab.etab.read_text()
    assert "*(" not in etab and "%" not in etab and "\\" not in etab, etab


def injected(w: World) -> None:
    w.sim.add_port("tools-3", [INJECTIONS[0]], port_id=EVIL_PORT)
    w.sim.add_port("tools-4", ["172.16.1.99", INJECTIONS[1]], port_id=EVIL_PORT_2)


def injection_removed(w: World) -> None:
    w.sim.remove_port(EVIL_PORT)
    w.sim.remove_port(EVIL_PORT_2)


def tools_holds(name: str, why: str, config: Mapping[str, Any] | None = None) -> Scenario:
    """Only tools is unknown: it keeps exactly what it has (its removal and its addition
    wait), paws gets its new instance at once, and no file ever holds the injection."""
    held = cyc(3, BASE.plus("paws", NEW_P), {UNKNOWN_PROJ}, (), why=why, check=files_clean)
    return Scenario(
        name,
        inject=seq(injected, churn),
        during=(
            cyc(
                3,
                BASE.plus("paws", NEW_P),
                {UNKNOWN_PROJ},
                {ADD_CHURN_PAWS},
                why=why,
                check=files_clean,
            ),
            held,
            held,
        ),
        clear=injection_removed,
        after=(
            cyc(3, CHURN_ADDS, {PENDING}, {("tools", NEW_T, "add", "new-instance")}),
            cyc(0, CHURNED, (), REMOVE_T2, check=files_clean),
        ),
        config=config or {},
    )


def orphan_reuses_t2(w: World) -> None:
    """tools-2 is deleted; its address goes to a server of a project that is then deleted
    from Keystone (its server and port stay, as in a real cloud)."""
    w.sim.delete_server("tools-2")
    w.sim.add_project("ghost")
    w.sim.create_server("ghost-1", "ghost", region=R1, addresses=[T2], server_id="ghost-1")
    w.sim.delete_project("ghost")


S: list[Scenario] = [
    tools_holds("neutron-fixed-ip-injection", why=EVIL_PORT),
    tools_holds(
        "nova-address-injection-per-project-mode",
        why="tools-3",
        config={"inventory": {"cloud": "observer", "mode": "per-project"}},
    ),
    Scenario(
        "v4-mapped-address-conflicts-with-its-ipv4",  # ::ffff:172.16.0.11 is T1
        inject=create("paws-mapped", "paws", R1, "::ffff:" + T1),
        during=(
            cyc(
                3,
                BASE.minus("tools", T1),
                {CONFLICT},
                {("tools", T1, "remove", CONFLICT)},
                why="claimed by projects paws, tools",
            ),
            cyc(3, BASE.minus("tools", T1), {CONFLICT}, ()),
        ),
        clear=delete("paws-mapped"),
        after=(cyc(0, BASE, (), {("tools", T1, "add", "new-instance")}),),
    ),
    Scenario(
        "port-of-one-project-on-a-server-of-another",  # paws's port on tools-3
        inject=lambda w: w.sim.add_port("tools-3", [NEW_X], project="paws", port_id=FOREIGN_PORT),
        during=(
            cyc(
                3,
                BASE,
                {CONFLICT},
                (),
                why=f"port {FOREIGN_PORT} of project paws on server tools-3 of project tools",
            ),
            cyc(3, BASE, {CONFLICT}, ()),
        ),
        # the port is attached where it belongs: a server of its own project
        clear=seq(
            lambda w: w.sim.remove_port(FOREIGN_PORT),
            create("paws-x", "paws", R1, NEW_X),
        ),
        after=(cyc(0, BASE.plus("paws", NEW_X), (), {("paws", NEW_X, "add", "new-instance")}),),
    ),
    Scenario(
        "orphan-port-of-a-deleted-project-reuses-an-address",
        inject=seq(orphan_reuses_t2, delete("tools-3")),
        during=(
            cyc(
                3,
                BASE.minus("tools", T2),
                {PENDING},
                {("tools", T2, "remove", CONFLICT)},  # at once, not after confirmations
            ),
            cyc(3, BASE.minus("tools", T2), {PENDING}, ()),
        ),
        clear=delete("ghost-1"),
        after=(
            cyc(
                0,
                BASE.minus("tools", T2, T3),
                (),
                {("tools", T3, "remove", "instance-gone")},
            ),
        ),
        config={"safety": {"removal_confirmations": 3}},
    ),
]
SCENARIOS = {s.name: s for s in S}


def test_the_scenarios_have_the_matrix_shape() -> None:
    assert len(SCENARIOS) == len(S)
    for sc in S:
        assert len(sc.during) >= 2, sc.name
        last = sc.after[-1]
        assert last.rc == 0 and not last.holds, f"{sc.name}: must end converged"
        assert last.pairs != sc.during[-1].pairs, f"{sc.name}: the pending changes must happen"


@pytest.mark.parametrize("name", [s.name for s in S])
def test_trust_addresses(world: World, name: str) -> None:  # noqa: F811
    run_scenario(world, SCENARIOS[name])


def test_rollback_never_restores_an_address_an_orphan_claims(world: World) -> None:  # noqa: F811
    """``rollback`` asks the same ownership question: an address an orphaned port of a
    deleted project claims now is dropped from the restored files, naming the port."""
    w = world
    assert w.sync() == 0
    hist = w.lab.state_dir / "history"
    baseline = max(int(p.stem) for p in hist.glob("*.json") if p.stem.isdigit())
    orphan_reuses_t2(w)
    assert w.sync() == 0  # T2 leaves tools at once (ip-conflict)
    assert w.lab.in_force() == w.pairs(BASE.minus("tools", T2))
    w.capsys.readouterr()
    assert w.cli("rollback", "--to", str(baseline)) == 0
    out = w.capsys.readouterr().out
    assert f"{T2}: now belongs to project (fixed IP {T2} of port" in out, out
    assert "not listed by Keystone" in out, out
    assert w.lab.in_force() == w.pairs(BASE.minus("tools", T2))
