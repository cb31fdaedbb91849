"""``explain IP`` and ``explain --project P``: why an address can (or cannot) mount what.

The outage behind ``000_88c8ab861809594e`` took an hour to diagnose because nobody could
say quickly whose an address was and why it was refused.  These answers are built (pure
functions) from the same facts and plan as ``plan``: the files in force, a fresh read of
the inventory, the removal counters, and the journal for "since when".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..addresses import client_covers
from ..decide import Action, Plan, Reason
from ..decide.reconcile import PUBLIC_OWNER_PREFIX
from ..memory.journal import Entry
from ..model import ExportsFile, FileKind, InventorySnapshot, ServedExport


@dataclass(frozen=True)
class Context:
    in_force: Mapping[str, ExportsFile]
    snapshot: InventorySnapshot
    served: Mapping[str, tuple[ServedExport, ...]]
    plan: Plan
    journal: Sequence[Entry]
    confirmations: int
    known_ids: Mapping[str, str] = field(default_factory=dict)  # name -> Keystone id seen


def _owner(f: ExportsFile) -> str:
    return f.owner if f.is_project else PUBLIC_OWNER_PREFIX + f.owner


def _since(ctx: Context, owner: str, path: str, client: str) -> tuple[float | None, str]:
    """When the pair was last added, from the journal (newest first)."""
    for e in reversed(ctx.journal):
        if e.kind == "baseline":
            continue
        for p in e.added:
            if (p.project, p.path, p.client) == (owner, path, client):
                return e.time, f"journal entry {e.id} ({p.reason})"
    if ctx.journal:
        return None, "before the journal began"
    return None, "unknown (no journal yet)"


def _has_file(ctx: Context, project: str) -> bool:
    f = ctx.in_force.get(FileKind.PROJECT.filename(project))
    return f is not None and f.is_project


def _instances_with(snap: InventorySnapshot, ip: str) -> list[dict[str, Any]]:
    out = []
    for project, insts in sorted(snap.instances.items()):
        for inst in insts:
            if any(str(a) == ip for a in inst.addresses):
                rec = snap.projects.get(project) if snap.projects else None
                out.append(
                    {
                        "project": project,
                        "project_id": rec.id if rec else None,
                        "instance_id": inst.id,
                        "instance_name": inst.name,
                        "status": inst.status,
                    }
                )
    return out


def explain_ip(ctx: Context, text: str) -> dict[str, Any]:
    ip = ipaddress.ip_address(text.strip())
    canon = str(ip)
    snap = ctx.snapshot
    exports = []
    for name, f in sorted(ctx.in_force.items()):
        for line in f.lines:
            for client in line.clients:
                if client == canon or (not f.is_project and client_covers(client, ip)):
                    t, how = _since(ctx, _owner(f), line.path, client)
                    exports.append(
                        {
                            "file": name,
                            "kind": f.kind.value,
                            "owner": f.owner,
                            "path": line.path,
                            "options": line.options,
                            "client": client,
                            "since": t,
                            "since_source": how,
                        }
                    )
    owners = _instances_with(snap, canon)
    changes = [c.to_dict() for c in ctx.plan.changes if c.client == canon]
    holds = [h.to_dict() for h in ctx.plan.holds if h.client == canon]
    global_holds = [h.to_dict() for h in ctx.plan.holds if h.client is None and h.project is None]
    reasons = _why(ctx, canon, exports, owners, changes, holds)
    return {
        "schema": 1,
        "ip": canon,
        "exports": exports,
        "instances": owners,
        "inventory": {
            "source": snap.source,
            "complete": snap.listing_complete,
            "problem": snap.problem,
            "incomplete_projects": sorted(
                p
                for p in snap.incomplete
                if p in {o["project"] for o in owners} | {e["owner"] for e in exports}
            ),
        },
        "pending_changes": changes,
        "holds": holds,
        "global_holds": global_holds,
        "explanation": reasons,
    }


def _why(
    ctx: Context,
    ip: str,
    exports: list[dict[str, Any]],
    owners: list[dict[str, Any]],
    changes: list[dict[str, str]],
    holds: list[dict[str, Any]],
) -> list[str]:
    out: list[str] = []
    snap = ctx.snapshot
    projects = sorted({o["project"] for o in owners})
    if len(projects) > 1:
        out.append(
            f"{ip} is claimed by instances of several projects ({', '.join(projects)}): "
            "it is exported for none of their private volumes (ip-conflict)"
        )
    for o in owners:
        served = ctx.served.get(o["project"], ())
        who = f"instance {o['instance_name']} ({o['instance_id']}) of project {o['project']}"
        in_force = _has_file(ctx, o["project"])
        if not served and in_force:
            out.append(
                f"{ip} is {who}, whose volumes are no longer served here (projects file or "
                "serve.hosts); their exports in force wait for their confirmations"
            )
        elif not served:
            out.append(f"{ip} is {who}, which has no volumes on this server")
        else:
            out.append(f"{ip} is {who} (status {o['status']})")
    if not owners and ip in snap.floating:
        out.append(
            f"{ip} is a floating IP of {snap.floating[ip]}: floating IPs are not exported "
            "(inventory.include_floating_ips is off; NFS traffic from the instance comes "
            "from its fixed address)"
        )
    elif not owners:
        if snap.listing_complete and not snap.incomplete:
            out.append(f"{ip} is not an address of any instance in the complete inventory")
        elif snap.listing_complete:
            out.append(
                f"{ip} is not an address of any instance the inventory could read; "
                f"unknown for: {', '.join(sorted(snap.incomplete))}"
            )
        else:
            out.append(f"{ip}: the inventory is unknown ({snap.problem}), so its owner is too")
    for e in exports:
        if e["kind"] == FileKind.PROJECT.value and owners and e["owner"] not in projects:
            out.append(
                f"{ip} is exported for project {e['owner']} ({e['path']}) but belongs to "
                f"{', '.join(projects)} now: it leaves at the next cycle (ip-conflict)"
            )
    involved = {o["project"] for o in owners} | {e["owner"] for e in exports}
    for ph in ctx.plan.holds:
        if ph.client is None and ph.project in involved:
            out.append(f"held for project {ph.project} ({ph.reason.value}): {ph.detail}")
    for c in changes:
        verb = {"add": "will be added to", "remove": "will be removed from"}.get(
            c["action"], "will get new options on"
        )
        out.append(f"next cycle: {verb} {c['project']} {c['path']} ({c['reason']})")
    for h in holds:
        act = {"add": "addition to", "remove": "removal from", "update": "option update on"}.get(
            h.get("action") or "", "change to"
        )
        if h["project"] is None:
            out.append(f"held ({h['reason']}): {h['detail']}")
        elif h["reason"] == Reason.PENDING_CONFIRMATION.value and "Keystone listings" in str(
            h["detail"]
        ):  # the project is absent: its detail says the count and the age it waits for
            out.append(f"pending {act} {h['project']} {h['path']}: {h['detail']}")
        elif h["reason"] == Reason.PENDING_CONFIRMATION.value:
            out.append(
                f"pending {act} {h['project']} {h['path']}: {h['detail']}, counting this "
                f"cycle (it goes after {ctx.confirmations} complete cycles without it)"
            )
        else:
            out.append(f"held {act} {h['project']} {h['path']} ({h['reason']}): {h['detail']}")
    if not exports and not changes and not holds and owners and len(projects) == 1:
        project = projects[0]
        if ctx.served.get(project) and project in snap.incomplete:
            out.append(
                f"project {project}'s instances could not be read: {snap.incomplete[project]}"
            )
    if (
        exports
        and not changes
        and not any(h["action"] == Action.REMOVE.value for h in holds if h.get("action"))
    ):
        out.append(f"{ip} has {len(exports)} export(s) in force and keeps them")
    return out


def explain_project(ctx: Context, project: str) -> dict[str, Any]:
    snap = ctx.snapshot
    rec = snap.projects.get(project) if snap.projects else None
    in_force = ctx.in_force.get(FileKind.PROJECT.filename(project))
    if in_force is not None and not in_force.is_project:
        in_force = None  # e.g. a Keystone project named like a public export's file
    lines = {ln.path: ln for ln in in_force.lines} if in_force else {}
    volumes = []
    for exp in ctx.served.get(project, ()):
        ln = lines.get(exp.path)
        volumes.append(
            {
                "volume": exp.volume,
                "path": exp.path,
                "options": exp.options,
                "options_in_force": ln.options if ln else None,
                "clients": list(ln.clients) if ln else [],
            }
        )
    served_paths = {e.path for e in ctx.served.get(project, ())}
    for path, ln in sorted(lines.items()):
        if path not in served_paths:
            volumes.append(
                {
                    "volume": None,
                    "path": path,
                    "options": None,
                    "options_in_force": ln.options,
                    "clients": list(ln.clients),
                    "note": "in force but no longer served here",
                }
            )
    exported = {c for ln in lines.values() for c in ln.clients}
    instances = [
        {
            "instance_id": i.id,
            "instance_name": i.name,
            "status": i.status,
            "addresses": [str(a) for a in i.addresses],
            "exported": [str(a) for a in i.addresses if str(a) in exported],
        }
        for i in snap.instances.get(project, ())
    ]
    renamed = None
    if rec is None and snap.listing_complete and project in ctx.known_ids:
        pid = ctx.known_ids[project]
        renamed = next((p for p in (snap.projects or {}).values() if p.id == pid), None)
    if not snap.listing_complete:
        known = f"unknown: the project listing could not be read ({snap.problem})"
    elif renamed is not None:
        known = (
            f"renamed to {renamed.name!r} in Keystone (same id): its exports stay until the "
            f"projects file names {renamed.name!r}"
        )
    elif rec is None:
        known = "not in the project listing (deleted, or renamed)"
    elif project in snap.incomplete:
        known = f"unknown: its instances could not be read ({snap.incomplete[project]})"
    else:
        known = "complete"
    return {
        "schema": 1,
        "project": project,
        "project_id": rec.id if rec else (renamed.id if renamed else None),
        "enabled": rec.enabled if rec else (renamed.enabled if renamed else None),
        "exists": bool(
            rec or renamed or in_force or ctx.served.get(project) or not snap.listing_complete
        ),
        "inventory": known,
        "served_here": bool(ctx.served.get(project)),
        "file": in_force.filename if in_force else None,
        "volumes": volumes,
        "instances": instances,
        "pending_changes": [c.to_dict() for c in ctx.plan.changes if c.project == project],
        "holds": [h.to_dict() for h in ctx.plan.holds if h.project == project],
    }


def ip_text(r: Mapping[str, Any]) -> str:
    rows = [f"{r['ip']}:"]
    for e in r["exports"]:
        since = e["since_source"]
        if e["since"] is not None:
            import time

            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["since"])) + f", {since}"
        who = e["owner"] if e["kind"] == FileKind.PROJECT.value else f"public {e['owner']}"
        rows.append(f"  exported: {e['path']} ({who}, -{e['options']}) since {since}")
    if not r["exports"]:
        rows.append("  no exports on this server")
    for line in r["explanation"]:
        rows.append(f"  - {line}")
    return "\n".join(rows)


def project_text(r: Mapping[str, Any]) -> str:
    state = "enabled" if r["enabled"] else ("disabled" if r["enabled"] is False else "?")
    rows = [
        f"project {r['project']} (id {r['project_id'] or '?'}, {state}); inventory: "
        f"{r['inventory']}"
    ]
    if not r["served_here"]:
        if r["volumes"]:
            rows.append("  no longer served here (projects file or serve.hosts); in force:")
        else:
            rows.append("  no volumes on this server")
    for v in r["volumes"]:
        opts = v["options_in_force"] or v["options"]
        note = f"  [{v['note']}]" if v.get("note") else ""
        rows.append(f"  {v['volume'] or '-'}: {v['path']} -{opts}{note}")
        if v["options"] and v["options_in_force"] and v["options"] != v["options_in_force"]:
            rows.append(f"      options will change to -{v['options']}")
        rows.append(f"      clients: {' '.join(v['clients']) or '(none)'}")
    for i in r["instances"]:
        mark = "exported" if i["exported"] else "not exported"
        addrs = " ".join(i["addresses"]) or "(no addresses)"
        status = i["status"]
        if status == "UNLISTED":
            status = "not in Nova's listing"
        elif status == "UNKNOWN":
            status = "UNKNOWN: in a down Nova cell"
        rows.append(
            f"  instance {i['instance_name'] or '(no name)'} ({i['instance_id']}, {status}): "
            f"{addrs} [{mark}]"
        )
    for c in r["pending_changes"]:
        rows.append(f"  next cycle: {c['action']} {c['path']} {c['client']} ({c['reason']})")
    for h in r["holds"]:
        what = " ".join(x for x in (h["path"], h["client"]) if x)
        rows.append(f"  held: {what} ({h['reason']}) {h['detail']}")
    return "\n".join(rows)
