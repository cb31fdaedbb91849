"""Read the cloud through openstacksdk/keystoneauth: Keystone projects, Neutron ports,
Nova servers, configured like every OpenStack client (a clouds.yaml entry).

Listings are paged by hand through the SDK's authenticated session (keystoneauth
adapters on the service catalog), so that every page is checked: a listing counts as
complete only when the last page was reached through the API's own ``next`` links.
Anything less makes the data *unknown*, for one project when the failure is about one
project, for the whole snapshot otherwise; never empty.

Modes:
* ``all-projects``: Neutron ports for all projects (those of instances, ``device_owner``
  ``compute:*``, give ownership; every other port's addresses are claims), cross-checked
  with Nova servers listed for all projects.  Neutron is the source of truth for who
  owns an address; an address Nova shows that no port of its server shows is a claim.
  Not seen (documented limitations): allowed address pairs wider than one address, and
  ports with ``port_security_enabled: false``, which may send from any address.  Needs a
  project-scoped admin (stock policy) or an operator's policy override.  Requests per
  cycle do not grow with projects.
* ``per-project``: one project-scoped Nova listing per project and region with a reader
  in each project; tokens are kept and reused until they expire.  It cannot see an
  address reused by a project it does not list; a server of another project in a
  project's listing makes that project unknown.

Every address (fixed, floating, Nova's) passes ``addresses.parse_address`` here; one that
fails makes its instance's project unknown, naming the server and port, never the whole
read.  Ownership is per address (``merge_region``): port, server and floating IP must
agree on a listed project, any other claim gives the address to nobody.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from ...addresses import ADDRESS_CHARS, AddressError, parse_address, shown
from ...errors import (
    ConfigError,
    InventoryAuthError,
    InventoryBadData,
    InventoryError,
    InventoryIncomplete,
    InventoryUnavailable,
)
from ...logs import register_secret
from ...model import AddressClaim, InstanceRecord, InventorySnapshot, IPAddress, ProjectRecord
from ...validate import KEYSTONE_ID_RE
from . import observe, pages

log = logging.getLogger(__name__)

NOVA_PAGE = 1000  # Nova's default [api] max_limit
NEUTRON_PAGE = 10000  # Neutron pages by pagination_max_limit: unlimited by default
CHANGE_PAGE = 100  # change polling reads one page: a full one means "much changed"
NOVA_MICROVERSION = "2.69"  # down-cell servers are returned as UNKNOWN, not omitted
PORT_FIELDS = (
    "id",
    "device_id",
    "device_owner",
    "project_id",
    "fixed_ips",
    "allowed_address_pairs",
)
FIP_FIELDS = ("id", "floating_ip_address", "port_id", "project_id")

# Nova states in which a server owns a port and shows its addresses.
ADDRESSED = frozenset(
    {
        "ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "RESCUE", "RESIZE", "VERIFY_RESIZE",
        "REBOOT", "HARD_REBOOT", "MIGRATING", "PASSWORD", "REBUILD", "SHELVED",
    }
)  # fmt: skip
GONE = frozenset({"DELETED", "SOFT_DELETED"})


@dataclass(frozen=True)
class OpenStackSettings:
    clouds: tuple[str, ...]  # tried in order; the first complete answer wins
    identity_cloud: str | None = None
    mode: str = "all-projects"
    regions: tuple[str, ...] | None = None
    timeout: float = 30.0
    concurrency: int = 16  # the config default (config.py: measured)
    include_floating_ips: bool = False
    read_deadline: float | None = None  # default max(60, 10 x timeout)


Connector = Callable[..., Any]  # openstack.connect-compatible


class _GcPause:
    """The cyclic garbage collector off while a read runs.  A read builds millions of
    small dicts and lists (the JSON answers, then the merge) and drops them by reference
    count; with the collector on, every few thousand of them it scanned the whole growing
    heap again: at 100,000 instances as much CPU as decoding the answers.  The reader
    that started it turns it back on, also when a read is abandoned at its deadline."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.was_enabled = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            if self.depth == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
                if self.depth == 0 and self.was_enabled:
                    gc.enable()


_gc_paused = _GcPause()


def _default_connect(**kwargs: Any) -> Any:
    import openstack

    return openstack.connect(**kwargs)


def _auth_override(cloud: str) -> dict[str, Any]:
    """Use keystoneauth's ``v3password`` where clouds.yaml says ``password``.

    The generic ``password`` plugin discovers the identity version while holding its
    token lock; when Keystone answers that discovery with 401 (a controller being
    upgraded, as in the outage report of the Keystone upgrade) keystoneauth retries it
    *authenticated*, takes the same lock again and hangs for good.  ``v3password``
    needs no discovery.  Other auth types are untouched.
    """
    try:
        import openstack.config

        region = openstack.config.OpenStackConfig().get_one(cloud=cloud)
        for key, value in (region.config.get("auth") or {}).items():
            if "password" in key or "secret" in key:
                register_secret(value)  # never logged, even at debug
        auth_type = region.config.get("auth_type")
        version = str(region.config.get("identity_api_version", "3"))
    except Exception:
        return {}
    if auth_type in (None, "password") and version.startswith("3"):
        return {"auth_type": "v3password"}
    return {}


# --------------------------------------------------------------------------- HTTP helpers


def _describe(method: str, url: str) -> str:
    return f"{method} {url}"


LIST_PROJECTS_ROLE = (
    "listing all projects needs a system-scoped reader: the reader role on the system "
    "scope (clouds.yaml auth: system_scope: all), or admin"
)


def _json_or_error(resp: Any, what: str, decoders: pages.Decoders = ()) -> Any:
    """Turn a response into JSON or a typed InventoryError naming the request.

    ``decoders``: a listing page's (``pages.PORTS``...), tried in order on a UTF-8 body;
    a page none of them takes is decoded by ``resp.json()``, which says what is wrong.

    Keystone answers 404 to a request whose token is scoped to a project that was
    disabled or deleted since, and keystoneauth re-authenticates only on 401: that 404 is
    an auth error, so that the connection is dropped and the next cycle takes a new token
    instead of being stuck with the dead one.
    """
    req = _describe(resp.request.method if resp.request else "GET", resp.url)
    code = resp.status_code
    if code in (401, 403) or (code == 404 and what == "projects"):
        hint = ""
        if code == 404:
            hint = " (Keystone no longer accepts this token: a new one is requested next cycle)"
        raise InventoryAuthError(f"{what}: HTTP {code} {_error_message(resp)}{hint}", req)
    if code >= 500 or code in (408, 429):
        raise InventoryUnavailable(f"{what}: HTTP {code}", req)
    if code >= 400:
        raise InventoryBadData(f"{what}: HTTP {code} {resp.text[:200]}", req)
    if decoders and _utf8(resp.encoding):
        body = pages.decode(resp.content, decoders)
        if body is not None:
            return body
    try:
        return resp.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise InventoryBadData(f"{what}: malformed JSON ({exc})", req) from None


def _utf8(encoding: object) -> bool:
    """True for the charset requests decodes a JSON body with when it is UTF-8.  None
    declared (no ``application/json``) is not: requests then reads a body that is no
    valid UTF-8 (a stray byte in a key the decoders skip unchecked) in a guessed
    charset, every text of the page with it."""
    if encoding is None:
        return False
    try:
        return isinstance(encoding, str) and codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def _error_message(resp: Any) -> str:
    try:
        return str(resp.json().get("error", {}).get("message", "") or "")
    except Exception:
        return str(resp.text[:200])


def _translate(exc: BaseException, what: str, request: str) -> InventoryError:
    """Map transport and auth exceptions (keystoneauth, requests, openstacksdk)."""
    if isinstance(exc, InventoryError):
        return exc
    from keystoneauth1 import exceptions as ka

    name = type(exc).__name__
    if isinstance(exc, ka.Unauthorized):
        # Keystone says the same to all three: name them, the operator knows which applies
        return InventoryAuthError(
            f"{what}: authentication failed: {name}: {exc} (a wrong user or password, "
            "no role on the scope asked for, or a disabled or deleted project)",
            request,
        )
    if isinstance(exc, ka.Forbidden | ka.AuthorizationFailure | ka.NotFound):
        return InventoryAuthError(f"{what}: authentication failed: {name}: {exc}", request)
    if isinstance(exc, ka.MissingAuthPlugin | ka.MissingRequiredOptions | ka.NoMatchingPlugin):
        return InventoryAuthError(f"{what}: credentials incomplete: {exc}", request)
    if isinstance(exc, ka.SSLError) or "SSLError" in str(exc):
        return InventoryUnavailable(f"{what}: TLS failure: {exc}", request)
    if isinstance(exc, ka.ConnectTimeout | ka.RequestTimeout):
        return InventoryUnavailable(f"{what}: timed out: {exc}", request)
    if isinstance(exc, ka.ConnectFailure | ka.UnknownConnectionError):
        return InventoryUnavailable(f"{what}: cannot connect: {exc}", request)
    if isinstance(exc, ka.EndpointNotFound | ka.EmptyCatalog | ka.CatalogException):
        return InventoryUnavailable(f"{what}: not in the service catalog: {exc}", request)
    if isinstance(exc, ka.DiscoveryFailure | ka.VersionNotAvailable):
        return InventoryUnavailable(f"{what}: version discovery failed: {exc}", request)
    if isinstance(exc, ka.HttpError):
        return InventoryUnavailable(f"{what}: {name}: {exc}", request)
    if isinstance(exc, ValueError | KeyError | TypeError):
        return InventoryBadData(f"{what}: {name}: {exc}", request)
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return InventoryUnavailable(f"{what}: timed out: {exc}", request)
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        return InventoryUnavailable(f"{what}: {name}: {exc}", request)
    try:
        from openstack import exceptions as sdk

        if isinstance(exc, sdk.ConfigException):
            return InventoryAuthError(f"{what}: clouds.yaml: {exc}", request)
        if isinstance(exc, sdk.SDKException):
            return InventoryUnavailable(f"{what}: {name}: {exc}", request)
    except ImportError:  # pragma: no cover
        pass
    return InventoryUnavailable(f"{what}: unexpected {name}: {exc}", request)


def clouds_yaml_problem(cloud: str, key: str) -> str:
    """Why openstacksdk says ``Cloud X was not found``: the files it searches (as its
    loader does: OS_CLIENT_CONFIG_FILE first, then the first readable one), those it could
    not read, and the entries of the one it used.  A wrong name, an unreadable file
    (0600 root) and an unset OS_CLIENT_CONFIG_FILE all looked alike before."""
    from openstack.config import loader

    override = os.environ.get("OS_CLIENT_CONFIG_FILE")
    files = ([override] if override else []) + [f for f in loader.CONFIG_FILES if f != override]
    notes: list[str] = []
    denied = (
        f"cannot be read by uid {os.geteuid()} (permission denied): make it and its "
        "directories readable by the daemon's user (e.g. root:nfs-exportd, mode 0640)"
    )
    if override and _exists(override) is False:
        notes.append(f"OS_CLIENT_CONFIG_FILE={override} does not exist")
    elif not override:
        notes.append("OS_CLIENT_CONFIG_FILE is not set")
    used = None
    for path in dict.fromkeys(files):
        there = _exists(path)
        if there is None:  # a directory on its way cannot be searched
            notes.append(f"{path} {denied}")
            continue
        if not there:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f) if path.endswith("json") else yaml_load(f.read())
        except PermissionError:
            notes.append(f"{path} {denied}")
            continue
        except (OSError, ValueError) as exc:
            notes.append(f"{path} skipped: {type(exc).__name__}: {exc}")
            continue
        clouds = data.get("clouds") if isinstance(data, dict) else None
        entries = ", ".join(sorted(map(str, clouds))) if isinstance(clouds, dict) else ""
        notes.append(f"{path} is used and has entries: {entries or 'none'}")
        used = path
        break
    if used is None:
        dirs = sorted({os.path.dirname(f) for f in files})
        notes.append(f"no readable clouds.yaml in {', '.join(dirs)}")
    return (
        f"{key}: clouds.yaml entry {cloud!r} does not exist: {'; '.join(notes)}; "
        f"fix {key} or the clouds.yaml file"
    )


def _exists(path: str) -> bool | None:
    """Whether ``path`` exists; None when a directory on its way may not be searched
    (os.path.exists says False then, and openstacksdk skips the file in silence)."""
    try:
        os.stat(path)
    except PermissionError:
        return None
    except OSError:
        return False
    return True


def yaml_load(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).replace("\n", " ")) from None


def _field(obj: Any, key: str, kind: type | tuple[type, ...], what: str, req: str) -> Any:
    """``obj[key]``, of type ``kind``; anything else is bad data naming the record: a
    missing id or a mistyped field is never read as an empty value."""
    if not isinstance(obj, dict) or key not in obj:
        read = pages.READ.get(what)  # named by the keys read: a page decoder keeps no other
        if read is not None and isinstance(obj, dict):
            obj = {k: v for k, v in obj.items() if k in read}
        raise InventoryBadData(f"{what}: record without '{key}': {str(obj)[:120]}", req)
    val = obj[key]
    if not isinstance(val, kind):
        raise InventoryBadData(f"{what}: '{key}' has type {type(val).__name__}", req)
    return val


def _service_of(get: Callable[..., Any]) -> str:
    """The service type of the adapter a bound ``get`` belongs to (for metrics)."""
    return str(getattr(getattr(get, "__self__", None), "service_type", None) or "unknown")


ONE_READ_MAX = 1 << 24  # 16 MiB: a Content-Length above it is read in reads of this size


def _read_whole(resp: Any, *args: Any, **kwargs: Any) -> Any:
    """requests' response hook: read the body in one read of its Content-Length (Nova,
    Neutron and Keystone all send one) instead of requests' 10 KB reads (~100 reads
    through urllib3 and a join per MB: a third of the HTTP time of a 200 MB read).

    It runs inside requests' ``send``, where requests would read the body next, through
    the same ``iter_content``: its errors, keystoneauth's translation of them and the
    latency ``_observed`` reports are the same.  A body without a length (chunked, or
    up to the close) is read as before, chunk by chunk."""
    if kwargs.get("stream") or resp._content is not False or resp._content_consumed:
        return resp  # asked to stream, or already read
    length = resp.headers.get("Content-Length")
    # ASCII digits only: http.client decodes headers as Latin-1, where "\xb2" (a
    # superscript two) is ``isdigit`` but no ``int`` (requests reads that body to the close)
    if (
        not isinstance(length, str)
        or not (length.isascii() and length.isdigit())
        or resp.status_code == 0
    ):
        return resp
    if resp.raw is not None:
        size = min(max(int(length), 1), ONE_READ_MAX)
        resp._content = b"".join(resp.iter_content(size)) or b""
    return resp


def _observed(service: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Make one request and report its service, status and latency (``observe``); the
    body is read within the latency, in one read (``_read_whole``)."""
    kwargs.setdefault("hooks", {"response": _read_whole})
    started = time.monotonic()
    try:
        resp = call(*args, **kwargs)
    except Exception:
        observe.report(service, "error", time.monotonic() - started)
        raise
    observe.report(service, str(getattr(resp, "status_code", "error")), time.monotonic() - started)
    return resp


def list_all(
    get: Callable[..., Any],
    path: str,
    key: str,
    params: Mapping[str, Any],
    page: int,
    what: str,
    decoders: pages.Decoders = (),
    **kw: Any,
) -> list[Any]:
    """Every item of a paged listing, or InventoryError.  ``decoders``: see
    ``_json_or_error`` (the items then hold only the fields they read: dicts, or
    ``pages`` Structs).

    Follows ``<key>_links`` rel=next (Nova, Neutron) by marker; a repeated marker or a
    next link without items is broken pagination.  An answer without links is the last
    page (also what a server with pagination disabled returns).
    """
    items: list[dict[str, Any]] = []
    seen_markers: set[str] = set()
    query: dict[str, Any] = {**params, "limit": page}
    while True:
        request = _describe("GET", f"{path}?{_qs(query)}")
        try:
            resp = _observed(_service_of(get), get, path, params=query, **kw)
        except Exception as exc:
            raise _translate(exc, what, request) from None
        request = _describe("GET", resp.url)
        body = _json_or_error(resp, what, decoders)
        if not isinstance(body, dict) or not isinstance(body.get(key), list):
            raise InventoryBadData(f"{what}: answer has no '{key}' list", request)
        batch = body[key]
        for item in batch:
            if not isinstance(item, dict | pages.Struct):
                raise InventoryBadData(f"{what}: a '{key}' item is not an object", request)
        items.extend(batch)
        links = body.get(f"{key}_links") or []
        if not isinstance(links, list):
            raise InventoryBadData(f"{what}: '{key}_links' is not a list", request)
        nxt = [lk for lk in links if isinstance(lk, dict) and lk.get("rel") == "next"]
        if not nxt:
            return items
        if not batch:
            raise InventoryIncomplete(f"{what}: a 'next' link after an empty page", request)
        href = str(nxt[0].get("href", ""))
        marker_list = parse_qs(urlsplit(href).query).get("marker")
        last = pages.item_id(batch[-1])
        marker = marker_list[0] if marker_list else str("" if last is None else last)
        if not marker or marker in seen_markers:
            raise InventoryIncomplete(f"{what}: broken pagination (marker {marker!r})", request)
        seen_markers.add(marker)
        query = {**params, "limit": page, "marker": marker}


def _qs(query: Mapping[str, Any]) -> str:
    parts = []
    for k, v in query.items():
        for item in v if isinstance(v, list | tuple) else [v]:
            parts.append(f"{k}={item}")
    return "&".join(parts)


def parse_projects(
    body: Any, request: str = "GET identity /v3/projects"
) -> tuple[dict[str, ProjectRecord], dict[str, str]]:
    """Keystone's ``GET /v3/projects`` answer -> (id -> record, id -> domain id).

    Pure, so that fixtures reach it without HTTP.  A truncated answer or one that links a
    next page is incomplete, a record without id/name/enabled or a name listed twice is
    bad data: never a shorter listing."""
    if not isinstance(body, dict) or not isinstance(body.get("projects"), list):
        raise InventoryBadData("projects: answer has no 'projects' list", request)
    if body.get("truncated"):
        raise InventoryIncomplete(
            "projects: Keystone truncated the listing (list_limit); raise it for this user",
            request,
        )
    links = body.get("links")
    if isinstance(links, dict) and links.get("next"):
        # Keystone does not page /v3/projects; a next link is a proxy or an extension
        # we cannot trust to page consistently: unknown, never a shorter listing
        raise InventoryIncomplete(
            f"projects: Keystone's answer links a next page ({shown(links.get('next'))}); "
            "only a single complete page is accepted: remove the paging in front of "
            "Keystone",
            request,
        )
    out: dict[str, ProjectRecord] = {}
    domains: dict[str, str] = {}
    seen_names: set[str] = set()
    for p in body["projects"]:
        pid = _field(p, "id", str, "projects", request)
        name = _field(p, "name", str, "projects", request)
        enabled = _field(p, "enabled", bool, "projects", request)
        if p.get("is_domain"):
            continue
        if not KEYSTONE_ID_RE.fullmatch(pid):
            # the id is written into the managed file and decides ownership: a Keystone
            # that lists a malformed id is bad data, never an id we record
            raise InventoryBadData(
                f"projects: project {_label(name)} has a malformed id {shown(pid)}", request
            )
        if name in seen_names:
            # the same name in two domains: name-based config cannot tell them apart
            raise InventoryBadData(f"projects: name {name!r} appears twice", request)
        seen_names.add(name)
        out[pid] = ProjectRecord(pid, name, enabled)
        domains[pid] = str(p.get("domain_id") or "default")
    return out, domains


# --------------------------------------------------------------------------- the source


@dataclass
class _Answer:
    snapshot: InventorySnapshot
    cloud: str

    @property
    def complete(self) -> bool:
        return self.snapshot.listing_complete and not self.snapshot.incomplete


@dataclass
class _Clients:
    """Cached connections: tokens are reused until keystoneauth renews them."""

    conns: dict[tuple[str, str | None], Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class OpenStackInventory:
    def __init__(self, settings: OpenStackSettings, connect: Connector = _default_connect):
        self.settings = settings
        self.connect = connect
        self.name = "openstack:" + ",".join(settings.clouds)
        self._clients = _Clients()
        self.last_cloud: str | None = None
        self._domains: dict[str, str] = {}  # project id -> domain id, for per-project scoping
        # address text -> parse_address's answer, kept from read to read: most addresses
        # of a cloud are the same at the next cycle (parse_address is pure; refusals are
        # never kept).  Emptied when it outgrows what the last read used (``_trim_known``).
        self._known: dict[str, IPAddress] = {}

    # ------------------------------------------------------------------ connections
    def reset(self) -> None:
        """Forget connections (clouds.yaml is re-read on the next use): SIGHUP, auth errors."""
        with self._clients.lock:
            self._clients.conns.clear()

    def _conn(self, cloud: str, project: tuple[str, str] | None = None) -> Any:
        """The cached connection to ``cloud``, scoped to ``project`` (id, domain id) in
        per-project mode; made on first use, so a token lives as long as it is valid."""
        key = (cloud, f"{project[0]}/{project[1]}" if project else None)
        with self._clients.lock:
            conn = self._clients.conns.get(key)
            if conn is None:
                kwargs: dict[str, Any] = {"cloud": cloud, "api_timeout": self.settings.timeout}
                kwargs.update(_auth_override(cloud))
                if project is not None:
                    # per-project mode: the same user, scoped to each project in turn
                    kwargs.update(
                        project_id=project[0],
                        project_name=None,
                        project_domain_id=project[1],
                        project_domain_name=None,
                        system_scope=None,
                    )
                try:
                    conn = self.connect(**kwargs)
                except Exception as exc:
                    if "was not found" in str(exc) and type(exc).__name__ == "ConfigException":
                        raise ConfigError(clouds_yaml_problem(cloud, self._key(cloud))) from None
                    raise _translate(exc, f"cloud {cloud!r}", "clouds.yaml") from None
                self._clients.conns[key] = conn
            return conn

    def _key(self, cloud: str) -> str:
        """The config key that names clouds.yaml entry ``cloud``."""
        if cloud == self.settings.identity_cloud and cloud not in self.settings.clouds:
            return "inventory.identity_cloud"
        return "inventory.cloud"

    def _drop(self, cloud: str) -> None:
        """Forget every connection to ``cloud`` after an auth error: the next read takes
        new tokens instead of reusing one Keystone refuses."""
        with self._clients.lock:
            for key in [k for k in self._clients.conns if k[0] == cloud]:
                del self._clients.conns[key]

    # ------------------------------------------------------------------ read
    def read(self, interest: frozenset[str] | None = None) -> InventorySnapshot:
        """Read under a deadline: a client library that hangs (it has happened: a
        keystoneauth lock taken twice when Keystone answers 401 to discovery) must not
        stop the daemon.  A read that misses its deadline is unknown data, and its
        connections are abandoned with it.  A read that crashes is unknown data too, but
        said as a crash (the exception named, its traceback logged through our handler
        so that redaction applies), and it keeps the tokens unless it was about auth."""
        deadline = self.settings.read_deadline or max(60.0, 10 * self.settings.timeout)
        box: list[InventorySnapshot] = []
        crash: list[InventoryError] = []
        config: list[ConfigError] = []  # a clouds.yaml entry that does not exist

        def work() -> None:
            try:
                box.append(self._read(interest))
            except InventoryError as exc:
                crash.append(exc)
            except ConfigError as exc:
                config.append(exc)
            except Exception as exc:  # a bug or a library surprise: never raw stderr
                log.error("inventory read crashed: %s: %s", type(exc).__name__, exc, exc_info=exc)
                crash.append(
                    InventoryBadData(
                        f"inventory read crashed: {type(exc).__name__}: {exc}; "
                        "the traceback is in the log: report it as a bug"
                    )
                )

        worker = threading.Thread(target=work, name="inventory-read", daemon=True)
        with _gc_paused():
            worker.start()
            worker.join(deadline)
        if box:
            return box[0]
        if config:
            raise config[0]  # not an outage: a configuration error (exit 2)
        self.last_cloud = None
        if crash:
            if isinstance(crash[0], InventoryAuthError):
                self.reset()
            return InventorySnapshot.unknown(self.name, str(crash[0]))
        self._clients = _Clients()  # the stuck thread keeps the old ones
        return InventorySnapshot.unknown(
            self.name, f"inventory read did not finish within {deadline:g} s; abandoned"
        )

    def _read(self, interest: frozenset[str] | None) -> InventorySnapshot:
        failures: list[_Answer] = []
        for cloud in self.settings.clouds:
            answer = self._read_cloud(cloud, interest)
            if answer.complete:
                if cloud != self.settings.clouds[0] or self.last_cloud != cloud:
                    log.info("inventory answered by cloud %r", cloud)
                self.last_cloud = cloud
                return answer.snapshot
            failures.append(answer)
            if len(self.settings.clouds) > 1:
                why = answer.snapshot.problem or "; ".join(
                    f"{p}: {w}" for p, w in sorted(answer.snapshot.incomplete.items())[:3]
                )
                log.warning("cloud %r gave no complete answer (%s); trying the next", cloud, why)
        # No complete answer: the most informative one (a complete listing, fewest unknowns).
        best = min(
            failures,
            key=lambda a: (not a.snapshot.listing_complete, len(a.snapshot.incomplete)),
        )
        self.last_cloud = best.cloud if best.snapshot.listing_complete else None
        return best.snapshot

    def _read_cloud(self, cloud: str, interest: frozenset[str] | None) -> _Answer:
        source = f"openstack:{cloud}"
        identity = self.settings.identity_cloud or cloud
        try:
            projects = self._projects(identity)
        except InventoryError as exc:
            if isinstance(exc, InventoryAuthError):
                self._drop(identity)
                exc = self._named(exc, identity)
            return _Answer(InventorySnapshot.unknown(source, str(exc)), cloud)
        claims: dict[str, list[AddressClaim]] = {}
        floating: dict[str, str] = {}
        try:
            if self.settings.mode == "all-projects":
                instances, incomplete = self._all_projects(cloud, projects, claims, floating)
            else:
                instances, incomplete = self._per_project(cloud, projects, interest)
        except InventoryError as exc:
            if isinstance(exc, InventoryAuthError):
                self._drop(cloud)
                exc = self._named(exc, cloud)
            return _Answer(InventorySnapshot.unknown(source, str(exc)), cloud)
        by_name = {p.name: p for p in projects.values()}
        return _Answer(
            InventorySnapshot(
                source=source,
                projects=by_name,
                instances={n: tuple(instances.get(n, ())) for n in by_name},
                incomplete=incomplete,
                claims={ip: tuple(c) for ip, c in claims.items()},
                floating=floating,
            ),
            cloud,
        )

    def _named(self, exc: InventoryAuthError, cloud: str) -> InventoryAuthError:
        """An auth error naming the clouds.yaml entry and its config key: with several
        entries (inventory.cloud, inventory.identity_cloud) the operator must know whose
        credentials Keystone refused."""
        head = f"clouds.yaml entry {cloud!r} ({self._key(cloud)})"
        if str(exc).startswith(head):
            return exc
        return InventoryAuthError(f"{head}: {exc}")

    def _projects(self, cloud: str) -> dict[str, ProjectRecord]:
        """Keystone ``GET /v3/projects``: id -> record.  Truncated means incomplete."""
        conn = self._conn(cloud)
        request = "GET identity /v3/projects"
        try:
            resp = _observed("identity", conn.identity.get, "/projects")
        except Exception as exc:
            raise _translate(exc, "projects", request) from None
        request = _describe("GET", resp.url)
        if resp.status_code == 403:  # say what the token has, next to what it needs
            raise InventoryAuthError(
                f"projects: HTTP 403 {_error_message(resp)} ({LIST_PROJECTS_ROLE}; "
                f"cloud {cloud!r}: {_scope_of(conn)})",
                request,
            )
        body = _json_or_error(resp, "projects")
        out, domains = parse_projects(body, request)
        self._domains.update(domains)
        return out

    def _regions(self, conn: Any) -> list[str]:
        """The configured regions, or every region of the catalog with a compute endpoint:
        a region missing from the catalog must not pass for one without instances."""
        if self.settings.regions:
            return list(self.settings.regions)
        try:
            access = conn.session.auth.get_access(conn.session)
            endpoints = access.service_catalog.get_endpoints(
                service_type="compute", interface="public"
            )
        except Exception as exc:
            raise _translate(exc, "service catalog", "token") from None
        regions = sorted(
            {str(e.get("region_id") or e.get("region")) for e in endpoints.get("compute", [])}
        )
        if not regions:
            raise InventoryIncomplete("service catalog: no compute endpoint in any region")
        return regions

    @staticmethod
    def _adapter(conn: Any, service: str, region: str) -> Any:
        """A session adapter that returns every HTTP answer (``raise_exc=False``), so that
        ``_json_or_error`` classifies each status itself."""
        from keystoneauth1.adapter import Adapter

        return Adapter(
            conn.session,
            service_type=service,
            interface="public",
            region_name=region,
            raise_exc=False,
        )

    # ------------------------------------------------------------------ all-projects
    def _all_projects(
        self,
        cloud: str,
        projects: Mapping[str, ProjectRecord],
        claims: dict[str, list[AddressClaim]],
        floating: dict[str, str] | None = None,
    ) -> tuple[dict[str, list[InstanceRecord]], dict[str, str]]:
        conn = self._conn(cloud)
        incomplete: dict[str, str] = {}
        instances: dict[str, list[InstanceRecord]] = {}
        read = 0  # ports, all regions
        for region in self._regions(conn):
            net = self._adapter(conn, "network", region)
            nova = self._adapter(conn, "compute", region)
            what = f"{region} ports"
            ports = list_all(
                net.get,
                "/v2.0/ports",
                "ports",
                {"fields": list(PORT_FIELDS)},
                NEUTRON_PAGE,
                what,
                pages.PORTS,
            )
            servers = list_all(
                nova.get,
                "/servers/detail",
                "servers",
                {"all_tenants": "True"},
                NOVA_PAGE,
                f"{region} servers",
                pages.SERVERS,
                microversion=NOVA_MICROVERSION,
            )
            fips: list[dict[str, Any]] = []
            if self.settings.include_floating_ips:
                fips = list_all(
                    net.get,
                    "/v2.0/floatingips",
                    "floatingips",
                    {"fields": list(FIP_FIELDS)},
                    NEUTRON_PAGE,
                    f"{region} floating IPs",
                    pages.FLOATING_IPS,
                )
            merge_region(
                region,
                projects,
                ports,
                servers,
                fips,
                instances,
                incomplete,
                claims,
                floating,
                self._known,
            )
            read += len(ports)
        self._trim_known(read)
        return instances, incomplete

    def _trim_known(self, ports: int) -> None:
        """Bound the kept address answers: far more than a read's ports can use means
        most are of instances gone since; start again at the next read."""
        if len(self._known) > 4 * ports + 4096:
            self._known = {}

    # ------------------------------------------------------------------ change polling
    def changes(self, since: float) -> tuple[list[tuple[str, float | None]], bool]:
        """What Nova (``changes-since``, servers of all projects, deleted ones as
        DELETED for a while) and Neutron (``changed_since``, ports; deleted ports never
        show) say changed since ``since`` (epoch seconds): ``(key, updated)`` per item,
        and whether a page was full (more changed than one page shows).

        One page of each per region: 2 requests per region, whatever the cloud's size.
        A trigger only, never evidence; InventoryError when a listing fails."""
        cloud = self.last_cloud or self.settings.clouds[0]
        conn = self._conn(cloud)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(0.0, since)))
        out: list[tuple[str, float | None]] = []
        full = False
        try:
            regions = self._regions(conn)
            for region in regions:
                nova = self._adapter(conn, "compute", region)
                net = self._adapter(conn, "network", region)
                queries: tuple[tuple[Any, str, str, str, dict[str, Any], dict[str, Any]], ...]
                queries = (
                    (
                        nova.get, "/servers/detail", "servers", "updated",
                        {"all_tenants": "True", "changes-since": stamp, "limit": CHANGE_PAGE},
                        {"microversion": NOVA_MICROVERSION},
                    ),
                    (
                        net.get, "/v2.0/ports", "ports", "updated_at",
                        {"changed_since": stamp, "limit": CHANGE_PAGE,
                         "fields": ["id", "updated_at", "device_id"]},
                        {},
                    ),
                )  # fmt: skip
                for get, path, key, stamp_key, params, kw in queries:
                    what = f"{region} {key} changed since {stamp}"
                    request = _describe("GET", f"{path}?{_qs(params)}")
                    try:
                        resp = _observed(_service_of(get), get, path, params=params, **kw)
                    except Exception as exc:
                        raise _translate(exc, what, request) from None
                    body = _json_or_error(resp, what)
                    items = body.get(key) if isinstance(body, dict) else None
                    if not isinstance(items, list):
                        raise InventoryBadData(f"{what}: answer has no '{key}' list", request)
                    full = full or len(items) >= CHANGE_PAGE
                    for item in items:
                        if not isinstance(item, dict):
                            raise InventoryBadData(f"{what}: an item is not an object", request)
                        status = item.get("status", "")
                        ident = f"{region}:{key}:{item.get('id')}@{item.get(stamp_key)}:{status}"
                        out.append((_label(ident), _epoch(item.get(stamp_key))))
        except InventoryAuthError:
            self._drop(cloud)
            raise
        return out, full

    # ------------------------------------------------------------------ per-project
    def _per_project(
        self,
        cloud: str,
        projects: Mapping[str, ProjectRecord],
        interest: frozenset[str] | None,
    ) -> tuple[dict[str, list[InstanceRecord]], dict[str, str]]:
        wanted = [p for p in projects.values() if interest is None or p.name in interest]
        incomplete: dict[str, str] = {
            p.name: "not listed in per-project mode"
            for p in projects.values()
            if interest is not None and p.name not in interest
        }
        self._forget_unlisted(cloud, projects)
        instances: dict[str, list[InstanceRecord]] = {}
        lock = threading.Lock()
        regions: list[str] | None = list(self.settings.regions) if self.settings.regions else None

        def read_project(project: ProjectRecord) -> None:
            """One project's servers in every region, with a token scoped to it; a
            failure makes this project unknown, never the others."""
            try:
                conn = self._conn(cloud, (project.id, self._domains.get(project.id, "default")))
                regs = regions or self._regions(conn)
                found: list[InstanceRecord] = []
                bad: list[str] = []
                for region in regs:
                    nova = self._adapter(conn, "compute", region)
                    servers = list_all(
                        nova.get,
                        "/servers/detail",
                        "servers",
                        {},
                        NOVA_PAGE,
                        f"{region} servers of {project.name}",
                        pages.SERVER_FIELDS,
                        microversion=NOVA_MICROVERSION,
                    )
                    found.extend(
                        servers_of(
                            project, region, servers, bad, self.settings.include_floating_ips
                        )
                    )
            except InventoryError as exc:
                if isinstance(exc, InventoryAuthError):
                    self._drop_project(cloud, project.id)
                with lock:
                    incomplete[project.name] = str(exc)
                return
            with lock:
                instances[project.name] = found
                if bad:  # this project holds; the others go on
                    incomplete[project.name] = "; ".join(bad[:3]) + (
                        f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
                    )

        if wanted:
            workers = max(1, min(self.settings.concurrency, len(wanted)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(read_project, wanted))
        return instances, incomplete

    def _forget_unlisted(self, cloud: str, projects: Mapping[str, ProjectRecord]) -> None:
        """A project Keystone no longer lists is never read again: its connection (and
        token) would otherwise stay cached for the life of the daemon."""
        with self._clients.lock:
            stale = [
                k
                for k in self._clients.conns
                if k[0] == cloud and k[1] and k[1].split("/", 1)[0] not in projects
            ]
            for key in stale:
                del self._clients.conns[key]

    def _drop_project(self, cloud: str, project_id: str) -> None:
        """Forget one project's connection after an auth error: its next read takes a new
        token (the project may have been disabled, or its role taken away)."""
        with self._clients.lock:
            stale = [
                k
                for k in self._clients.conns
                if k[0] == cloud and k[1] and k[1].startswith(project_id + "/")
            ]
            for key in stale:
                del self._clients.conns[key]


def _epoch(text: object) -> float | None:
    """An API timestamp (``2026-01-02T03:04:05Z``, naive = UTC) in epoch seconds."""
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def servers_of(
    project: ProjectRecord,
    region: str,
    servers: Iterable[dict[str, Any]],
    bad: list[str],
    include_floating_ips: bool = False,
) -> list[InstanceRecord]:
    """The project's instances in one project-scoped Nova listing (pure: fixtures reach
    it without HTTP); an address that fails the grammar is added to ``bad`` (naming the
    server) and makes the project unknown, not the whole read."""
    req = f"{region} servers of {project.name}"
    types = {"fixed", "floating"} if include_floating_ips else {"fixed"}
    out = []
    for srv in servers:
        sid = _field(srv, "id", str, "servers", req)
        status = str(srv.get("status", "")).upper()
        if status == "UNKNOWN":
            raise InventoryIncomplete(f"server {sid} is in a down Nova cell", req)
        if status in GONE:
            continue
        tenant = srv.get("tenant_id") or srv.get("project_id")
        if tenant is not None and tenant != project.id:
            # a project-scoped listing showing another project's server: not this
            # project's instance, and the listing is not what it says
            bad.append(
                f"{region}: server {_label(sid)} of project {_label(tenant)} is in the "
                f"listing scoped to {_label(project.name)} ({_label(project.id)})"
            )
            continue
        nets = srv.get("addresses")
        if not isinstance(nets, dict):
            raise InventoryBadData(f"server {sid} has no 'addresses'", req)
        addrs: list[IPAddress] = []
        refused = False
        for entries in nets.values():
            if not isinstance(entries, list):
                raise InventoryBadData(f"server {sid}: malformed 'addresses'", req)
            for e in entries:
                kind = e.get("OS-EXT-IPS:type", "fixed") if isinstance(e, dict) else None
                if not isinstance(kind, str) or kind not in types:
                    continue
                try:
                    addrs.append(parse_address(e.get("addr")))
                except AddressError as exc:
                    refused = True
                    bad.append(f"{region}: server {_label(sid)}: {exc}")
        if not addrs and status in ADDRESSED and not refused:
            raise InventoryIncomplete(f"server {sid} is {status} but has no addresses", req)
        name = str(srv.get("name", ""))
        out.append(InstanceRecord(sid, name, project.name, status, tuple(addrs)))
    return out


# --------------------------------------------------------------------------- all-projects merge

LABEL = re.compile(r"[A-Za-z0-9_.:@+=-]{1,80}")


def _label(text: object) -> str:
    """An id or name from the cloud as it may appear in a one-line message."""
    return text if isinstance(text, str) and LABEL.fullmatch(text) else shown(text)


@dataclass(slots=True)
class _Port:
    id: str
    server: str
    project: str  # project id, from Neutron
    addresses: list[tuple[IPAddress, str, str | None]]  # (address, what, other project id)
    refused: list[str]
    # on a server's first port: its instance, when the fast path of ``read_servers`` could
    # tell it (``own_servers`` adds it unless the server is listed twice)
    instance: InstanceRecord | None = None
    # the fast path's: the text of each fixed IP, as Neutron wrote it (all accepted); a
    # port the checked path read has none, so its server takes the checked path too
    texts: list[str] | None = None


def _unexportable(text: object) -> bool:
    """A well-formed address the grammar refuses for its range (link-local, loopback...):
    it can never be in an exports file, so it claims nothing and hides nothing."""
    if not isinstance(text, str) or not ADDRESS_CHARS.fullmatch(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _pair_address(text: object) -> IPAddress | None:
    """The single address of an allowed address pair; None for a wider CIDR (not
    claimed: a documented limitation).  AddressError for text that is no address."""
    if isinstance(text, str) and "/" in text:
        addr_text = text.partition("/")[0]
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise AddressError(f"allowed address pair {shown(text)} is not a CIDR") from None
        if net.prefixlen != net.max_prefixlen:
            return None
        return parse_address(addr_text)
    return parse_address(text)


def merge_region(
    region: str,
    projects: Mapping[str, ProjectRecord],
    ports: Sequence[dict[str, Any]],
    servers: Sequence[dict[str, Any]],
    fips: Sequence[dict[str, Any]],
    instances: dict[str, list[InstanceRecord]],
    incomplete: dict[str, str],
    claims: dict[str, list[AddressClaim]],
    floating: dict[str, str] | None = None,
    known: dict[str, IPAddress] | None = None,
) -> None:
    """One region's Neutron ports (and floating IPs) and Nova servers, owned per address.

    A port's address belongs to a project only when the port is an instance's
    (``device_owner`` ``compute:*``) and the port's project, the project of the server it
    is attached to (Nova's ``tenant_id``) and, for a floating IP, the floating IP's
    project all agree, and that project is listed by Keystone.  Otherwise the address is
    a claim (``claims``) that gives it to nobody and takes it from every project at once:
    a port of a project Keystone does not list (an orphan of a deleted project), a port
    of project X on a server of project Y.

    Every other sign that someone sends from an address is a claim by its project alone
    (``ids`` is that project's id, so its own exports follow the deletion rules and any
    other project's leave at once), dropped when an instance of that same project has
    the address: the fixed IPs of ports that are no instance's (DHCP, router, load
    balancer, unbound, Ironic ``baremetal:*``, trunk subports: their addresses are
    never exported), single-address allowed address pairs (wider CIDRs are not claimed:
    a documented limitation), and the addresses Nova shows for a server that no port of
    that server shows (a stale Neutron or a stale Nova: exported for neither).  A server
    listed twice by Nova with two projects is bad data for both projects.

    An address that fails the grammar (``addresses.parse_address``) makes the projects of
    its port and server unknown, naming both, and nothing else: a malformed record (no
    id, no device, no project) still makes the whole read unknown.

    The steps run in this order, and the first reason a project is unknown is the one
    kept: ports, floating IPs, Nova's servers, each server's addresses, the addresses
    Nova alone refused, the claims of one project alone.
    """
    m = _RegionMerge(region, projects, instances, incomplete, claims, ids=bool(fips))
    if known is not None:
        m.known = known  # ``parse_address``'s answers from earlier reads (accepted ones)
    m.read_ports(ports)
    for fip in fips:
        m.read_floating_ip(fip)
    m.read_servers(servers, {"fixed", "floating"} if fips else {"fixed"})
    m.own_servers()
    for project_id, why in m.nova_refused:  # after the ports' (they name the port)
        m.unknown(project_id, why)
    m.add_lone_claims()
    if floating is not None:
        floating.update(m.floating)


@dataclass
class _RegionMerge:
    """What the steps of ``merge_region`` share: the listings read so far, and the
    results (``instances``, ``incomplete``, ``claims``) they fill in."""

    region: str
    projects: Mapping[str, ProjectRecord]
    instances: dict[str, list[InstanceRecord]]
    incomplete: dict[str, str]
    claims: dict[str, list[AddressClaim]]
    ids: bool = True  # keep ``by_id`` (the floating IPs need it)
    by_server: dict[str, list[_Port]] = field(default_factory=dict)  # instance ports
    by_id: dict[str, _Port] = field(default_factory=dict)
    # (address, claimant project id, detail): claims by one project alone
    lone_claims: list[tuple[IPAddress, str, str]] = field(default_factory=list)
    server_names: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> name, status
    server_project: dict[str, str] = field(default_factory=dict)  # id -> Nova's tenant_id
    listed_twice: set[str] = field(default_factory=set)  # for two projects: nobody's
    nova_refused: list[tuple[str | None, str]] = field(default_factory=list)  # project, why
    # floating IPs Nova shows while they are not read (include_floating_ips off): never
    # exported, only named by explain ("a floating IP of instance X")
    floating: dict[str, str] = field(default_factory=dict)
    # the fast paths' lookups: address text -> parse_address's answer (accepted ones
    # only), project id -> listed name
    known: dict[str, IPAddress] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    fast: ClassVar[bool] = True  # False: the checked paths alone (the test compares them)

    def __post_init__(self) -> None:
        self.names = {pid: p.name for pid, p in self.projects.items()}

    @property
    def req(self) -> str:
        return f"{self.region} listings"

    def name(self, pid: str | None) -> str | None:
        return self.projects[pid].name if pid is not None and pid in self.projects else None

    def who(self, pid: str | None) -> str:
        n = self.name(pid)
        if n is not None:
            return f"project {_label(n)}"
        return f"project {_label(pid)} (not listed by Keystone)" if pid else "no project"

    def unknown(self, pid: str | None, why: str) -> None:
        pname = self.name(pid)
        if pname is not None:
            self.incomplete.setdefault(pname, why)

    def read_ports(self, ports: Iterable[Any]) -> None:
        """Every port, in order.  Fast path for the common port (at 100,000 instances the
        per-port cost is the read's): a typed ``pages.Port`` (id, device, owner and fixed
        IPs all of their types) of an instance (``compute:*``) with a project, no allowed
        address pairs and fixed IPs ``parse_address`` accepts.  Anything else (or a
        refusal) takes ``read_port``, the checked path, from the start, as a dict: the
        fast path changes nothing before it has seen the whole port, so results and
        messages are the same."""
        by_server, by_id, known = self.by_server, self.by_id, self.known
        ids = self.ids
        read_port, fast, typed, plain = self.read_port, self.fast, pages.Port, pages.plain
        for port in ports:
            if type(port) is typed:
                proj = port.project_id
                if (
                    fast
                    and port.device_owner.startswith("compute:")
                    and type(proj) is str
                    and proj
                    and not port.allowed_address_pairs
                ):
                    dev = port.device_id
                    addresses: list[tuple[IPAddress, str, str | None]] = []
                    texts: list[str] = []
                    for fixed in port.fixed_ips:
                        text = fixed.ip_address
                        addr = known.get(text)
                        if addr is None:
                            addr = self.parsed(text)
                            if addr is None:
                                break  # a refusal: the checked path says it
                        addresses.append((addr, "fixed IP", None))
                        texts.append(text)
                    else:
                        rec = _Port(port.id, dev, proj, addresses, [], texts=texts)
                        on_server = by_server.get(dev)
                        if on_server is None:
                            by_server[dev] = [rec]
                        else:
                            on_server.append(rec)
                        if ids:
                            by_id[port.id] = rec
                        continue
                port = plain(port)
            read_port(port)

    def parsed(self, text: object) -> IPAddress | None:
        """``parse_address(text)``, remembered in ``known``; None when refused (the
        checked path parses it again and names it)."""
        if type(text) is not str:
            return None
        try:
            addr = parse_address(text)
        except AddressError:
            return None
        self.known[text] = addr
        return addr

    def read_port(self, port: dict[str, Any]) -> None:
        """An instance's port is kept for its server; any other port's fixed IPs, and
        every port's single-address allowed address pairs, are claims of its project."""
        region, req = self.region, self.req
        pid = _field(port, "id", str, "ports", req)
        device_owner = port.get("device_owner") or ""
        kind = device_owner if isinstance(device_owner, str) else ""
        proj = port.get("project_id") or port.get("tenant_id")
        project_id = proj if isinstance(proj, str) else None

        def of_port() -> str:  # for messages only: most ports never need it
            device = f"device_owner {_label(kind)}" if kind else "no device_owner"
            return f"port {_label(pid)} ({device}) of {self.who(project_id)}"

        pairs = port.get("allowed_address_pairs") or []
        if not isinstance(pairs, list):
            raise InventoryBadData(
                f"ports: port {_label(pid)}: malformed allowed_address_pairs", req
            )
        for pair in pairs:
            text = pair.get("ip_address") if isinstance(pair, dict) else pair
            try:
                single = _pair_address(text)
            except AddressError as exc:
                if not _unexportable(text):
                    self.unknown(project_id, f"{region}: {of_port()}: {exc}")
                continue
            if single is None:
                log.debug("%s: %s: allowed address pair %s not claimed", region, of_port(), text)
            elif project_id:
                self.lone_claims.append(
                    (single, project_id, f"allowed address pair {single} of {of_port()}")
                )
        if kind == "network:floatingip":
            return  # the floating IP itself: owned through the floating IP listing
        if not kind.startswith("compute:"):
            for fixed in _field(port, "fixed_ips", list, "ports", req):
                text = fixed.get("ip_address") if isinstance(fixed, dict) else fixed
                try:
                    addr = parse_address(text)
                except AddressError as exc:
                    if not _unexportable(text):
                        self.unknown(project_id, f"{region}: {of_port()}: fixed IP {exc}")
                    continue
                self.lone_claims.append(
                    (addr, project_id or "", f"fixed IP {addr} of {of_port()}, no instance's port")
                )
            return
        dev = _field(port, "device_id", str, "ports", req)
        if project_id is None:
            raise InventoryBadData(f"ports: port {_label(pid)} has no project_id", req)
        rec = _Port(pid, dev, project_id, [], [])
        for fixed in _field(port, "fixed_ips", list, "ports", req):
            text = fixed.get("ip_address") if isinstance(fixed, dict) else fixed
            try:
                rec.addresses.append((parse_address(text), "fixed IP", None))
            except AddressError as exc:
                rec.refused.append(f"fixed IP {exc}")
        self.by_server.setdefault(dev, []).append(rec)
        if self.ids:
            self.by_id[pid] = rec

    def read_floating_ip(self, fip: dict[str, Any]) -> None:
        """A floating IP is an address of the instance port it is attached to, noting its
        own project when that differs from the port's."""
        port_id = fip.get("port_id")
        if not isinstance(port_id, str) or port_id not in self.by_id:
            return
        rec = self.by_id[port_id]
        fproj = fip.get("project_id") or fip.get("tenant_id")
        fid = _label(fip.get("id"))
        try:
            addr = parse_address(fip.get("floating_ip_address"))
        except AddressError as exc:
            rec.refused.append(f"floating IP {fid}: {exc}")
            return
        other = fproj if isinstance(fproj, str) and fproj != rec.project else None
        rec.addresses.append((addr, f"floating IP {fid}", other))

    def read_servers(self, servers: Sequence[Any], types: set[str]) -> None:
        """Nova: each server's project, and the addresses it shows (fixed; floating ones
        only when floating IPs are read).  A server id listed twice with two projects is
        nobody's.

        Fast path for the common server, which adds nothing but its project and name: a
        typed ``pages.Server`` listed for the first time, with a project, a name and an
        addressed status, that Neutron shows ports for, whose addresses are all fixed
        IPs its ports show (text already accepted).  Anything else takes
        ``read_server``, the checked path, from the start, as a dict."""
        first_seen: dict[str, str | None] = {}
        by_server, names = self.by_server, self.names
        server_project, server_names = self.server_project, self.server_names
        read_server, fast, _new = self.read_server, self.fast, object.__new__
        typed, plain = pages.Server, pages.plain
        for srv in servers:
            if type(srv) is typed:
                sid = srv.id
                status = srv.status
                proj = srv.tenant_id
                name = srv.name
                nets = srv.addresses
                if (
                    fast
                    and status in ADDRESSED
                    and type(proj) is str
                    and proj
                    and type(name) is str
                    and type(nets) is dict
                    and sid not in first_seen
                    and (server_ports := by_server.get(sid)) is not None
                ):
                    # every address a fixed IP, in the text of a port of this server the
                    # fast path read (a port the checked path read shows none here: an
                    # address only it shows sends the server to the checked path)
                    if len(server_ports) == 1:
                        shown = server_ports[0].texts or ()
                    else:
                        shown = [t for pt in server_ports if pt.texts for t in pt.texts]
                    for entries in nets.values():
                        for e in entries:
                            if e.type != "fixed" or e.addr not in shown:
                                break
                        else:
                            continue
                        break
                    else:
                        first_seen[sid] = proj
                        owner_name = names.get(proj)
                        # its instance, as ``own_server_addresses`` makes it: the ports
                        # (and floating IPs) are all read, the server is listed once so
                        # far, so only a second listing can change it (``own_servers``)
                        addrs: list[IPAddress] = []
                        if owner_name is not None:
                            for pt in server_ports:
                                if pt.project != proj or pt.refused:
                                    break
                                for addr, _, other in pt.addresses:
                                    if other is not None:
                                        break
                                    addrs.append(addr)
                                else:
                                    continue
                                break
                            else:
                                record = _new(InstanceRecord)  # no 5 frozen setattrs
                                record.__dict__.update(
                                    id=sid,
                                    name=name,
                                    project=owner_name,
                                    status=status,
                                    addresses=tuple(addrs),
                                )
                                server_ports[0].instance = record
                                # its project and name are the record's: only
                                # ``own_server_addresses`` reads them, for a server
                                # without one (or listed twice: then nobody's)
                                continue
                        server_project[sid] = proj
                        server_names[sid] = (name, status)
                        continue
                srv = plain(srv)
            read_server(srv, types, first_seen)

    def read_server(
        self, srv: dict[str, Any], types: set[str], first_seen: dict[str, str | None]
    ) -> None:
        """One server of Nova's listing, checked (see ``read_servers``)."""
        region, req = self.region, self.req
        shown: set[IPAddress] | None = None
        sid = _field(srv, "id", str, "servers", req)
        status = str(srv.get("status", "")).upper()
        proj = srv.get("tenant_id") or srv.get("project_id")
        proj = proj if isinstance(proj, str) else None
        pname = self.name(proj)
        if sid in first_seen and first_seen[sid] != proj:
            first = first_seen[sid]
            why = (
                f"{region}: server {_label(sid)} is listed twice by Nova, for "
                f"{self.who(first)} and {self.who(proj)}"
            )
            self.unknown(first, why)
            self.unknown(proj, why)
            self.listed_twice.add(sid)
        elif sid not in first_seen:
            first_seen[sid] = proj
            if proj is not None:
                self.server_project[sid] = proj
        if status == "UNKNOWN":
            # named as the hold names it (a down cell shows no name): never "UNLISTED"
            self.server_names.setdefault(sid, (str(srv.get("name") or ""), "UNKNOWN"))
            if pname:
                self.incomplete.setdefault(
                    pname,
                    f"{region}: server {_label(sid)} is in a down Nova cell (status UNKNOWN)",
                )
            return
        if status in GONE:
            return
        self.server_names.setdefault(sid, (str(srv.get("name", "")), status))
        if status in ADDRESSED and sid not in self.by_server and pname:
            self.incomplete.setdefault(
                pname,
                f"{region}: server {_label(sid)} is {status} but Neutron shows no port for it",
            )
        nets = srv.get("addresses")
        if nets is None:
            return
        if not isinstance(nets, dict) or not all(isinstance(v, list) for v in nets.values()):
            self.unknown(proj, f"{region}: server {_label(sid)}: malformed 'addresses'")
            return
        for entries in nets.values():
            for e in entries:
                iptype = e.get("OS-EXT-IPS:type", "fixed") if isinstance(e, dict) else None
                if iptype == "floating" and pname and isinstance(e, dict):
                    with contextlib.suppress(AddressError):
                        self.floating[str(parse_address(e.get("addr")))] = (
                            f"instance {srv.get('name') or '(no name)'} "
                            f"({_label(sid)}) of project {pname}"
                        )
                if not isinstance(iptype, str) or iptype not in types:
                    continue
                try:
                    addr = parse_address(e.get("addr"))
                except AddressError as exc:
                    self.nova_refused.append(
                        (proj, f"{region}: server {_label(sid)}: Nova's {exc}")
                    )
                    continue
                if shown is None:  # the addresses its ports show (any project's)
                    shown = {a for pt in self.by_server.get(sid, ()) for a, _, _ in pt.addresses}
                if proj and addr not in shown:
                    on = f"server {_label(sid)} of {self.who(proj)}"
                    self.lone_claims.append((addr, proj, f"address {addr} Nova shows on {on}"))

    def own_servers(self) -> None:
        """``own_server_addresses`` for every server Neutron shows ports for, in order;
        the instance the fast path of ``read_servers`` made is kept as it is unless the
        server was listed twice (Nova's project, listed by Keystone, on every one of its
        ports, no refused address and no floating IP of another project)."""
        listed_twice, instances = self.listed_twice, self.instances
        own = self.own_server_addresses
        for sid, server_ports in self.by_server.items():
            record = server_ports[0].instance
            if record is not None and sid not in listed_twice:
                of_project = instances.get(record.project)
                if of_project is None:
                    instances[record.project] = [record]
                else:
                    of_project.append(record)
                continue
            own(sid, server_ports)

    def own_server_addresses(self, sid: str, server_ports: list[_Port]) -> None:
        """The server's instance, with the addresses its ports and it agree on; every
        other address of its ports is a claim that gives it to nobody."""
        # The server's project: Nova's word; for a server Nova does not list (a port left
        # behind, a race), its ports' project when they agree on one, else nobody's.
        server_owner: str | None
        if sid in self.listed_twice:
            server_owner = None
        elif sid in self.server_project:
            server_owner = self.server_project[sid]
        else:
            port_projects = {pt.project for pt in server_ports}
            server_owner = port_projects.pop() if len(port_projects) == 1 else None
        owner_name = self.name(server_owner)
        addrs: list[IPAddress] = []

        def where(pt: _Port) -> str:  # for messages only: most servers never need it
            on = f"on server {_label(sid)} of {self.who(server_owner)} in {self.region}"
            return f"port {_label(pt.id)} of {self.who(pt.project)} {on}"

        for pt in server_ports:
            for why in pt.refused:
                for pname in sorted({owner_name, self.name(pt.project)} - {None}, key=str):
                    self.incomplete.setdefault(str(pname), f"{where(pt)}: {why}")
            for addr, what, other in pt.addresses:
                if pt.project == server_owner and other is None and owner_name is not None:
                    addrs.append(addr)
                    continue
                of = f" of {self.who(other)}" if other is not None else ""
                detail = f"{what} {addr}{of} of {where(pt)}"
                involved = {pt.project, server_owner, other} - {None}
                listed = tuple(sorted({n for n in map(self.name, involved) if n is not None}))
                self.claims.setdefault(str(addr), []).append(
                    AddressClaim(detail, listed, tuple(sorted(i for i in involved if i)))
                )
        if owner_name is not None:
            sname, status = self.server_names.get(sid, ("", "UNLISTED"))
            self.instances.setdefault(owner_name, []).append(
                InstanceRecord(sid, sname, owner_name, status, tuple(addrs))
            )

    def add_lone_claims(self) -> None:
        """The claims of one project alone, unless one of its own instances has the
        address."""
        if not self.lone_claims:
            return
        # the addresses of the claimants' instances only (hashing every address of every
        # instance cost as much as the rest of this step)
        claimants = {self.name(claimant) for _, claimant, _ in self.lone_claims}
        own: dict[str, set[IPAddress]] = {}
        for pname, insts in self.instances.items():
            if pname not in claimants:
                continue
            for inst in insts:
                own.setdefault(pname, set()).update(inst.addresses)
        ids = {p.name: pid for pid, p in self.projects.items()}
        for addr, claimant, detail in self.lone_claims:
            claimant_name = self.name(claimant)
            if (
                claimant_name is not None
                and addr in own.get(claimant_name, ())
                and ids[claimant_name] == claimant
            ):
                continue
            self.claims.setdefault(str(addr), []).append(
                AddressClaim(f"{detail} in {self.region}", (), (claimant,) if claimant else ())
            )


def _scope_of(conn: Any) -> str:
    """The scope and roles of a connection's current token (no request is made)."""
    try:
        access = conn.session.auth.get_access(conn.session)
        roles = ", ".join(sorted(access.role_names)) or "none"
        if access.system_scoped:
            return f"token is system-scoped with roles {roles}"
        if access.project_scoped:
            return f"token is scoped to project {access.project_name!r} with roles {roles}"
        return "token is unscoped"
    except Exception:
        return "token scope unknown"
