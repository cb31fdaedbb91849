"""The decide layer from data fixtures: ``tests/decide_cases/*.yaml``, one case per file.

Every expected plan in those files is written by hand from the rules (issue 2, the README's
rules, the decide module docstrings); never regenerate them from the code's output.  When the code
and a case disagree, fix the code or argue the rule, do not copy the actual output.

Case schema (keys not listed are an error)::

    description: one line saying what the case is about            (required)
    private:            # project -> its exports served here         (default {})
      tools:
        - {volume: home, path: /srv/tools/home, options: "..."}    # options: DEFAULT_OPTIONS
    public:             # public exports from the config             (default [])
      - {name: scratch, path: /srv/scratch, clients: [CIDR, ...], options: "..."}
    inventory:          # either the whole read is unknown ...
      unknown: "why"
    inventory:          # ... or a listing
      projects: [tools, {id: x, name: web, enabled: true}]
      instances: {tools: [[ADDR, ...], ...]}   # one inner list per instance
      incomplete: {tools: "why"}               # projects whose instance data is unknown
    in_force:           # managed files in force: filename -> file   (default {})
      tools.exports:    # kind/owner default from the name (public-NAME.exports -> public)
        lines: [{path: ..., options: "...", clients: [...]}]
    unmanaged: [tools.exports]    # *.exports present without our header
    counters: [{owner, path, client, missing}]   # owner: project or "public:NAME"
    missing_paths: [/srv/...]
    state_problem: "why the counters could not be read"
    policy: {confirmations, max_removal_fraction, min_removal_count,
             maintenance: off|hold|freeze, force,
             removal_min_age, disabled_projects: keep|remove,
             rollback_hold: null|"why", max_project_deletions,
             project_deletion_window, max_project_shrink_fraction,
             project_shrink_min_count, confirmation_spacing}   # defaults: DEFAULT_POLICY
    memory:             # what earlier cycles remembered              (default empty)
      absent: {tools: {since: 9000, cycles: 2}}  # project absent from complete listings
      known_ids: {tools: id-tools}               # name -> id (listing; bound for ours)
      instances: {tools: 2}                      # instance counts, last complete listing
      deletions: {old: 9500}                     # project deletions applied, and when
      last_counted: 9990                         # the last cycle that counted
    pinned_ids: {tools: id-tools}   # the projects file's id: per project  (default {})
    now: 10000          # the cycle's clock                           (default 0)
    expect:             # four keys required, write [] / {} for "none"
      changes: [{project, path, client, action, reason}]   # compared as a multiset
      holds: [{reason, project, path, client}]             # multiset, detail text ignored
      files:            # every managed file of the plan; absent = not in the plan at all
        tools.exports: {/srv/tools/home: [clients in file order]}   # {} = header only
        old.exports: null                                          # deleted
        # a path may also be {options: "...", clients: [...]} to check the options
      counters: [{owner, path, client, missing}]           # exactly the counters to persist
      memory: {absent: ..., known_ids: ..., instances: ...}  # optional: the parts given
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from nfs_exportd.decide import Action, Change, DecideInput, Plan, Policy, Reason, decide
from nfs_exportd.decide.lifecycle import Absence, Memory
from nfs_exportd.model import (
    EXPORTS_SUFFIX,
    PUBLIC_FILE_PREFIX,
    ExportLine,
    ExportsFile,
    FileKind,
    InstanceRecord,
    InventorySnapshot,
    Maintenance,
    PairKey,
    ProjectRecord,
    PublicExport,
    ServedExport,
)

CASES_DIR = Path(__file__).resolve().parent / "decide_cases"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))

DEFAULT_OPTIONS = "rw,sync,no_subtree_check,root_squash"
# Written out here (not taken from Policy()) so a changed code default cannot move the cases.
DEFAULT_POLICY: dict[str, Any] = {
    "confirmations": 3,
    "max_removal_fraction": 0.25,
    "min_removal_count": 10,
    "maintenance": "off",
    "force": False,
    "removal_min_age": 0,
    "disabled_projects": "keep",
    "rollback_hold": None,
    "max_project_deletions": 2,
    "project_deletion_window": 86400,
    "max_project_shrink_fraction": 0.5,
    "project_shrink_min_count": 2,
    "confirmation_spacing": 0,
}
CASE_KEYS = {
    "description",
    "private",
    "public",
    "inventory",
    "in_force",
    "unmanaged",
    "counters",
    "missing_paths",
    "state_problem",
    "policy",
    "memory",
    "pinned_ids",
    "now",
    "expect",
}
EXPECT_KEYS = {"changes", "holds", "files", "counters", "memory"}


# --------------------------------------------------------------------------- loading


def _text(value: Any, where: str) -> str:
    """Every address, path and name in a case must be a YAML string (no float surprises)."""
    if not isinstance(value, str):
        raise TypeError(f"{where}: expected a string, got {value!r}")
    return value


def load_case(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text())
    assert isinstance(case, dict), f"{path.name}: not a mapping"
    unknown = set(case) - CASE_KEYS
    assert not unknown, f"{path.name}: unknown keys {sorted(unknown)}"
    desc = case.get("description")
    assert isinstance(desc, str) and desc.strip() and "\n" not in desc.strip(), (
        f"{path.name}: needs a one-line description"
    )
    assert "inventory" in case, f"{path.name}: inventory is required"
    expect = case.get("expect")
    assert isinstance(expect, dict) and set(expect) - {"memory"} == EXPECT_KEYS - {"memory"}, (
        f"{path.name}: expect needs exactly {sorted(EXPECT_KEYS - {'memory'})} (+ memory)"
    )
    return case


def _file_identity(filename: str) -> tuple[FileKind, str]:
    assert filename.endswith(EXPORTS_SUFFIX), filename
    stem = filename[: -len(EXPORTS_SUFFIX)]
    if stem.startswith(PUBLIC_FILE_PREFIX):
        return FileKind.PUBLIC, stem[len(PUBLIC_FILE_PREFIX) :]
    return FileKind.PROJECT, stem


def _snapshot(inv: dict[str, Any]) -> InventorySnapshot:
    if "unknown" in inv:
        assert set(inv) == {"unknown"}, "inventory: 'unknown' stands alone"
        return InventorySnapshot.unknown("static", _text(inv["unknown"], "inventory.unknown"))
    assert set(inv) <= {"projects", "instances", "incomplete"}, f"inventory keys {sorted(inv)}"
    projects: dict[str, ProjectRecord] = {}
    for p in inv.get("projects") or []:
        if isinstance(p, str):
            p = {"id": f"id-{p}", "name": p, "enabled": True}
        rec = ProjectRecord(str(p["id"]), _text(p["name"], "project name"), p.get("enabled", True))
        projects[rec.name] = rec
    instances: dict[str, tuple[InstanceRecord, ...]] = {}
    for project, insts in (inv.get("instances") or {}).items():
        recs = []
        for i, addrs in enumerate(insts or []):
            parsed = tuple(ipaddress.ip_address(_text(a, f"{project} address")) for a in addrs)
            recs.append(
                InstanceRecord(f"i-{project}-{i}", f"{project}-{i}", project, "ACTIVE", parsed)
            )
        instances[project] = tuple(recs)
    incomplete = {k: _text(v, f"incomplete.{k}") for k, v in (inv.get("incomplete") or {}).items()}
    return InventorySnapshot(
        source="static", projects=projects, instances=instances, incomplete=incomplete
    )


def _pair_key(c: dict[str, Any]) -> PairKey:
    return PairKey(
        _text(c["owner"], "counter owner"),
        _text(c["path"], "counter path"),
        _text(c["client"], "counter client"),
    )


def build_input(case: dict[str, Any]) -> DecideInput:
    private = {
        project: tuple(
            ServedExport(
                project,
                _text(e["volume"], "volume"),
                _text(e["path"], "path"),
                _text(e.get("options", DEFAULT_OPTIONS), "options"),
            )
            for e in exports
        )
        for project, exports in (case.get("private") or {}).items()
    }
    public = tuple(
        PublicExport(
            _text(p["name"], "public name"),
            _text(p["path"], "public path"),
            tuple(str(ipaddress.ip_network(_text(c, "public client"))) for c in p["clients"]),
            _text(p.get("options", DEFAULT_OPTIONS), "public options"),
        )
        for p in case.get("public") or []
    )
    in_force: dict[str, ExportsFile] = {}
    for fname, spec in (case.get("in_force") or {}).items():
        kind, owner = _file_identity(fname)
        lines = tuple(
            ExportLine(
                _text(ln["path"], "in_force path"),
                _text(ln.get("options", DEFAULT_OPTIONS), "in_force options"),
                tuple(_text(c, "in_force client") for c in ln["clients"]),
            )
            for ln in spec.get("lines") or []
        )
        in_force[fname] = ExportsFile(
            fname, spec.get("kind", kind), spec.get("owner", owner), lines, spec.get("keystone_id")
        )
    counters: dict[PairKey, int] = {}
    for c in case.get("counters") or []:
        counters[_pair_key(c)] = int(c["missing"])
    return DecideInput(
        private=private,
        public=public,
        snapshot=_snapshot(case["inventory"]),
        in_force=in_force,
        unmanaged=frozenset(case.get("unmanaged") or ()),
        counters=counters,
        missing_paths=frozenset(case.get("missing_paths") or ()),
        state_problem=case.get("state_problem"),
        memory=build_memory(case.get("memory") or {}),
        now=float(case.get("now", 0)),
        pinned_ids={str(k): str(v) for k, v in (case.get("pinned_ids") or {}).items()},
    )


def build_memory(spec: dict[str, Any]) -> Memory:
    """``{absent: {NAME: {since, cycles}}, known_ids: {NAME: ID}, instances: {NAME: N}}``"""
    return Memory(
        absent={
            n: Absence(float(a["since"]), int(a["cycles"]))
            for n, a in (spec.get("absent") or {}).items()
        },
        known_ids=dict(spec.get("known_ids") or {}),
        instances={n: int(v) for n, v in (spec.get("instances") or {}).items()},
        deletions={n: float(t) for n, t in (spec.get("deletions") or {}).items()},
        last_counted=None if spec.get("last_counted") is None else float(spec["last_counted"]),
    )


def build_policy(case: dict[str, Any]) -> Policy:
    spec = {**DEFAULT_POLICY, **(case.get("policy") or {})}
    assert set(spec) == set(DEFAULT_POLICY), f"policy keys {sorted(spec)}"
    return Policy(
        confirmations=int(spec["confirmations"]),
        max_removal_fraction=float(spec["max_removal_fraction"]),
        min_removal_count=int(spec["min_removal_count"]),
        maintenance=Maintenance(spec["maintenance"]),
        force=bool(spec["force"]),
        removal_min_age=float(spec["removal_min_age"]),
        disabled_projects=str(spec["disabled_projects"]),
        rollback_hold=spec["rollback_hold"],
        max_project_deletions=int(spec["max_project_deletions"]),
        project_deletion_window=float(spec["project_deletion_window"]),
        max_project_shrink_fraction=float(spec["max_project_shrink_fraction"]),
        project_shrink_min_count=int(spec["project_shrink_min_count"]),
        confirmation_spacing=float(spec["confirmation_spacing"]),
    )


# --------------------------------------------------------------------------- comparing

ChangeRow = tuple[str, str, str, str, str]
HoldRow = tuple[str, str | None, str | None, str | None]


def _sorted_rows(rows: list[Any]) -> list[Any]:
    return sorted(rows, key=lambda r: tuple("" if x is None else x for x in r))


def expected_changes(case: dict[str, Any]) -> list[ChangeRow]:
    rows = []
    for c in case["expect"]["changes"]:
        assert set(c) == {"project", "path", "client", "action", "reason"}, c
        Action(c["action"])  # only values of the contract: raises otherwise
        Reason(c["reason"])
        rows.append(
            (
                _text(c["project"], "project"),
                _text(c["path"], "path"),
                _text(c["client"], "client"),
                c["action"],
                c["reason"],
            )
        )
    return _sorted_rows(rows)


def actual_changes(plan: Plan) -> list[ChangeRow]:
    rows = [(c.project, c.path, c.client, c.action.value, c.reason.value) for c in plan.changes]
    return _sorted_rows(rows)


def expected_holds(case: dict[str, Any]) -> list[HoldRow]:
    rows = []
    for h in case["expect"]["holds"]:
        assert set(h) == {"reason", "project", "path", "client"}, h
        Reason(h["reason"])
        rows.append((h["reason"], h["project"], h["path"], h["client"]))
    return _sorted_rows(rows)


def actual_holds(plan: Plan) -> list[HoldRow]:
    return _sorted_rows([(h.reason.value, h.project, h.path, h.client) for h in plan.holds])


def expected_files(case: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fname, paths in case["expect"]["files"].items():
        if paths is None:
            out[fname] = None
            continue
        out[fname] = {}
        for path, spec in paths.items():
            if isinstance(spec, dict):
                assert set(spec) == {"options", "clients"}, spec
                clients, options = spec["clients"], spec["options"]
            else:
                clients, options = spec, None
            out[fname][path] = {
                "clients": [_text(c, f"{fname} {path} client") for c in clients],
                "options": options,
            }
    return out


def actual_files(plan: Plan, expected: dict[str, Any]) -> dict[str, Any]:
    """The plan's files in the shape of ``expected`` (options only where the case asks)."""
    out: dict[str, Any] = {}
    for fname, f in plan.files.items():
        if f is None:
            out[fname] = None
            continue
        kind, owner = _file_identity(fname)
        assert (f.filename, f.kind, f.owner) == (fname, kind, owner), f
        exp = expected.get(fname) or {}
        out[fname] = {}
        for line in f.lines:
            want_opts = (exp.get(line.path) or {}).get("options")
            out[fname][line.path] = {
                "clients": list(line.clients),
                "options": line.options if want_opts is not None else None,
            }
    return out


def expected_counters(case: dict[str, Any]) -> dict[PairKey, int]:
    return {_pair_key(c): int(c["missing"]) for c in case["expect"]["counters"]}


def run_case(path: Path) -> tuple[dict[str, Any], Plan]:
    case = load_case(path)
    return case, decide(build_input(case), build_policy(case))


# --------------------------------------------------------------------------- tests


def test_enough_cases() -> None:
    assert len(CASE_FILES) >= 28
    assert len({p.stem for p in CASE_FILES}) == len(CASE_FILES)


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_decide_case(path: Path) -> None:
    case, plan = run_case(path)
    exp_files = expected_files(case)
    comparisons: list[tuple[str, object, object]] = [
        ("changes", expected_changes(case), actual_changes(plan)),
        ("holds", expected_holds(case), actual_holds(plan)),
        ("files", exp_files, actual_files(plan, exp_files)),
        ("counters", expected_counters(case), dict(plan.counters)),
    ]
    if "memory" in case["expect"]:  # only the parts a case names
        want = build_memory(case["expect"]["memory"])
        for part in case["expect"]["memory"]:
            exp, act = getattr(want, part), getattr(plan.memory, part)
            if part != "last_counted":
                exp, act = dict(exp), dict(act)
            comparisons.append((f"memory.{part}", exp, act))
    problems = [
        f"{what}:\n  expected {exp}\n  actual   {act}"
        for what, exp, act in comparisons
        if exp != act
    ]
    assert not problems, f"{path.name}: {case['description']}\n" + "\n".join(problems)


# --------------------------------------------------------------------------- plan JSON contract


def _canonical_checksum(changes: list[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON of the changes, computed independently of plan.py."""
    rows = sorted(
        changes,
        key=lambda c: tuple(c[k] for k in ("project", "path", "client", "action", "reason")),
    )
    canonical = json.dumps(rows, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_plan_json_contract_shape() -> None:
    _, plan = run_case(CASES_DIR / "11_maintenance_hold.yaml")
    doc = plan.to_json()
    assert json.loads(json.dumps(doc)) == doc  # plain JSON values only
    assert set(doc) == {"schema", "checksum", "changes", "holds"}
    assert doc["schema"] == 1
    assert doc["changes"] == [
        {
            "project": "tools",
            "path": "/srv/tools/home",
            "client": "10.0.0.8",
            "action": "add",
            "reason": "new-instance",
        }
    ]
    assert len(doc["holds"]) == 2
    for hold in doc["holds"]:
        # the contract's keys; "action" is a documented extension
        assert (
            {"reason", "project", "path", "client", "detail"}
            <= set(hold)
            <= {
                "reason",
                "project",
                "path",
                "client",
                "detail",
                "action",
            }
        )
        assert isinstance(hold["detail"], str) and hold["detail"]
    assert {h["reason"] for h in doc["holds"]} == {"maintenance", "pending-confirmation"}
    assert doc["checksum"] == _canonical_checksum(doc["changes"])
    assert doc["checksum"] == plan.checksum
    assert len(doc["checksum"]) == 64 and int(doc["checksum"], 16) >= 0


def test_plan_json_with_no_changes_has_checksum_of_empty_list() -> None:
    _, plan = run_case(CASES_DIR / "06_pair_reappears_counter_reset.yaml")
    doc = plan.to_json()
    assert doc["changes"] == [] and doc["holds"] == []
    assert doc["checksum"] == hashlib.sha256(b"[]").hexdigest()


def test_checksum_changes_when_a_change_differs() -> None:
    _, plan = run_case(CASES_DIR / "14_too_much_change_forced.yaml")
    base = plan.checksum
    assert base == _canonical_checksum(plan.to_json()["changes"])
    # the order in which changes are listed does not matter ...
    assert replace(plan, changes=tuple(reversed(plan.changes))).checksum == base
    # ... but every field of every change does
    first = plan.changes[0]
    variants = [
        replace(first, client="10.0.0.99"),
        replace(first, path="/srv/tools/other"),
        replace(first, project="web"),
        replace(first, reason=Reason.NEW_EXPORT),
        replace(first, action=Action.REMOVE if first.action is Action.ADD else Action.ADD),
    ]
    seen = {base}
    for variant in variants:
        other = replace(plan, changes=(variant, *plan.changes[1:]))
        assert other.checksum not in seen, variant
        seen.add(other.checksum)
    # dropping or adding a change differs too
    assert replace(plan, changes=plan.changes[1:]).checksum not in seen
    extra = Change("tools", "/srv/tools/home", "10.0.0.42", Action.ADD, Reason.NEW_INSTANCE)
    assert replace(plan, changes=(*plan.changes, extra)).checksum not in seen


def test_checksum_differs_between_decisions_on_different_inputs() -> None:
    """Same case, one address different in the listing: a different plan, a different checksum."""
    case = load_case(CASES_DIR / "02_instance_added.yaml")
    plan_a = decide(build_input(case), build_policy(case))
    case["inventory"]["instances"]["tools"][1] = ["10.0.0.8"]
    plan_b = decide(build_input(case), build_policy(case))
    assert plan_a.checksum != plan_b.checksum
    assert plan_a.checksum == decide(*_rebuilt(CASES_DIR / "02_instance_added.yaml")).checksum


def _rebuilt(path: Path) -> tuple[DecideInput, Policy]:
    case = load_case(path)
    return build_input(case), build_policy(case)
