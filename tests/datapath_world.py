"""The simulated cloud of the data-path tests (both backends): its instances carry the
lab VMs' addresses (a1 198.51.100.11 and a2 .12 for project A, b1 .21 for project B), and
the lab's daemon reads it over HTTP with openstacksdk.  Each backend's test module adds
its own backend keys to ``lab.config``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from conftest import Lab, use_sim_cloud
from lab_fixtures import DataLab
from nfs_exportd_sim import SimCloud

ADMIN_PW = "admin-pw"
A1, A2, B1 = "198.51.100.11", "198.51.100.12", "198.51.100.21"
PROJECTS = ("proja", "projb")
SCENARIO = {
    "regions": ["RegionOne"],
    "projects": [{"name": "admin"}, {"name": "proja"}, {"name": "projb"}],
    "users": [
        {"name": "admin", "password": ADMIN_PW, "roles": [{"role": "admin", "project": "admin"}]},
        {"name": "observer", "password": "obs-pw", "roles": [{"role": "reader", "system": "all"}]},
    ],
    "servers": [
        {"id": "a-1", "name": "a-1", "project": "proja", "region": "RegionOne",
         "addresses": [A1]},
        {"id": "b-1", "name": "b-1", "project": "projb", "region": "RegionOne",
         "addresses": [B1]},
    ],
}  # fmt: skip


@contextmanager
def cloud_world(lab: Lab, datalab: DataLab, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCloud]:
    """The simulated cloud running, the lab's daemon reading it (projects proja and
    projb, one volume each, removals confirmed by 2 cycles); the data lab reset (no
    exports) before and after."""
    datalab.reset()
    sim = SimCloud(SCENARIO)
    sim.start()
    try:
        use_sim_cloud(lab, sim, monkeypatch, ADMIN_PW)
        lab.config["safety"]["removal_confirmations"] = 2
        lab.add_project("proja", 50001)
        lab.add_project("projb", 50002)
        yield sim
    finally:
        sim.stop()
        datalab.reset()


def volume(lab: Lab, project: str) -> str:
    """The path of ``project``'s one volume."""
    return lab.srv(project, "home")
