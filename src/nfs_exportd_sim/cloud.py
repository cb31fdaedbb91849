"""``SimCloud``: Keystone, Nova and Neutron on one local HTTP port, with scripted faults.

URL layout (one port, one path prefix per service, like a devstack behind Apache)::

    {base}/identity                 Keystone root (300, version list)
    {base}/identity/v3              Keystone v3 (auth_url)
    {base}/compute/{REGION}         Nova root (version list)
    {base}/compute/{REGION}/v2.1    Nova v2.1 (catalog endpoint)
    {base}/network/{REGION}         Neutron root (catalog endpoint; version list)
    {base}/network/{REGION}/v2.0    Neutron v2.0

It binds 127.0.0.1 only.  The real openstacksdk and keystoneauth talk to it unmodified:
the catalog it hands out in every token points back at it.

With ``external_keystone`` (``nfs_exportd_sim.external``), Nova and Neutron accept the tokens of a
real Keystone instead, validated as keystonemiddleware does; register ``compute_url`` and
``network_url`` in that Keystone's catalog and give the scenario its project ids.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from .external import ExternalKeystone
from .faults import FaultTable
from .http import ApiError, Request, Response, error_body
from .keystone import Keystone
from .neutron import Neutron
from .nova import Nova
from .scenario import Address, Scenario, load_scenario, parse_scenario
from .state import CloudState, ServerRec

if TYPE_CHECKING:
    from .bus import Publisher

log = logging.getLogger(__name__)

VERSION_ROOTS = {"identity": "/v3", "compute": "/v2.1", "network": "/v2.0"}
# path segments that are ids, for request counting: "/servers/abc" -> "/servers/{id}"
_ID_AFTER = re.compile(r"/(servers|projects|regions|ports|floatingips|extensions)/(?!detail$)[^/]+")


class _Server(ThreadingHTTPServer):
    """Tracks open connections so that ``stop()`` can close idle keep-alive ones too:
    a stopped cloud must not go on answering on a client's pooled connection."""

    daemon_threads = True
    allow_reuse_address = True
    cloud: SimCloud

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (timeout fault) or a dropped connection is expected here
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.debug("sim: client %s went away", client_address)
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._open_lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as keystoneauth's connection pool expects
    # Headers and body go out in two writes: with Nagle on, the body waits for the
    # client's delayed ACK of the headers (~40 ms per response on Linux loopback), which
    # made every request look slow.  Real API servers (eventlet, uwsgi) set TCP_NODELAY.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sim %s - %s", self.address_string(), format % args)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        cloud = self.server.cloud
        outcome = cloud._serve(self.command, self.path, headers, body)
        if outcome is None:  # fault: drop the connection without an answer
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        resp, mode = outcome
        data = resp.encoded()
        self.send_response(resp.status)
        if resp.body is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-openstack-request-id", cloud._request_id())
        if mode == "truncated":
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if mode == "truncated":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)


class SimCloud:
    """A simulated OpenStack cloud serving a scenario on 127.0.0.1.

    Use as a context manager, or ``start()``/``stop()``.  Runtime changes, faults and
    request counts are thread-safe and take effect on the next request.
    """

    def __init__(
        self,
        scenario: Scenario | dict[str, Any] | str | Path,
        port: int = 0,
        external_keystone: ExternalKeystone | None = None,
        bus_url: str | None = None,
        notification_format: str = "unversioned",
    ) -> None:
        if isinstance(scenario, str | Path):
            scenario = load_scenario(scenario)
        self.scenario = parse_scenario(scenario)
        self.state = CloudState(self.scenario)
        self.faults = FaultTable()
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._count_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._region_counts: Counter[str] = Counter()
        self._req_seq = 0
        self.base_url = ""
        self.keystone = Keystone(self.state, self)
        self.external_keystone = external_keystone
        check = external_keystone.check if external_keystone is not None else None
        self.nova = Nova(self.state, check)
        self.neutron = Neutron(self.state, check)
        # notifications on a real bus (``bus``), as Nova, Neutron and Keystone publish them
        self.bus_url = bus_url
        self.notification_format = notification_format
        self.bus: Publisher | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Bind 127.0.0.1 (a free port unless one was given), serve in a thread, return
        the base URL."""
        if self._server is not None:
            return self.base_url
        server = _Server(("127.0.0.1", self._port))
        server.cloud = self
        self._server = server
        self._stopping.clear()
        host, port = server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"simcloud:{port}",
        )
        self._thread.start()
        if self.bus_url is not None and self.bus is None:
            from .bus import Publisher

            fmt = self.notification_format
            if fmt not in ("unversioned", "versioned", "both"):
                raise ValueError(f"notification_format {fmt!r}: unversioned, versioned or both")
            self.bus = Publisher(self.bus_url, fmt)  # type: ignore[arg-type]
        return self.base_url

    def stop(self) -> None:
        """Stop serving; requests sleeping in a delay fault are woken and dropped."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        bus, self.bus = self.bus, None
        if bus is not None:
            bus.close()

    def __enter__(self) -> SimCloud:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ URLs

    def _base(self) -> str:
        if not self.base_url:
            raise RuntimeError("SimCloud is not started")
        return self.base_url

    @property
    def identity_url(self) -> str:
        return f"{self._base()}/identity"

    @property
    def auth_url(self) -> str:
        """The Keystone v3 URL to put in clouds.yaml (``auth.auth_url``)."""
        return f"{self._base()}/identity/v3"

    def compute_url(self, region: str) -> str:
        return f"{self._base()}/compute/{region}/v2.1"

    def network_url(self, region: str) -> str:
        return f"{self._base()}/network/{region}"

    # ------------------------------------------------------------------ clouds.yaml

    def clouds_entry(
        self,
        user: str,
        password: str,
        project: str | None = None,
        system_scope: str | None = None,
        region: str | None = None,
        domain: str = "default",
        **extra: Any,
    ) -> dict[str, Any]:
        """One ``clouds:`` entry for openstacksdk: project scope or ``system_scope: all``."""
        if (project is None) == (system_scope is None):
            raise ValueError("give exactly one of project= or system_scope=")
        auth: dict[str, Any] = {
            "auth_url": self.auth_url,
            "username": user,
            "password": password,
            "user_domain_id": domain,
        }
        if project is not None:
            auth["project_name"] = project
            auth["project_domain_id"] = domain
        else:
            auth["system_scope"] = system_scope
        entry: dict[str, Any] = {
            "auth_type": "password",
            "auth": auth,
            "identity_api_version": 3,
            "interface": "public",
        }
        if region is not None:
            entry["region_name"] = region
        entry.update(extra)
        return entry

    def clouds_yaml(
        self, path: str | Path, entries: dict[str, dict[str, Any]] | None = None
    ) -> Path:
        """Write a clouds.yaml (``OS_CLIENT_CONFIG_FILE``) with ``entries``:
        ``{name: {user, password, project | system_scope, region?, ...}}``; default
        entries for the scenario's users when None (see ``default_entries``)."""
        entries = self.default_entries() if entries is None else entries
        doc = {"clouds": {name: self.clouds_entry(**spec) for name, spec in entries.items()}}
        p = Path(path)
        p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return p

    def default_entries(self) -> dict[str, dict[str, Any]]:
        """For each user: ``NAME`` scoped to their first project role (or to the system
        when they have only system roles), and ``NAME-system`` when they have both."""
        names = {p.id: p.name for p in self.state.projects.values()}
        out: dict[str, dict[str, Any]] = {}
        for u in self.state.users.values():
            projects = [g.project_id for g in u.grants if g.project_id in names]
            system = any(g.project_id is None for g in u.grants)
            base = {"user": u.name, "password": u.password, "domain": u.domain_id}
            if projects:
                out[u.name] = {**base, "project": names[projects[0] or ""]}
                if system:
                    out[f"{u.name}-system"] = {**base, "system_scope": "all"}
            elif system:
                out[u.name] = {**base, "system_scope": "all"}
        return out

    # ------------------------------------------------------------------ runtime changes

    def create_server(
        self,
        name: str,
        project: str,
        region: str | None = None,
        addresses: Sequence[Address | str | dict[str, str]] | None = None,
        status: str = "ACTIVE",
        server_id: str | None = None,
        down: bool = False,
    ) -> str:
        """Create a server (a fresh fixed IPv4 from 172.16.0.0/12 when ``addresses`` is
        None); returns its id.  An address already in use in the region is a ValueError."""
        sid = self.state.create_server(name, project, region, addresses, status, server_id, down)
        if self.bus is not None:
            for port in self._ports_of(sid):
                self._notify_port("create.end", port)
            s = self.state.servers[sid]
            self._notify(lambda b: self._instance(b, "create.end", s))
        return sid

    def delete_server(self, server_id: str) -> None:
        """Delete a server: its ports go; ``changes-since`` lists it as DELETED."""
        ports = self._ports_of(server_id) if self.bus is not None else []
        self.state.delete_server(server_id)
        if self.bus is not None:
            s = self.state.deleted[server_id]
            for port in ports:
                self._notify_port("delete.end", port)
            self._notify(lambda b: self._instance(b, "delete.end", s))

    def move_ip(self, addr: str, to_server: str, network: str | None = None) -> None:
        """Give ``addr`` to ``to_server`` (any project), taking it from its current owner
        in the same region: how an IP is reused by another project."""
        with self.state.lock:
            target = self.state.servers[to_server]
            owners = [
                s.id
                for s in self.state.servers.values()
                if s.region == target.region and any(a.addr == addr for a in s.addresses)
            ]
        self.state.move_ip(addr, to_server, network)
        if self.bus is not None:
            for sid in [*owners, to_server]:
                for port in self._ports_of(sid):
                    self._notify_port("update.end", port)

    # ------------------------------------------------------------------ notifications

    def _ports_of(self, server_id: str) -> list[dict[str, Any]]:
        with self.state.lock:
            s = self.state.servers.get(server_id)
            if s is None:
                return []
            return [p for p in self.state.region_ports(s.region, s.project_id)
                    if p["device_id"] == server_id]  # fmt: skip

    def _instance(
        self, bus: Publisher, event: str, s: ServerRec, old_state: str | None = None
    ) -> None:
        state = "deleted" if s.status == "DELETED" else s.status.lower()
        bus.instance(
            event,
            s.id,
            s.name,
            s.project_id,
            s.user_id,
            "active" if state == "active" else state,
            [a.addr for a in s.addresses if a.type == "fixed"],
            old_state=old_state,
        )

    def _notify(self, send: Callable[[Publisher], None]) -> None:
        """Publish one notification; a bus that is down loses it, as in a real cloud."""
        bus = self.bus
        if bus is None:
            return
        try:
            send(bus)
        except Exception as exc:
            log.warning("sim: notification lost: %s: %s", type(exc).__name__, exc)

    def connect_bus(self, url: str, notification_format: str = "unversioned") -> None:
        """Publish notifications on ``url`` from now on (a cloud started without a bus)."""
        from .bus import Publisher

        if self.bus is not None:
            self.bus.close()
        self.bus_url, self.notification_format = url, notification_format
        self.bus = Publisher(url, notification_format)  # type: ignore[arg-type]

    def _notify_port(self, event: str, port: dict[str, Any]) -> None:
        self._notify(lambda b: b.port(event, port))

    def notify(self, exchange: str, event_type: str, payload: dict[str, Any], **kw: Any) -> None:
        """Publish any notification (tests: event types the daemon ignores)."""
        self._notify(lambda b: b.publish(exchange, event_type, payload, **kw))

    def add_port(
        self,
        device_id: str,
        fixed_ips: Sequence[Any],
        project: str | None = None,
        project_id: str | None = None,
        region: str | None = None,
        port_id: str | None = None,
    ) -> str:
        """Attach an extra Neutron port to ``device_id`` (a server id; it need not exist)
        and return its id.  Its fixed IPs are served exactly as given, never validated,
        so that a test can serve what a broken or hostile cloud would (a zone id, a
        newline, any JSON value).  The port belongs to ``project`` (a name) or
        ``project_id`` (any id: one Keystone does not list), by default to the server's
        project; Nova shows its addresses on that server too."""
        return self.state.add_port(device_id, fixed_ips, project, project_id, region, port_id)

    def remove_port(self, port_id: str) -> None:
        self.state.remove_port(port_id)

    def set_down(self, server_ids: Iterable[str], down: bool = True) -> None:
        """Put servers in (or take them out of) a down Nova cell."""
        self.state.set_down(server_ids, down)

    def set_status(self, server_id: str, status: str) -> None:
        old = self.state.servers[server_id].status
        self.state.set_status(server_id, status)
        s = self.state.servers[server_id]
        self._notify(lambda b: self._instance(b, "update", s, old_state=old.lower()))

    def add_project(self, name: str, project_id: str | None = None, enabled: bool = True) -> str:
        pid = self.state.add_project(name, project_id, enabled)
        self._notify(lambda b: b.project("created", pid))
        return pid

    def delete_project(self, name: str) -> None:
        """Delete a project from Keystone (its servers stay, as in a real cloud); its
        tokens stop working."""
        pid = self.project_id(name)
        self.state.delete_project(name)
        self._notify(lambda b: b.project("deleted", pid))

    def disable_project(self, name: str) -> None:
        self.state.set_project_enabled(name, False)
        self._notify(lambda b: b.project("updated", self.project_id(name)))

    def enable_project(self, name: str) -> None:
        self.state.set_project_enabled(name, True)
        self._notify(lambda b: b.project("updated", self.project_id(name)))

    def rename_project(self, name: str, new_name: str) -> None:
        self.state.rename_project(name, new_name)
        self._notify(lambda b: b.project("updated", self.project_id(new_name)))

    def project_id(self, name: str) -> str:
        with self.state.lock:
            return self.state.project_by_name(name).id

    # ------------------------------------------------------------------ faults, counts

    def add_fault(
        self,
        service: str | None = None,
        method: str | None = None,
        path_regex: str | None = None,
        region: str | None = None,
        status: int | None = None,
        body: Any = None,
        delay: float = 0.0,
        drop: bool = False,
        malformed: bool = False,
        truncated: bool = False,
        count: int | None = None,
        after: int = 0,
    ) -> int:
        """Add a fault rule (see ``faults``); returns its id for ``remove_fault``."""
        return self.faults.add(
            service=service,
            method=method,
            path_regex=path_regex,
            region=region,
            status=status,
            body=body,
            delay=delay,
            drop=drop,
            malformed=malformed,
            truncated=truncated,
            count=count,
            after=after,
        )

    def remove_fault(self, rule_id: int) -> None:
        self.faults.remove(rule_id)

    def clear_faults(self) -> None:
        self.faults.clear()

    def counts(self, by_region: bool = False) -> dict[str, int]:
        """Requests served, keyed ``"compute GET /servers/detail"`` (path below the
        versioned root, ids as ``{id}``; ``/`` is the versioned root, ``(root)`` the
        unversioned one), plus ``tokens_issued``.  ``by_region`` puts the region after
        the service: ``"compute RegionOne GET /servers/detail"``."""
        with self._count_lock:
            out = dict(self._region_counts if by_region else self._counts)
        out["tokens_issued"] = self.keystone.tokens_issued
        return out

    def reset_counts(self) -> None:
        with self._count_lock:
            self._counts.clear()
            self._region_counts.clear()
        with self.state.lock:
            self.keystone.tokens_issued = 0

    def _count(self, req: Request) -> None:
        vroot = VERSION_ROOTS.get(req.service, "")
        path = req.path
        if path == "":
            key = "(root)"
        elif path == vroot:
            key = "/"
        elif vroot and path.startswith(vroot + "/"):
            key = _ID_AFTER.sub(lambda m: f"/{m.group(1)}/{{id}}", path[len(vroot) :])
        else:
            key = path
        with self._count_lock:
            self._counts[f"{req.service} {req.method} {key}"] += 1
            region = f" {req.region}" if req.region else ""
            self._region_counts[f"{req.service}{region} {req.method} {key}"] += 1

    def _request_id(self) -> str:
        with self._count_lock:
            self._req_seq += 1
            return f"req-{self._req_seq:08d}-0000-4000-8000-000000000000"

    # ------------------------------------------------------------------ dispatch

    def _route(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Request:
        parts = urlsplit(raw_path)
        segs = [unquote(s) for s in parts.path.split("/") if s]
        query = parse_qsl(parts.query, keep_blank_values=True)
        service, region, rest = "", None, segs
        if segs and segs[0] == "identity":
            service, rest = "identity", segs[1:]
            root = f"{self.base_url}/identity"
        elif len(segs) >= 2 and segs[0] in ("compute", "network"):
            service, region, rest = segs[0], segs[1], segs[2:]
            root = f"{self.base_url}/{service}/{region}"
        else:
            root = self.base_url
        path = "/" + "/".join(rest) if rest else ""
        return Request(method, service, region, root, path, query, headers, body)

    def _handle(self, req: Request) -> Response:
        if req.region is not None and req.region not in self.state.regions:
            return Response(404, error_body(req.service, 404, f"no region {req.region}"))
        try:
            if req.service == "identity":
                return self.keystone.handle(req)
            if req.service == "compute":
                return self.nova.handle(req)
            if req.service == "network":
                return self.neutron.handle(req)
        except ApiError as e:
            resp = e.response
            if resp.status == 401 and req.service in ("compute", "network"):
                ext = self.external_keystone
                uri = ext.identity_url if ext is not None else self.identity_url
                resp.headers["WWW-Authenticate"] = f'Keystone uri="{uri}"'
            return resp
        return Response(
            404,
            {
                "error": {
                    "code": 404,
                    "title": "Not Found",
                    "message": f"no service at {req.path or '/'}",
                }
            },
        )

    def _serve(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[Response, str] | None:
        """The answer to one request after faults: (response, mode) or None to drop."""
        req = self._route(method, raw_path, headers, body)
        self._count(req)
        fired = self.faults.evaluate(req.service, method, req.region, raw_path)
        if fired.delay and self._stopping.wait(fired.delay):
            return None
        rule = fired.rule
        if rule is not None and rule.drop:
            return None
        if rule is not None and rule.status is not None:
            fault_body = rule.body
            if fault_body is None:
                fault_body = error_body(req.service, rule.status, "simulated fault")
            resp = Response(rule.status, fault_body)
        else:
            try:
                resp = self._handle(req)
            except Exception:  # a bug in the simulator must not look like a dropped answer
                log.exception("simulator error on %s %s", method, raw_path)
                resp = Response(500, error_body(req.service, 500, "simulator error"))
        if rule is not None and rule.malformed:
            data = resp.encoded() or b'{"'
            resp = Response(resp.status, data[: max(2, len(data) // 2)], resp.headers)
        mode = "truncated" if rule is not None and rule.truncated else ""
        return resp, mode
