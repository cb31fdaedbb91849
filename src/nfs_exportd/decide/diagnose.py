"""``diagnose``: from the NFS server's refusal lines to a named cause (pure).

The outage behind ``000_88c8ab861809594e`` (a network failover: every VM reached the NFS
server from one wrong source address) took about 40 minutes of reading logs on several
hosts, although the server had logged every refusal.  This module joins those refusals
with what the daemon knows - the inventory (complete or not), the exports in force, the
plan (pending and held changes) - and names the cause of each group, most important
first, with the evidence.  The read layer parses the lines; nothing here does I/O.
"""

from __future__ import annotations

import datetime as _dt
import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..addresses import client_covers
from ..model import ExportsFile, InventorySnapshot, PublicExport, ServedExport
from .plan import Action, Plan
from .reconcile import PUBLIC_OWNER_PREFIX

SCHEMA = 1
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
CHECK_MAX_TEXT = 400  # an Icinga line's text part is cut here (perfdata is bounded too)
LEVEL_TOO_LOW = "Ganesha's log level is too low"  # a warning that makes --check WARN


class Refusal(NamedTuple):
    """One refused request, as a server logged it (a named tuple: a log of a million
    refusals builds a million of them, at a third of a frozen dataclass's cost)."""

    time: float | None  # None: the line carries no time (rpc.mountd's stderr)
    server: str  # "ganesha" | "rpc.mountd"
    address: str  # canonical IP text (Ganesha's ::ffff:-mapped IPv4 unmapped)
    path: str  # the path (v3, rpc.mountd) or pseudo path (v4) the client asked for
    kind: str  # "v3-mount" | "v4" | "v3-op" | "unmatched host" | "not exported" | ...
    export_id: int | None = None


class Cause(enum.StrEnum):
    """Why refusals happen.  Public: ``--json`` and the metric's ``cause`` label."""

    WRONG_SOURCE = "wrong-source-address"  # addresses of no instance, several projects' paths
    UNKNOWN_ADDRESS = "unknown-address"  # an address of no instance (one project's paths)
    PATH_NOT_SERVED = "path-not-served"  # a path this server does not serve
    REFUSED_WHILE_EXPORTED = "refused-while-exported"  # our record says it is in force
    NOT_EXPORTED = "not-exported"  # the owner's own volume, and no change is planned
    ADDITION_HELD = "addition-held"  # the addition is planned but held
    NOT_YET_EXPORTED = "not-yet-exported"  # a new instance: the next cycle adds it
    PENDING_REMOVAL = "pending-removal"  # an address on its way out (instance gone)
    REMOVED = "removed"  # an address the journal shows removed (instance gone, conflict)
    OTHER_PROJECT = "other-project"  # a VM mounting a volume not its project's


# Severity for ``--check``: what the rules explain does not page.
SEVERITY: Mapping[Cause, int] = {
    Cause.WRONG_SOURCE: CRITICAL,
    Cause.UNKNOWN_ADDRESS: WARNING,
    Cause.PATH_NOT_SERVED: WARNING,
    Cause.REFUSED_WHILE_EXPORTED: WARNING,
    Cause.NOT_EXPORTED: WARNING,
    Cause.ADDITION_HELD: OK,
    Cause.NOT_YET_EXPORTED: OK,
    Cause.PENDING_REMOVAL: OK,
    Cause.REMOVED: OK,
    Cause.OTHER_PROJECT: OK,
}
ORDER = tuple(Cause)  # the order above is the order of importance


@dataclass(frozen=True)
class SourceReport:
    """What one configured source gave: lines looked at, refusals, or why it failed."""

    name: str
    lines: int = 0
    refusals: int = 0
    undated: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Inputs:
    refusals: Sequence[Refusal]
    snapshot: InventorySnapshot
    in_force: Mapping[str, ExportsFile]
    served: Mapping[str, tuple[ServedExport, ...]]
    public: Sequence[PublicExport]
    plan: Plan
    since: float
    until: float
    sources: Sequence[SourceReport] = ()
    # hold key (ops.check.hold_key) -> first seen, from status.json: "held since when"
    hold_since: Mapping[str, float] = field(default_factory=dict)
    warnings: Sequence[str] = ()  # e.g. Ganesha's log level is too low to see refusals
    maintenance_since: float | None = None  # the maintenance flag's mtime
    # address -> its removals in nfs-exportd's journal, newest last
    removed: Mapping[str, Sequence[Removal]] = field(default_factory=dict)


@dataclass(frozen=True)
class Removal:
    """One pair removed, as the journal of applied changes recorded it."""

    time: float
    entry: int
    project: str
    path: str
    reason: str


@dataclass
class Group:
    cause: Cause
    refusals: int = 0
    addresses: dict[str, int] = field(default_factory=dict)
    paths: dict[str, int] = field(default_factory=dict)
    projects: set[str] = field(default_factory=set)  # whose volumes were refused
    owners: set[str] = field(default_factory=set)  # projects the addresses belong to
    servers: set[str] = field(default_factory=set)
    first: float | None = None
    last: float | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, r: Refusal, project: str | None, owners: Iterable[str]) -> None:
        self.refusals += 1
        self.addresses[r.address] = self.addresses.get(r.address, 0) + 1
        self.paths[r.path] = self.paths.get(r.path, 0) + 1
        if project is not None:
            self.projects.add(project)
        self.owners.update(owners)
        self.servers.add(r.server)
        if r.time is not None:
            self.first = r.time if self.first is None else min(self.first, r.time)
            self.last = r.time if self.last is None else max(self.last, r.time)

    @property
    def severity(self) -> int:
        return SEVERITY[self.cause]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True)
class _Volumes:
    """Served and in-force paths -> owner (a project, or ``public:NAME``)."""

    paths: Mapping[str, str]  # volume path -> owner

    @classmethod
    def of(cls, inp: Inputs) -> _Volumes:
        out: dict[str, str] = {}
        for f in inp.in_force.values():
            owner = f.owner if f.is_project else PUBLIC_OWNER_PREFIX + f.owner
            for line in f.lines:
                out.setdefault(line.path, owner)
        for project, exps in inp.served.items():
            for e in exps:
                out[e.path] = project
        for p in inp.public:
            out[p.path] = PUBLIC_OWNER_PREFIX + p.name
        return cls(out)

    def owner(self, path: str) -> tuple[str, str] | None:
        """(volume path, owner) of the volume ``path`` lies in (a subdirectory mounts):
        the path, then its parents, looked up (a refusal costs its depth, not the
        number of volumes)."""
        p = path.rstrip("/") or "/"
        while True:
            owner = self.paths.get(p)
            if owner is not None:
                return p, owner
            if p in ("/", ""):
                return None
            p = p.rsplit("/", 1)[0] or "/"


def _owners(snap: InventorySnapshot) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for project, insts in snap.instances.items():
        for inst in insts:
            for a in inst.addresses:
                out.setdefault(str(a), set()).add(project)
    return out


def _in_force_pairs(in_force: Mapping[str, ExportsFile]) -> dict[str, set[str]]:
    """path -> clients (networks kept as text: matched by containment)."""
    out: dict[str, set[str]] = {}
    for f in in_force.values():
        for line in f.lines:
            out.setdefault(line.path, set()).update(line.clients)
    return out


def _client_in(address: str, clients: Iterable[str]) -> bool:
    if address in clients:
        return True
    ip = ipaddress.ip_address(address)
    return any(client_covers(c, ip) for c in clients if "/" in c)


def diagnose(inp: Inputs) -> dict[str, Any]:
    """The report (``diagnose --json``, schema in docs/runbook.md)."""
    vols = _Volumes.of(inp)
    owners_of = _owners(inp.snapshot)
    in_force = _in_force_pairs(inp.in_force)
    adds = {(c.path, c.client): c for c in inp.plan.changes if c.action is Action.ADD}
    held_adds = {(h.path, h.client): h for h in inp.plan.holds if h.action is Action.ADD}
    leaving: dict[str, list[str]] = {}  # address -> "project path (reason)" being removed
    for c in inp.plan.changes:
        if c.action is Action.REMOVE:
            leaving.setdefault(c.client, []).append(
                f"{c.project} {c.path} ({c.reason.value}: removed at the next cycle)"
            )
    for h in inp.plan.holds:
        if h.action is Action.REMOVE and h.client and h.project and h.path:
            leaving.setdefault(h.client, []).append(
                f"{h.project} {h.path} ({h.reason.value}: {h.detail})"
            )

    groups: dict[Cause, Group] = {}
    unowned: dict[str, list[tuple[Refusal, str]]] = {}  # address -> (refusal, project)

    def group(cause: Cause) -> Group:
        return groups.setdefault(cause, Group(cause))

    for r in inp.refusals:
        vol = vols.owner(r.path)
        owners = owners_of.get(r.address, set())
        if vol is None:
            g = group(Cause.PATH_NOT_SERVED)
            g.add(r, None, owners)
            continue
        root, project = vol
        if _client_in(r.address, in_force.get(root, ())):
            g = group(Cause.REFUSED_WHILE_EXPORTED)
            g.add(r, project, owners)
            g.note(
                f"{r.address} is in force for {root} in our record, yet {r.server} refused it: "
                "the server is not serving what the managed files say; run 'nfs-exportd sync'"
            )
        elif owners and project not in owners:
            group(Cause.OTHER_PROJECT).add(r, project, owners)
        elif owners:
            if (root, r.address) in adds:
                group(Cause.NOT_YET_EXPORTED).add(r, project, owners)
            elif (root, r.address) in held_adds:
                h = held_adds[(root, r.address)]
                g = group(Cause.ADDITION_HELD)
                g.add(r, project, owners)
                since = inp.hold_since.get(
                    "|".join((h.reason.value, h.project or "", h.path or "", h.client or ""))
                )
                if since is None and h.reason.value in ("maintenance", "freeze"):
                    since = inp.maintenance_since
                when = f" since {_iso(since)}" if since else ""
                g.note(f"{project} {root} {r.address}: held ({h.reason.value}){when}: {h.detail}")
            else:
                g = group(Cause.NOT_EXPORTED)
                g.add(r, project, owners)
                why = inp.snapshot.incomplete.get(project)
                g.note(
                    f"{r.address} is an instance of {project}, but {root} is not exported to "
                    + (f"it: the project's instances could not be read ({why})" if why else "it")
                )
        elif r.address in leaving:
            g = group(Cause.PENDING_REMOVAL)
            g.add(r, project, owners)
            g.note(
                f"{r.address} belongs to no instance now; leaving: "
                + ", ".join(sorted(leaving[r.address]))
            )
        elif r.address in inp.removed:
            g = group(Cause.REMOVED)
            g.add(r, project, owners)
            last = inp.removed[r.address][-1]
            g.note(
                f"{r.address} belongs to no instance; nfs-exportd removed it from "
                f"{last.project} {last.path} at {_iso(last.time)} (journal entry "
                f"{last.entry}, {last.reason})"
            )
        else:
            unowned.setdefault(r.address, []).append((r, project))

    for items in unowned.values():
        projects = {p for _r, p in items}
        cause = Cause.WRONG_SOURCE if len(projects) >= 2 else Cause.UNKNOWN_ADDRESS
        g = group(cause)
        for r, p in items:
            g.add(r, p, ())
    if Cause.WRONG_SOURCE in groups:
        _wrong_source_evidence(groups[Cause.WRONG_SOURCE], inp)

    ordered = sorted(groups.values(), key=lambda g: (-g.severity, ORDER.index(g.cause)))
    snap = inp.snapshot
    inventory = {
        "source": snap.source,
        "complete": snap.listing_complete and not snap.incomplete,
        "problem": snap.problem,
        "incomplete_projects": sorted(snap.incomplete),
    }
    warnings = list(inp.warnings)
    if not snap.listing_complete:
        warnings.append(
            f"the inventory is unknown ({snap.problem}): an address's owner cannot be "
            "known, so every refused address counts as belonging to no instance"
        )
    elif snap.incomplete:
        warnings.append(
            "the inventory is incomplete for "
            + ", ".join(sorted(snap.incomplete))
            + ": their instances' addresses may look unknown"
        )
    undated = sum(s.undated for s in inp.sources)
    if undated:
        warnings.append(
            f"{undated} refusal line(s) carry no time (rpc.mountd's stderr): counted "
            "whatever their age; prefer the journal or syslog, which are timestamped"
        )
    return {
        "schema": SCHEMA,
        "window": {"since": inp.since, "until": inp.until},
        "sources": [
            {
                "name": s.name,
                "lines": s.lines,
                "refusals": s.refusals,
                "undated": s.undated,
                "error": s.error,
            }
            for s in inp.sources
        ],
        "inventory": inventory,
        "refusals": len(inp.refusals),
        "causes": [_group_json(g, inp) for g in ordered],
        "warnings": warnings,
        "verdict": _verdict(ordered, inp.sources, warnings),
    }


def _wrong_source_evidence(g: Group, inp: Inputs) -> None:
    """The instances that own the refused paths are silent: they never reach us."""
    silent, total = 0, 0
    refused = {r.address for r in inp.refusals}
    for project in g.projects:
        for inst in inp.snapshot.instances.get(project, ()):
            for a in inst.addresses:
                total += 1
                silent += str(a) not in refused
    if total:
        g.note(
            f"{silent} of the {total} instance addresses of {', '.join(sorted(g.projects))} "
            "were refused nothing in this window: their traffic arrives from "
            f"{_list(g.addresses)} instead"
        )
    g.note(
        "look for source NAT, a router or a network failover between the VMs and this "
        "server (the clients come back once it is undone; NFSv4 clients may need a remount)"
    )


def _list(counts: Mapping[str, int], limit: int = 5) -> str:
    items = sorted(counts, key=lambda k: (-counts[k], k))
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _iso(t: float) -> str:
    """UTC, ISO 8601, without the clock (pure)."""
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(g: Group) -> str:
    """One line in plain words, cause first."""
    n = f"{g.refusals} refusal{'s' if g.refusals != 1 else ''}"
    addrs = _list(g.addresses)
    projects = ", ".join(sorted(g.projects)) or "-"
    if g.cause is Cause.WRONG_SOURCE:
        return (
            f"wrong source address: {n} from {addrs}, which belong(s) to no instance, for "
            f"the volumes of {len(g.projects)} projects ({projects}): traffic arrives from "
            "the wrong source address (source NAT, a router or a failover in the path)"
        )
    if g.cause is Cause.UNKNOWN_ADDRESS:
        return f"unknown address: {n} from {addrs}, an address of no instance ({projects})"
    if g.cause is Cause.PATH_NOT_SERVED:
        return (
            f"path not served here: {n} for {_list(g.paths)} from {addrs}: the client "
            "mounts the wrong server (or a volume that moved)"
        )
    if g.cause is Cause.REFUSED_WHILE_EXPORTED:
        return f"refused although exported: {n} from {addrs} for {projects}"
    if g.cause is Cause.NOT_EXPORTED:
        return f"not exported: {n} from {addrs}, instances of {projects}"
    if g.cause is Cause.ADDITION_HELD:
        return f"addition held: {n} from {addrs} (instances of {projects}): a hold keeps it out"
    if g.cause is Cause.NOT_YET_EXPORTED:
        return (
            f"too new: {n} from {addrs}, new instances of {projects}: the next cycle "
            "exports to them"
        )
    if g.cause is Cause.PENDING_REMOVAL:
        return f"pending removal: {n} from {addrs}, addresses leaving the exports"
    if g.cause is Cause.REMOVED:
        return f"removed: {n} from {addrs}, addresses removed from the exports (instance gone)"
    owners = ", ".join(sorted(g.owners)) or "-"
    return (
        f"another project's volume: {n} from {addrs} (instances of {owners}) for the "
        f"volumes of {projects}: refused as they should be"
    )


def _group_json(g: Group, inp: Inputs) -> dict[str, Any]:
    return {
        "cause": g.cause.value,
        "severity": STATES[g.severity],
        "summary": summary(g),
        "refusals": g.refusals,
        "addresses": [{"address": a, "refusals": n} for a, n in _top(g.addresses)],
        "paths": [{"path": p, "refusals": n} for p, n in _top(g.paths)],
        "projects": sorted(g.projects),
        "address_owners": sorted(g.owners),
        "servers": sorted(g.servers),
        "first": g.first,
        "last": g.last,
        "notes": g.notes[:20],
    }


def _top(counts: Mapping[str, int], limit: int = 50) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def _verdict(
    groups: Sequence[Group], sources: Sequence[SourceReport], warnings: Sequence[str]
) -> dict[str, Any]:
    code = max((g.severity for g in groups), default=OK)
    failed = [s for s in sources if s.error]
    if failed and len(failed) == len(sources) and code == OK:
        code = UNKNOWN
    elif failed or any(w.startswith(LEVEL_TOO_LOW) for w in warnings):
        code = max(code, WARNING)
    return {"code": code, "state": STATES[code]}


def check_line(report: Mapping[str, Any]) -> str:
    """``diagnose --check``: one Icinga line, text bounded, perfdata per cause."""
    state = report["verdict"]["state"]
    causes = report["causes"]
    failed = [s for s in report["sources"] if s["error"]]
    parts: list[str] = []
    for c in causes:
        if c["severity"] == "OK":
            continue
        if c["cause"] == Cause.WRONG_SOURCE.value:
            addrs = ", ".join(a["address"] for a in c["addresses"][:3])
            parts.append(
                f"wrong source address {addrs} for {len(c['projects'])} projects "
                f"({', '.join(c['projects'][:5])}): {c['refusals']} refusals"
            )
        else:
            parts.append(f"{c['cause']}: {c['refusals']} refusals")
    parts += [f"source {s['name']}: {s['error']}" for s in failed]
    parts += [w for w in report["warnings"] if w.startswith(LEVEL_TOO_LOW)]
    if not parts:
        explained = sum(c["refusals"] for c in causes)
        parts.append(
            f"no unexplained refusals ({explained} explained)" if explained else "no refusals"
        )
    text = "; ".join(" ".join(p.split()) for p in parts)
    if len(text) > CHECK_MAX_TEXT:
        text = text[: CHECK_MAX_TEXT - 3] + "..."
    counts = {c.value: 0 for c in Cause}
    for c in causes:
        counts[c["cause"]] = c["refusals"]
    perf = " ".join(f"{k.replace('-', '_')}={v}" for k, v in counts.items())
    return f"NFS-EXPORTD-DIAGNOSE {state} - {text} | refusals={report['refusals']} {perf}"


def text(report: Mapping[str, Any]) -> str:
    """What ``diagnose`` prints: causes first (most important first), then evidence."""

    def when(t: float | None) -> str:
        if t is None:
            return "?"
        return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%H:%M:%S")

    w = report["window"]
    inv = report["inventory"]
    rows = [
        f"{report['refusals']} refused requests from {when(w['since'])} to {when(w['until'])} "
        f"UTC; inventory {'complete' if inv['complete'] else 'NOT complete'} ({inv['source']})"
    ]
    for c in report["causes"]:
        rows.append(f"[{c['severity']}] {c['summary']}")
        span = f"{when(c['first'])}-{when(c['last'])}" if c["first"] else "time unknown"
        addrs = ", ".join(f"{a['address']} ({a['refusals']})" for a in c["addresses"][:5])
        paths = ", ".join(f"{p['path']} ({p['refusals']})" for p in c["paths"][:5])
        rows.append(f"    {span} via {', '.join(c['servers'])}; from {addrs}")
        rows.append(f"    paths: {paths}")
        for n in c["notes"][:5]:
            rows.append(f"    - {n}")
    if not report["causes"]:
        rows.append("no refusals in this window")
    for s in report["sources"]:
        state = f"error: {s['error']}" if s["error"] else f"{s['refusals']} refusals"
        rows.append(f"source {s['name']}: {s['lines']} lines read, {state}")
    for warn in report["warnings"]:
        rows.append(f"warning: {warn}")
    rows.append(f"verdict: {report['verdict']['state']}")
    return "\n".join(rows)


# -- Ganesha's log level ----------------------------------------------------------------

LEVELS = (
    "NIV_NULL",
    "NIV_FATAL",
    "NIV_MAJ",
    "NIV_CRIT",
    "NIV_WARN",
    "NIV_EVENT",
    "NIV_INFO",
    "NIV_DEBUG",
    "NIV_MID_DEBUG",
    "NIV_FULL_DEBUG",
)
RAISE_AT_RUNTIME = (
    "dbus-send --system --print-reply --dest=org.ganesha.nfsd /org/ganesha/nfsd/admin "
    "org.freedesktop.DBus.Properties.Set string:org.ganesha.nfsd.log.component "
    "string:COMPONENT_EXPORT variant:string:NIV_INFO"
)


def _sees(level: str | None) -> bool:
    return level in LEVELS and LEVELS.index(level) >= LEVELS.index("NIV_INFO")


def log_level_warnings(levels: Mapping[str, str] | str) -> list[str]:
    """What Ganesha's log levels hide: its refusals are INFO lines.  ``EXPORT = INFO``
    shows all three kinds (tagged :EXPORT); NFSPROTO and NFS_V4 at INFO show new v3 and
    v4 mounts, not v3 requests on held mounts."""
    fix = (
        "raise it in ganesha.conf (LOG { COMPONENTS { EXPORT = INFO; } }) or now, without "
        f"a restart: {RAISE_AT_RUNTIME}"
    )
    if isinstance(levels, str):
        return [
            f"Ganesha's log level could not be read over DBus ({levels}); refusals are "
            f"INFO lines, invisible at the default level: if none show, {fix}"
        ]
    export = levels.get("COMPONENT_EXPORT")
    if _sees(export):
        return []
    v3, v4 = _sees(levels.get("COMPONENT_NFSPROTO")), _sees(levels.get("COMPONENT_NFS_V4"))
    if v3 and v4:
        return [
            f"Ganesha's log level hides v3 requests on mounts already made (COMPONENT_EXPORT "
            f"is {export}): new mounts are logged; to see them all, {fix}"
        ]
    hidden = ", ".join(
        f"{c} {levels.get(c)}"
        for c in ("COMPONENT_EXPORT", "COMPONENT_NFSPROTO", "COMPONENT_NFS_V4")
    )
    return [f"Ganesha's log level is too low to see refusals ({hidden}; refusals are INFO): {fix}"]
