"""The data path with the exportfs backend, end to end: the simulated cloud's instances
carry the lab VMs' addresses, the real daemon (``nfs-exportd sync``) writes exports.d and
runs the sandboxed exportfs, and rpc.mountd (the kernel server's own user-space decision)
answers the VMs' MOUNT requests from the etab that exportfs wrote.

VMs: a1 198.51.100.11 and a2 .12 (project A's instances), b1 .21 (project B's).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import Lab
from datapath_world import A1, A2, B1, cloud_world, volume
from lab_fixtures import DataLab, datalab
from nfs_exportd_sim import SimCloud
from nfs_exportd_sim.lab.mnt3 import MNT3_OK, MNT3ERR_ACCES, mnt3_probe, mnt3_probes
from nfs_exportd_sim.sandbox import SANDBOX

__all__ = ["datalab"]  # a fixture, imported for pytest


@pytest.fixture
def e2e(lab: Lab, datalab: DataLab, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCloud]:
    """The lab's daemon writes into the data lab's exportfs sandbox (the etab rpc.mountd
    reads) and reads the simulated cloud; no exports at the start."""
    with cloud_world(lab, datalab, monkeypatch) as sim:
        sb = datalab.sandbox
        lab.config.update(
            {
                "exports_dir": str(sb / "exports.d"),
                "etab_file": str(sb / "lib" / "etab"),
                "exportfs_command": [str(SANDBOX), str(sb)],
            }
        )
        yield sim


def _access(datalab: DataLab, lab: Lab) -> dict[tuple[str, str], int | None]:
    """(vm, project) -> mountstat3 of a MOUNT of that project's volume from that VM (the
    three VMs probe at the same time)."""
    projects = ["proja", "projb"]
    vols = [volume(lab, p) for p in projects]

    def probe(vm: str) -> list[int | None]:
        return [r.status for r in mnt3_probes(datalab.vm(vm).netns, datalab.net.knfs_ip, vols)]

    vms = ["a1", "a2", "b1"]
    with ThreadPoolExecutor(len(vms)) as pool:
        answers = dict(zip(vms, pool.map(probe, vms), strict=True))
    return {(vm, p): answers[vm][i] for vm in vms for i, p in enumerate(projects)}


OK, NO = MNT3_OK, MNT3ERR_ACCES


def test_a_vm_mounts_its_projects_volume_and_is_refused_the_others(
    lab: Lab, datalab: DataLab, e2e: SimCloud
) -> None:
    assert _access(datalab, lab) == {k: NO for k in _access(datalab, lab)}  # nothing exported
    assert lab.cli("sync") == 0
    assert _access(datalab, lab) == {
        ("a1", "proja"): OK, ("a1", "projb"): NO,
        ("a2", "proja"): NO, ("a2", "projb"): NO,
        ("b1", "proja"): NO, ("b1", "projb"): OK,
    }  # fmt: skip
    refusals = datalab.mountd.refusals()
    assert any(f"from {B1} for {volume(lab, 'proja')}" in r for r in refusals)


def test_a_new_instance_mounts_after_one_cycle(lab: Lab, datalab: DataLab, e2e: SimCloud) -> None:
    assert lab.cli("sync") == 0
    probe = mnt3_probe(datalab.vm("a2").netns, datalab.net.knfs_ip, volume(lab, "proja"))
    assert probe.status == NO
    e2e.create_server("a-2", "proja", region="RegionOne", addresses=[A2])
    assert lab.cli("sync") == 0
    probe = mnt3_probe(datalab.vm("a2").netns, datalab.net.knfs_ip, volume(lab, "proja"))
    assert probe.status == OK, probe


def test_an_address_given_to_another_project_follows_it_in_one_cycle(
    lab: Lab, datalab: DataLab, e2e: SimCloud
) -> None:
    assert lab.cli("sync") == 0
    e2e.delete_server("a-1")
    e2e.create_server("b-2", "projb", region="RegionOne", addresses=[A1])  # a1 is now B's
    assert lab.cli("sync") == 0
    access = _access(datalab, lab)
    assert (access[("a1", "projb")], access[("a1", "proja")]) == (OK, NO), access
    assert access[("b1", "projb")] == OK


def _held(lab: Lab, datalab: DataLab, cycles: int, expect: int = 3) -> list[dict[str, object]]:
    """Run ``cycles`` syncs (each must exit ``expect``), probing every VM's access after
    each; returns the statuses.  No access may be lost at any point."""
    before = _access(datalab, lab)
    statuses = []
    for i in range(cycles):
        rc = lab.cli("sync")
        assert _access(datalab, lab) == before, f"a VM's access changed in cycle {i}"
        assert rc == expect, f"cycle {i}"
        statuses.append(lab.status())
    return statuses


def test_keystone_401_for_many_cycles_loses_no_access(
    lab: Lab, datalab: DataLab, e2e: SimCloud
) -> None:
    assert lab.cli("sync") == 0
    e2e.add_fault(service="identity", method="POST", path_regex="auth/tokens", status=401)
    statuses = _held(lab, datalab, cycles=5)
    assert all("401" in str(s["inventory"]) for s in statuses)


def test_the_maintenance_flag_holds_removals_and_no_vm_loses_access(
    lab: Lab, datalab: DataLab, e2e: SimCloud
) -> None:
    lab.config["safety"]["max_removal_fraction"] = 1.0  # only the flag holds these removals
    assert lab.cli("sync") == 0
    Path(lab.config["maintenance_file"]).write_text("upgrading the control plane\n")
    e2e.delete_server("b-1")
    statuses = _held(lab, datalab, cycles=4)
    assert statuses[-1]["holds_by_reason"] == {"maintenance": 1}


def test_a_too_large_removal_is_held_and_no_vm_loses_access(
    lab: Lab, datalab: DataLab, e2e: SimCloud
) -> None:
    lab.config["safety"].update({"max_removal_fraction": 0.25, "min_removal_count": 0})
    e2e.create_server("a-2", "proja", region="RegionOne", addresses=[A2], server_id="a-2")
    assert lab.cli("sync") == 0
    for sid in ("a-1", "a-2", "b-1"):  # every instance gone at once: 3 of 3 pairs
        e2e.delete_server(sid)
    statuses = _held(lab, datalab, cycles=4)
    assert statuses[-1]["holds_by_reason"] == {"too-much-change": 3}
