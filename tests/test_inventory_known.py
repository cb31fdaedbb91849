"""The address answers the all-projects read keeps from read to read
(``OpenStackInventory._known``): only accepted ones, the same answer as parsing again,
and bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nfs_exportd.addresses import parse_address
from nfs_exportd.model import ProjectRecord
from nfs_exportd.read.inventory import openstack, pages
from nfs_exportd.read.inventory.openstack import OpenStackInventory, OpenStackSettings

PROJECTS = {"a1": ProjectRecord("a1", "tools", True)}


def region(texts: list[str]) -> tuple[list[Any], list[Any]]:
    """One typed port and server per address text (as a cloud page decodes)."""
    ports = [
        {
            "id": f"p{n}",
            "device_id": f"s{n}",
            "device_owner": "compute:nova",
            "project_id": "a1",
            "fixed_ips": [{"ip_address": t}],
        }
        for n, t in enumerate(texts)
    ]
    servers = [{"id": f"s{n}", "status": "ACTIVE", "tenant_id": "a1", "name": f"vm{n}",
                "addresses": {"net": [{"addr": t, "OS-EXT-IPS:type": "fixed"}]}}
               for n, t in enumerate(texts)]  # fmt: skip
    return (
        pages.decode(json.dumps({"ports": ports}).encode(), pages.PORTS)["ports"],
        pages.decode(json.dumps({"servers": servers}).encode(), pages.SERVERS)["servers"],
    )


def merge(texts: list[str], known: dict[str, Any]) -> dict[str, Any]:
    instances: dict[str, Any] = {}
    incomplete: dict[str, str] = {}
    ports, servers = region(texts)
    openstack.merge_region("r1", PROJECTS, ports, servers, [], instances, incomplete, {},
                           known=known)  # fmt: skip
    return {"instances": instances, "incomplete": incomplete}


def test_kept_answers_are_the_accepted_ones_and_spare_the_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = ["10.0.0.1", "fd00::1", "::ffff:10.0.0.2", "fe80::1", "10.0.0.01"]
    known: dict[str, Any] = {}
    first = merge(texts, known)
    # refusals (link-local, a leading zero) are never kept: they are parsed and named again
    assert known == {t: parse_address(t) for t in texts[:3]}
    assert "fe80::1" in first["incomplete"]["tools"]  # the first refusal, named
    calls: list[object] = []

    def counted(text: object) -> Any:
        calls.append(text)
        return parse_address(text)

    monkeypatch.setattr(openstack, "parse_address", counted)
    second = merge(texts, known)
    assert second == first  # the same answer
    assert not set(calls) & set(texts[:3])  # the kept ones were not parsed again


def test_kept_answers_are_bounded() -> None:
    inv = OpenStackInventory(OpenStackSettings(clouds=("admin",)))
    inv._known = {f"10.0.{n // 250}.{n % 250 + 1}": parse_address("10.0.0.1") for n in range(5000)}
    inv._trim_known(2000)  # 4 x 2,000 + 4,096 is room for all of them
    assert len(inv._known) == 5000
    inv._trim_known(100)  # far more than a read of 100 ports can use: start again
    assert inv._known == {}
