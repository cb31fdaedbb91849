"""Nova v2.1 server listings, with the behaviour that makes naive inventories wrong.

* Pages are capped at ``[api] max_limit`` (1,000 by default) and carry a ``next`` link
  whenever a page is full, so a client that ignores ``servers_links`` silently stops at
  1,000 servers.
* ``all_tenants`` needs a *project-scoped admin* (stock policy, ``scope_types=['project']``):
  a system-scoped token is refused with 403 like in a real cloud with scope enforcement.
* ``changes-since`` also returns servers deleted since then, with status ``DELETED``.
* Servers in a down cell are returned at microversion >= 2.69 as ``status: UNKNOWN`` with
  only ``id``, ``tenant_id``, ``created``, ``security_groups`` and ``links`` (``/servers``:
  ``id``, ``status``, ``links``), and silently omitted below 2.69
  (``list_records_by_skipping_down_cells``).
* ``addresses`` are hidden (``{}``) while a server is building.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .http import Request, Response, fail, link, parse_bool
from .scenario import stable_uuid
from .state import CloudState, ServerRec, Token, TokenCheck, iso, mac_for, parse_time

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 96)
DOWN_CELL_VERSION = (2, 69)
UNAUTHORIZED = "The request you have made requires authentication."
VM_STATES = {
    "ACTIVE": ("active", 1),
    "BUILD": ("building", 0),
    "SHUTOFF": ("stopped", 4),
    "ERROR": ("error", 0),
    "PAUSED": ("paused", 3),
    "SUSPENDED": ("suspended", 7),
    "SHELVED": ("shelved", 4),
    "SHELVED_OFFLOADED": ("shelved_offloaded", 4),
    "SOFT_DELETED": ("soft-delete", 4),
    "DELETED": ("deleted", 0),
    "RESCUE": ("rescued", 1),
    "RESIZE": ("active", 1),
    "VERIFY_RESIZE": ("resized", 1),
    "REBOOT": ("active", 1),
    "HARD_REBOOT": ("active", 1),
    "MIGRATING": ("active", 1),
}


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def version_doc(root: str) -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": _fmt(MAX_VERSION),
        "min_version": _fmt(MIN_VERSION),
        "updated": "2013-07-23T11:33:21Z",
        "links": [
            {"rel": "self", "href": f"{root}/v2.1/"},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
        ],
        "media-types": [
            {
                "base": "application/json",
                "type": "application/vnd.openstack.compute+json;version=2.1",
            }
        ],
    }


def requested_version(req: Request) -> tuple[int, int]:
    """The microversion asked for in ``OpenStack-API-Version`` (or the legacy header)."""
    raw: str | None = None
    new = req.header("OpenStack-API-Version")
    if new:
        for part in new.split(","):
            bits = part.strip().split()
            if len(bits) == 2 and bits[0].lower() == "compute":
                raw = bits[1]
    if raw is None:
        raw = req.header("X-OpenStack-Nova-API-Version")
    if raw is None:
        return MIN_VERSION
    if raw.strip().lower() == "latest":
        return MAX_VERSION
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", raw)
    if not m:
        raise fail("compute", 400, f"Invalid API version request string: {raw!r}")
    v = (int(m.group(1)), int(m.group(2)))
    if not MIN_VERSION <= v <= MAX_VERSION:
        raise fail(
            "compute",
            406,
            f"Version {raw} is not supported by the API. Minimum is {_fmt(MIN_VERSION)} "
            f"and maximum is {_fmt(MAX_VERSION)}.",
        )
    return v


class Nova:
    def __init__(self, state: CloudState, check_token: TokenCheck | None = None) -> None:
        self.state = state
        self.check_token = check_token or state.check_token

    def handle(self, req: Request) -> Response:
        path = req.path
        if req.method not in ("GET", "HEAD"):
            raise fail("compute", 405, "the simulator only lists servers")
        if path == "":
            return Response(
                200,
                {
                    "versions": [
                        {
                            "id": "v2.0",
                            "status": "SUPPORTED",
                            "version": "",
                            "min_version": "",
                            "updated": "2011-01-21T11:33:21Z",
                            "links": [{"rel": "self", "href": f"{req.root}/v2/"}],
                        },
                        version_doc(req.root),
                    ]
                },
            )
        if path == "/v2.1":
            return Response(200, {"version": version_doc(req.root)})
        if not path.startswith("/v2.1/"):
            raise fail("compute", 404, f"no such API: {path}")
        mv = requested_version(req)
        resp = self._versioned(req, path[len("/v2.1") :], mv)
        v = _fmt(mv)
        resp.headers.update(
            {
                "OpenStack-API-Version": f"compute {v}",
                "X-OpenStack-Nova-API-Version": v,
                "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
            }
        )
        return resp

    def _versioned(self, req: Request, path: str, mv: tuple[int, int]) -> Response:
        tok, _why = self.check_token(req.header("X-Auth-Token"))
        if tok is None:
            raise fail("compute", 401, UNAUTHORIZED)
        if path in ("/servers", "/servers/detail"):
            return self.list_servers(req, tok, mv, detail=path.endswith("/detail"))
        if path.startswith("/servers/") and path.count("/") == 2:
            return self.show_server(req, tok, mv, path.rsplit("/", 1)[1])
        raise fail("compute", 404, f"the resource could not be found: {path}")

    def _policy(self, tok: Token, rule: str) -> None:
        if tok.system or tok.project_id is None:
            # stock Nova policies have scope_types=['project']: other scopes are refused
            raise fail("compute", 403, f"Policy doesn't allow {rule} to be performed.")

    def list_servers(self, req: Request, tok: Token, mv: tuple[int, int], detail: bool) -> Response:
        rule = "os_compute_api:servers:detail" if detail else "os_compute_api:servers:index"
        self._policy(tok, rule)
        all_tenants = False
        if req.arg("all_tenants") is not None:
            parsed = parse_bool(req.arg("all_tenants") or "")
            if parsed is None:
                raise fail(
                    "compute",
                    400,
                    f"Unrecognized value '{req.arg('all_tenants')}', acceptable values are: "
                    "'0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'",
                )
            all_tenants = parsed
        project: str | None = tok.project_id
        if all_tenants:
            if not tok.is_admin:
                raise fail(
                    "compute", 403, f"Policy doesn't allow {rule}:get_all_tenants to be performed."
                )
            project = req.arg("project_id") or req.arg("tenant_id")
        limit = self._limit(req)
        since = self._time_arg(req, "changes-since")
        before = self._time_arg(req, "changes-before") if mv >= (2, 66) else None
        if since is not None and before is not None and before < since:
            raise fail(
                "compute",
                400,
                "The value of changes-since must be less than or equal to changes-before.",
            )
        names = req.arg("name")
        try:
            name_re = re.compile(names) if names else None
        except re.error as e:
            raise fail("compute", 400, f"Invalid name filter: {e}") from None
        statuses = {s.upper() for s in req.args("status")}
        region = req.region or ""
        st = self.state
        with st.lock:
            candidates = st.region_servers(region, project)
            if since is not None:
                candidates = candidates + st.deleted_since(region, since)
                candidates.sort(key=lambda s: (s.created, s.id), reverse=True)
            show_down = mv >= DOWN_CELL_VERSION

            def visible(s: ServerRec) -> bool:
                if project is not None and s.project_id != project:
                    return False
                if s.down:
                    return show_down
                if name_re is not None and not name_re.search(s.name):
                    return False
                if statuses and s.status not in statuses:
                    return False
                if since is not None and s.updated < since:
                    return False
                return not (before is not None and s.updated > before)

            items = [s for s in candidates if visible(s)]
            marker = req.arg("marker")
            if marker is not None:
                items = self._after_marker(items, marker)
            page = items[:limit]
            body_items = [self._server(req.root, s, mv, detail, tok) for s in page]
        body: dict[str, Any] = {"servers": body_items}
        if page and len(page) == limit:  # Nova links a full page even when it is the last
            query = [*[(k, v) for k, v in req.query if k != "marker"], ("marker", page[-1].id)]
            body["servers_links"] = [{"rel": "next", "href": link(req.root, req.path, query)}]
        return Response(200, body)

    def _limit(self, req: Request) -> int:
        cap = self.state.settings.nova_max_limit
        raw = req.arg("limit")
        if raw is None:
            return cap
        try:
            n = int(raw)
        except ValueError:
            n = -1
        if n < 0:
            raise fail("compute", 400, f"limit param must be an integer, got {raw!r}")
        return min(n, cap)

    def _time_arg(self, req: Request, name: str) -> float | None:
        raw = req.arg(name)
        if raw is None:
            return None
        try:
            return parse_time(raw)
        except ValueError:
            raise fail("compute", 400, f"Invalid input for query parameters {name}.") from None

    def _after_marker(self, items: list[ServerRec], marker: str) -> list[ServerRec]:
        """Items after the marker in list order; the marker may itself be gone by now."""
        st = self.state
        m = st.servers.get(marker) or st.deleted.get(marker)
        if m is None:
            raise fail("compute", 400, f"marker [{marker}] not found")
        key = (m.created, m.id)
        return [s for s in items if (s.created, s.id) < key]

    def show_server(self, req: Request, tok: Token, mv: tuple[int, int], sid: str) -> Response:
        self._policy(tok, "os_compute_api:servers:show")
        with self.state.lock:
            s = self.state.servers.get(sid)
            if (
                s is None
                or s.region != req.region
                or (not tok.is_admin and s.project_id != tok.project_id)
            ):
                raise fail("compute", 404, f"Instance {sid} could not be found.")
            if s.down and mv < DOWN_CELL_VERSION:
                raise fail("compute", 503, "NotImplemented: the cell of this server is down")
            return Response(200, {"server": self._server(req.root, s, mv, True, tok)})

    # ------------------------------------------------------------------ views

    def _links(self, root: str, sid: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{root}/v2.1/servers/{sid}"},
            {"rel": "bookmark", "href": f"{root}/servers/{sid}"},
        ]

    def _addresses(self, s: ServerRec) -> dict[str, list[dict[str, Any]]]:
        if s.status in ("BUILD", "DELETED"):
            return {}  # Nova hides the network info cache while building
        out: dict[str, list[dict[str, Any]]] = {}
        for kind in ("fixed", "floating"):
            for a in s.addresses:
                if a.type != kind:
                    continue
                net = a.network
                if kind == "floating":
                    # NATed to the server's fixed IPv4: listed under that address's network
                    fixed_nets = [
                        b.network for b in s.addresses if b.type == "fixed" and b.version == 4
                    ]
                    net = net if net in fixed_nets else (fixed_nets or [net])[0]
                port_net = net
                out.setdefault(net, []).append(
                    {
                        "version": a.version,
                        "addr": a.addr,
                        "OS-EXT-IPS:type": kind,
                        "OS-EXT-IPS-MAC:mac_addr": mac_for(stable_uuid("port", s.id, port_net)),
                    }
                )
        for text in self.state.extra_addresses(s.id):  # ports added by hand, raw
            out.setdefault("extra", []).append(
                {
                    "version": 6 if ":" in str(text) else 4,
                    "addr": text,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": mac_for(stable_uuid("port", s.id, "extra")),
                }
            )
        return out

    def _server(
        self, root: str, s: ServerRec, mv: tuple[int, int], detail: bool, tok: Token
    ) -> dict[str, Any]:
        links = self._links(root, s.id)
        if s.down:
            if detail:  # as in Nova's api-samples for 2.69
                return {
                    "id": s.id,
                    "status": "UNKNOWN",
                    "tenant_id": s.project_id,
                    "created": iso(s.created),
                    "security_groups": [{"name": "default"}],
                    "links": links,
                }
            return {"id": s.id, "status": "UNKNOWN", "links": links}
        if not detail:
            return {"id": s.id, "name": s.name, "links": links}
        vm_state, power = VM_STATES.get(s.status, ("active", 1))
        host = f"cloudvirt{int(hashlib.sha1(s.id.encode()).hexdigest()[:4], 16) % 40 + 1:04d}"
        d: dict[str, Any] = {
            "id": s.id,
            "name": s.name,
            "status": s.status,
            "tenant_id": s.project_id,
            "user_id": s.user_id,
            "metadata": {},
            "hostId": hashlib.sha224((s.project_id + host).encode()).hexdigest(),
            "image": {
                "id": stable_uuid("image", "debian-12"),
                "links": [{"rel": "bookmark", "href": f"{root}/images/x"}],
            },
            "flavor": {
                "vcpus": 2,
                "ram": 4096,
                "disk": 20,
                "ephemeral": 0,
                "swap": 0,
                "original_name": "g4.cores2.ram4.disk20",
                "extra_specs": {},
            },
            "created": iso(s.created),
            "updated": iso(s.updated),
            "addresses": self._addresses(s),
            "accessIPv4": "",
            "accessIPv6": "",
            "links": links,
            "OS-DCF:diskConfig": "MANUAL",
            "progress": 0,
            "OS-EXT-AZ:availability_zone": s.availability_zone,
            "config_drive": "",
            "key_name": None,
            "OS-SRV-USG:launched_at": iso(s.created).replace("Z", ".000000"),
            "OS-SRV-USG:terminated_at": None,
            "security_groups": [{"name": "default"}],
            "OS-EXT-STS:task_state": None,
            "OS-EXT-STS:vm_state": vm_state,
            "OS-EXT-STS:power_state": power,
            "os-extended-volumes:volumes_attached": [],
        }
        if s.status == "DELETED" and s.deleted_at is not None:
            d["OS-SRV-USG:terminated_at"] = iso(s.deleted_at).replace("Z", ".000000")
        if tok.is_admin:
            d["OS-EXT-SRV-ATTR:host"] = host
            d["OS-EXT-SRV-ATTR:hypervisor_hostname"] = f"{host}.eqiad.wmnet"
            d["OS-EXT-SRV-ATTR:instance_name"] = f"instance-{int(s.created) % 100000:08x}"
        if mv >= (2, 9):
            d["locked"] = False
        if mv >= (2, 19):
            d["description"] = None
        if mv >= (2, 26):
            d["tags"] = []
        if mv >= (2, 63):
            d["trusted_image_certificates"] = None
        if mv >= (2, 73):
            d["locked_reason"] = None
        if mv >= (2, 96):
            d["pinned_availability_zone"] = None
        return d
