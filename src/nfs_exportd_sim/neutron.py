"""Neutron v2.0 ports and floating IPs: the authoritative answer to "who owns this IP".

Follows the real API where a client can go wrong: ``fields=`` (repeatable) selects
columns, any top-level attribute filters (a repeated key means OR; an unknown attribute
is a 400 because ``filter-validation`` is on), pages are ``limit``/``marker`` with
``ports_links``, the configured ``pagination_max_limit`` (``neutron_page_size``) pages
even clients that did not ask for it, a marker that no longer exists is a 404, and a
non-admin token sees only its own project.  ``changed_since`` (the timestamp extension)
lists what was created or updated since then, never what was deleted.
"""

from __future__ import annotations

from typing import Any

from .http import Request, Response, fail, link, parse_bool
from .state import CloudState, Token, TokenCheck, parse_time

UNAUTHORIZED = "The request you have made requires authentication."
PAGING_ARGS = frozenset({"limit", "marker", "page_reverse", "fields", "sort_key", "sort_dir"})
EXTENSIONS = [
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("fields", "Field selection", "Simulator marker: the fields= parameter selects columns."),
    (
        "filter-validation",
        "Filter parameters validation",
        "Provides validation on filter parameters.",
    ),
    (
        "project-id",
        "project_id field enabled",
        "Extension that indicates that project_id is enabled.",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields "
        "to all Neutron resources that have Neutron standard attributes.",
    ),
    (
        "router",
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 "
        "Neutron networks and access to external networks via a NAT gateway.",
    ),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
]
COLLECTIONS = {"ports": "port", "floatingips": "floatingip"}


class Neutron:
    def __init__(self, state: CloudState, check_token: TokenCheck | None = None) -> None:
        self.state = state
        self.check_token = check_token or state.check_token

    def handle(self, req: Request) -> Response:
        path = req.path
        if req.method not in ("GET", "HEAD"):
            raise fail("network", 405, "the simulator only lists ports and floating IPs")
        if path == "":
            return Response(
                200,
                {
                    "versions": [
                        {
                            "id": "v2.0",
                            "status": "CURRENT",
                            "links": [{"rel": "self", "href": f"{req.root}/v2.0/"}],
                        }
                    ]
                },
            )
        tok, _why = self.check_token(req.header("X-Auth-Token"))
        if tok is None:
            raise fail("network", 401, UNAUTHORIZED)
        if tok.system or tok.project_id is None:
            # Neutron's new defaults are scope_types=['project'] with enforce_scope on
            raise fail("network", 403, "This request requires a project-scoped token.")
        if path == "/v2.0":
            return Response(
                200,
                {
                    "resources": [
                        {
                            "name": single,
                            "collection": coll,
                            "links": [{"rel": "self", "href": f"{req.root}/v2.0/{coll}"}],
                        }
                        for coll, single in COLLECTIONS.items()
                    ]
                },
            )
        if path == "/v2.0/extensions":
            return Response(200, {"extensions": [self._ext(*e) for e in EXTENSIONS]})
        if path.startswith("/v2.0/extensions/"):
            alias = path.rsplit("/", 1)[1]
            for e in EXTENSIONS:
                if e[0] == alias:
                    return Response(200, {"extension": self._ext(*e)})
            raise fail("network", 404, f"Extension with alias {alias} does not exist")
        parts = path.split("/")  # ["", "v2.0", collection, id?]
        if len(parts) in (3, 4) and parts[2] in COLLECTIONS:
            records = self._records(req, parts[2], tok)
            if len(parts) == 4:
                return self._show(req, parts[2], parts[3], records)
            return self._list(req, parts[2], records)
        raise fail("network", 404, f"The resource could not be found: {path}")

    @staticmethod
    def _ext(alias: str, name: str, description: str) -> dict[str, Any]:
        return {
            "alias": alias,
            "name": name,
            "description": description,
            "updated": "2013-02-03T10:00:00-00:00",
            "links": [],
        }

    def _records(self, req: Request, collection: str, tok: Token) -> list[dict[str, Any]]:
        region = req.region or ""
        project = None if tok.is_admin else tok.project_id
        if collection == "ports":
            return self.state.region_ports(region, project)
        return self.state.region_fips(region, project)

    def _show(
        self, req: Request, collection: str, rid: str, records: list[dict[str, Any]]
    ) -> Response:
        single = COLLECTIONS[collection]
        for r in records:
            if r["id"] == rid:
                return Response(200, {single: _select(r, req.args("fields"))})
        raise fail("network", 404, f"{single.capitalize()} {rid} could not be found.")

    def _list(self, req: Request, collection: str, records: list[dict[str, Any]]) -> Response:
        fields = req.args("fields")
        filters: dict[str, list[str]] = {}
        for k, v in req.query:
            if k not in PAGING_ARGS and k != "changed_since":
                filters.setdefault(k, []).append(v)
        since = self._changed_since(req)
        if since is not None:
            # the timestamp extension: updated_at >= changed_since; a deleted port is
            # gone from the database, so no listing ever shows it again
            records = [r for r in records if parse_time(str(r["updated_at"])) >= since]
        known = set(records[0]) if records else set(self._attributes(collection))
        for k in filters:
            if k not in known:
                raise fail("network", 400, f"[{k}] is invalid attribute for filtering")
        items = [r for r in records if all(_matches(r, k, vs) for k, vs in filters.items())]
        sort_key = req.arg("sort_key") or "id"
        if sort_key not in known:
            raise fail("network", 400, f"{sort_key} is an invalid attribute for sort_key")
        reverse = (req.arg("sort_dir") or "asc") == "desc"

        def order(r: dict[str, Any]) -> tuple[str, str]:
            return (str(r.get(sort_key)), str(r["id"]))

        if sort_key != "id" or reverse:
            items.sort(key=order, reverse=reverse)
        page_reverse = parse_bool(req.arg("page_reverse") or "false") or False
        limit = self._limit(req)
        marker = req.arg("marker")
        if marker is not None:
            found = next((r for r in records if r["id"] == marker), None)
            if found is None:
                raise fail(
                    "network", 404, f"{COLLECTIONS[collection]} {marker} could not be found."
                )
            mkey = order(found)
            after = page_reverse == reverse  # walking towards the end of the sorted list
            items = [r for r in items if (order(r) > mkey if after else order(r) < mkey)]
        page = (items[-limit:] if page_reverse else items[:limit]) if limit else items
        body: dict[str, Any] = {collection: [_select(r, fields) for r in page]}
        if limit:
            base = [(k, v) for k, v in req.query if k not in ("marker", "limit", "page_reverse")]
            base.append(("limit", str(limit)))
            links = []
            # as neutron's get_pagination_links: "next" unless a short forward page,
            # "previous" unless a short backward page (so the first page has one too)
            if len(page) >= limit or page_reverse:
                query = [*base, *([("marker", str(page[-1]["id"]))] if page else [])]
                links.append({"rel": "next", "href": link(req.root, req.path, query)})
            if len(page) >= limit or not page_reverse:
                query = [*base, *([("marker", str(page[0]["id"]))] if page else [])]
                query.append(("page_reverse", "True"))
                links.append({"rel": "previous", "href": link(req.root, req.path, query)})
            body[f"{collection}_links"] = links
        return Response(200, body)

    @staticmethod
    def _changed_since(req: Request) -> float | None:
        raw = req.arg("changed_since")
        if raw is None:
            return None
        try:
            return parse_time(raw)
        except ValueError:
            raise fail(
                "network",
                400,
                f"Invalid input for changed_since. Reason: '{raw}' is not a valid timestamp.",
            ) from None

    def _limit(self, req: Request) -> int:
        """Effective page size: the client's ``limit`` capped by ``pagination_max_limit``."""
        cap = self.state.settings.neutron_page_size
        raw = req.arg("limit")
        n = 0
        if raw is not None:
            try:
                n = int(raw)
            except ValueError:
                n = -1
            if n < 0:
                raise fail(
                    "network",
                    400,
                    f"Bad limit request: Limit must be an integer 0 or greater and not '{raw}'",
                )
        if cap is not None and (n == 0 or n > cap):
            n = cap
        return n

    @staticmethod
    def _attributes(collection: str) -> list[str]:
        if collection == "ports":
            return [
                "id",
                "name",
                "network_id",
                "tenant_id",
                "project_id",
                "mac_address",
                "admin_state_up",
                "status",
                "device_id",
                "device_owner",
                "fixed_ips",
                "security_groups",
                "description",
                "tags",
                "created_at",
                "updated_at",
            ]
        return [
            "id",
            "floating_ip_address",
            "fixed_ip_address",
            "port_id",
            "tenant_id",
            "project_id",
            "router_id",
            "floating_network_id",
            "status",
            "description",
            "tags",
            "created_at",
            "updated_at",
        ]


def _select(record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    if not fields:
        return dict(record)
    return {k: record[k] for k in fields if k in record}


def _matches(record: dict[str, Any], key: str, values: list[str]) -> bool:
    """One filter: any of ``values`` matches (Neutron ORs a repeated key)."""
    actual = record.get(key)
    if key == "fixed_ips":
        return any(_fixed_ip_matches(actual or [], v) for v in values)
    for v in values:
        if isinstance(actual, bool):
            if parse_bool(v) == actual:
                return True
        elif isinstance(actual, list):
            if v in actual:
                return True
        elif actual is None:
            if v in ("", "None"):
                return True
        elif str(actual) == v:
            return True
    return False


def _fixed_ip_matches(fixed_ips: list[dict[str, str]], spec: str) -> bool:
    """``fixed_ips=ip_address=1.2.3.4`` or ``fixed_ips=subnet_id=...``."""
    key, sep, value = spec.partition("=")
    if not sep or key not in ("ip_address", "subnet_id", "ip_address_substr"):
        raise_bad = fail("network", 400, f"Invalid fixed_ips filter {spec!r}")
        raise raise_bad
    if key == "ip_address_substr":
        return any(value in f["ip_address"] for f in fixed_ips)
    return any(f.get(key) == value for f in fixed_ips)
