"""Whole cycles with ``inventory.source: openstack``: the CLI, the real openstacksdk over
HTTP to the simulated cloud, and the real exportfs."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from conftest import Lab, use_sim_cloud, wait_for
from nfs_exportd_sim import SimCloud

ADMIN_PW = "admin-pw"
SCENARIO = {
    "regions": ["RegionOne", "RegionTwo"],
    "projects": [{"name": "admin"}, {"name": "tools"}, {"name": "paws"}],
    "users": [
        {"name": "admin", "password": ADMIN_PW, "roles": [{"role": "admin", "project": "admin"}]},
        {"name": "observer", "password": "obs-pw", "roles": [{"role": "reader", "system": "all"}]},
    ],
    "servers": [
        {"id": "t1", "name": "tools-1", "project": "tools", "region": "RegionOne",
         "addresses": ["172.16.0.5"]},
        {"id": "t2", "name": "tools-2", "project": "tools", "region": "RegionTwo",
         "addresses": ["172.16.1.6", "fd00::6"]},
        {"id": "p1", "name": "paws-1", "project": "paws", "region": "RegionOne",
         "addresses": ["172.16.0.7"]},
    ],
}  # fmt: skip


@pytest.fixture
def cloud(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCloud]:
    sim = SimCloud(SCENARIO)
    sim.start()
    try:
        use_sim_cloud(lab, sim, monkeypatch, ADMIN_PW)
        lab.config["safety"]["removal_confirmations"] = 2
        lab.add_project("tools", 50380)
        lab.add_project("paws", 52771)
        yield sim
    finally:
        sim.stop()


def test_sync_holds_on_401_and_converges(lab: Lab, cloud: SimCloud) -> None:
    tools, paws = lab.srv("tools", "home"), lab.srv("paws", "home")
    assert lab.cli("sync") == 0
    assert lab.in_force() == {
        (tools, "172.16.0.5"), (tools, "172.16.1.6"), (tools, "fd00::6"), (paws, "172.16.0.7"),
    }  # fmt: skip
    cloud.delete_server("t2")
    cloud.create_server("paws-2", "paws", region="RegionTwo", addresses=["172.16.1.9"])
    assert lab.cli("sync") == 3  # addition applied, removal 1 of 2
    assert (paws, "172.16.1.9") in lab.in_force()
    before = lab.in_force()
    cloud.add_fault(service="identity", method="POST", path_regex="auth/tokens", status=401)
    # the 401s of the outage report of the Keystone upgrade: nothing is lost, nothing counts
    for _ in range(3):
        assert lab.cli("sync") == 3
        assert lab.in_force() == before
    status = lab.status()
    assert status["inventory"]["complete"] is False
    assert "401" in status["inventory"]["problem"]
    cloud.clear_faults()
    assert lab.cli("sync") == 0  # 2 of 2: removed
    assert (tools, "172.16.1.6") not in lab.in_force()
    assert (tools, "172.16.0.5") in lab.in_force()


def test_ip_reused_by_another_project_leaves_at_once(lab: Lab, cloud: SimCloud) -> None:
    paws = lab.srv("paws", "home")
    tools = lab.srv("tools", "home")
    assert lab.cli("sync") == 0
    cloud.delete_server("p1")
    cloud.create_server("tools-3", "tools", region="RegionOne", addresses=["172.16.0.7"])
    assert lab.cli("sync") == 0
    assert (paws, "172.16.0.7") not in lab.in_force()
    assert (tools, "172.16.0.7") in lab.in_force()


def _inventory_complete(lab: Lab) -> object:
    inv = lab.status().get("inventory")
    return inv.get("complete") if isinstance(inv, dict) else None


def test_run_rereads_clouds_yaml_after_auth_failure_and_on_sighup(
    lab: Lab, cloud: SimCloud
) -> None:
    clouds = lab.root / "clouds.yaml"
    good = clouds.read_text()
    clouds.write_text(good.replace(ADMIN_PW, "rotated-away"))
    proc = lab.start_run({"OS_CLIENT_CONFIG_FILE": str(clouds)})
    try:
        wait_for(lambda: _inventory_complete(lab) is False, "held on the wrong password")
        assert lab.in_force() == set()
        # credentials rotated on disk: picked up after the auth failure, no restart
        clouds.write_text(good)
        wait_for(lambda: _inventory_complete(lab) is True, "recovered after the rotation")
        wait_for(lambda: len(lab.in_force()) == 4, "exports applied")
        # the cached connection keeps working until SIGHUP makes it re-read clouds.yaml
        port = cloud.base_url.rsplit(":", 1)[1]
        clouds.write_text(good.replace(f"127.0.0.1:{port}/identity", "127.0.0.1:9/identity"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _inventory_complete(lab) is False, "SIGHUP re-read clouds.yaml")
        assert len(lab.in_force()) == 4  # and nothing was lost
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
