"""A simulated OpenStack cloud (Keystone v3, Nova v2.1, Neutron v2.0) for tests, the
benchmark and ``make demo``: the real openstacksdk talks to it over HTTP, unmodified.

It enforces what the real services enforce (stock policies, page caps, tokens that die
with their project), changes at run time, injects faults by rule and counts requests,
so that every failure state of the inventory can be produced on demand.

Scenario (YAML or JSON; unknown keys are errors)::

    regions: [RegionOne, RegionTwo]
    projects: [{id: 9f1c, name: tools, enabled: true}]        # domain_id: default
    users:
      - {name: observer, password: pw, roles: [{role: reader, system: all},
                                               {role: reader, project: tools}]}
    servers:
      - {id: i-17, name: tools-1, project: tools, region: RegionOne, status: ACTIVE,
         addresses: ["172.16.0.5", "fd00::5",                 # fixed, network "private"
                     {addr: 203.0.113.5, type: floating, network: private}]}
    down_cells: [{region: RegionOne, server_ids: [i-17]}]     # or per server: down: true
    settings: {nova_max_limit: 1000, neutron_page_size: null, keystone_list_limit: null,
               token_ttl_seconds: 3600}

Ports are derived: one per (server, network) with all its fixed addresses, owner
``compute:nova``; each floating address becomes a floating IP NATed to the server's fixed
IPv4 on that network.  See ``cloud`` for the URL layout.
"""

from __future__ import annotations

from .cloud import SimCloud
from .external import ExternalKeystone, ServiceUser
from .generate import ADMIN_PASSWORD, OBSERVER_PASSWORD, generate
from .scenario import Scenario, ScenarioError, dump_scenario, load_scenario, parse_scenario

__all__ = [
    "ADMIN_PASSWORD",
    "OBSERVER_PASSWORD",
    "ExternalKeystone",
    "Scenario",
    "ScenarioError",
    "ServiceUser",
    "SimCloud",
    "dump_scenario",
    "generate",
    "load_scenario",
    "parse_scenario",
]
