"""The phases of ``decide``, one at a time: given these values, expect this.

``tests/decide_cases`` checks whole plans; these pin what each named phase (timing,
claims, owners, intent, diff, bounds, target files, the guard, remember) owns, so that a
rule broken in one phase is named by the phase's own test.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nfs_exportd.decide.bounds import bound_removals
from nfs_exportd.decide.claims import (
    FOREIGN,
    Ownership,
    address_claims,
    conflict_holds,
)
from nfs_exportd.decide.context import Cycle
from nfs_exportd.decide.diff import PathOutcome, diff_file
from nfs_exportd.decide.inputs import DecideInput, Policy
from nfs_exportd.decide.intent import Intent, project_intent, public_intent
from nfs_exportd.decide.lifecycle import Absence, Memory, Status, Verdict
from nfs_exportd.decide.owners import (
    Owner,
    owners_to_consider,
    project_names,
    served_for,
)
from nfs_exportd.decide.plan import Action, Change, Reason
from nfs_exportd.decide.remember import next_counters, next_memory, timing
from nfs_exportd.decide.target import (
    FilePlan,
    PlanBug,
    check_one_owner_per_path,
    target_files,
)
from nfs_exportd.model import (
    AddressClaim,
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

OPTS = "rw,sync,no_subtree_check,root_squash"
TOOLS = Owner(FileKind.PROJECT, "tools")
HOME = "/srv/tools/home"


def snapshot(
    instances: dict[str, list[str]],
    *,
    disabled: tuple[str, ...] = (),
    incomplete: dict[str, str] | None = None,
    claims: dict[str, tuple[AddressClaim, ...]] | None = None,
    listed: tuple[str, ...] = (),
) -> InventorySnapshot:
    names = sorted(set(instances) | set(listed) | set(disabled))
    return InventorySnapshot(
        source="test",
        projects={n: ProjectRecord(f"id-{n}", n, n not in disabled) for n in names},
        instances={
            p: tuple(
                InstanceRecord(f"i-{p}-{k}", f"{p}-{k}", p, "ACTIVE", (ipaddress.ip_address(a),))
                for k, a in enumerate(addrs)
            )
            for p, addrs in instances.items()
        },
        incomplete=incomplete or {},
        claims=claims or {},
    )


def in_force(owner: str, *lines: tuple[str, tuple[str, ...]], kind: FileKind = FileKind.PROJECT):
    fname = owner + ".exports" if kind == FileKind.PROJECT else f"public-{owner}.exports"
    return ExportsFile(fname, kind, owner, tuple(ExportLine(p, OPTS, c) for p, c in lines))


def cycle(
    snap: InventorySnapshot,
    *,
    private: dict[str, tuple[str, ...]] | None = None,
    counting: bool = True,
    policy: Policy | None = None,
    **inp_kw: object,
) -> Cycle:
    priv = {
        p: tuple(ServedExport(p, f"v{i}", path, OPTS) for i, path in enumerate(paths))
        for p, paths in (private if private is not None else {"tools": (HOME,)}).items()
    }
    inp = DecideInput(private=priv, public=(), snapshot=snap, in_force={}, **inp_kw)  # type: ignore[arg-type]
    claims = address_claims(snap)
    ownership = Ownership(snap, claims, {r.name: r.id for r in (snap.projects or {}).values()})
    return Cycle(inp, policy or Policy(), ownership, counting, served_for(priv, ()))


# ------------------------------------------------------------------------------ timing


def test_timing_a_cycle_too_soon_after_the_last_counted_does_not_count() -> None:
    snap = snapshot({"tools": []})
    inp = DecideInput({}, (), snap, {}, memory=Memory(last_counted=100.0), now=110.0)
    when = timing(inp, Policy(confirmation_spacing=30))
    assert (when.complete, when.counting) == (True, False)
    assert when.note is not None and "10.0 s" in when.note


def test_timing_default_spacing_counts_every_regular_cycle_and_no_early_one() -> None:
    """The default spacing is bound to run's jitter: the soonest regular cycle (0.9 x the
    interval after the last) counts; an early cycle (a notification, change polling, a
    retry) at any point before it does not, so triggers never confirm faster than polling
    (half the interval, the old default, let a stream of triggers confirm twice as fast)."""
    from nfs_exportd.config import Config
    from nfs_exportd.cycle import JITTER, confirmation_spacing

    interval = 60.0
    spacing = confirmation_spacing(Config.model_construct(interval_seconds=interval))
    snap = snapshot({"tools": []})
    for gap, counts in ((JITTER[0] * interval, True), (interval, True), (0.6 * interval, False)):
        inp = DecideInput({}, (), snap, {}, memory=Memory(last_counted=1000.0), now=1000.0 + gap)
        assert timing(inp, Policy(confirmation_spacing=spacing)).counting is counts, gap


def test_timing_a_clock_that_went_back_counts_and_freeze_never_does() -> None:
    snap = snapshot({"tools": []})
    inp = DecideInput({}, (), snap, {}, memory=Memory(last_counted=100.0), now=50.0)
    assert timing(inp, Policy(confirmation_spacing=30)).counting
    frozen = timing(inp, Policy(maintenance=Maintenance.FREEZE))
    assert (frozen.complete, frozen.counting) == (False, False)


# ------------------------------------------------------------------------------ claims


def test_claims_an_address_on_two_projects_is_held_for_both() -> None:
    snap = snapshot({"tools": ["10.0.0.5"], "web": ["10.0.0.5", "10.0.0.6"]})
    claims = address_claims(snap)
    assert claims["10.0.0.5"] == {"tools", "web"}
    assert claims["10.0.0.6"] == {"web"}
    holds = conflict_holds(claims, snap, {"tools"})
    assert [(h.reason, h.client) for h in holds] == [(Reason.IP_CONFLICT, "10.0.0.5")]
    assert conflict_holds(claims, snap, {"other"}) == []  # none of ours: nothing to say


def test_claims_a_foreign_port_claims_the_address_and_a_partial_listing_claims_nothing() -> None:
    port = AddressClaim("port p1 of project x", ("tools",), ("id-x",))
    snap = snapshot({"tools": ["10.0.0.5"]}, claims={"10.0.0.5": (port,)})
    assert address_claims(snap)["10.0.0.5"] == {"tools", FOREIGN}
    unknown = InventorySnapshot.unknown("test", "keystone down")
    assert address_claims(unknown) == {}


def test_ownership_a_projects_own_orphaned_servers_are_no_conflict() -> None:
    own = AddressClaim("server s of unlisted project id-old", (), ("id-old",))
    snap = snapshot({}, listed=("web",), claims={"10.0.0.9": (own,)})
    ownership = Ownership(snap, address_claims(snap), {"old": "id-old"})
    assert ownership.others("10.0.0.9", "old") == frozenset()
    assert ownership.others("10.0.0.9", "web") == {FOREIGN}


# ------------------------------------------------------------------------------ owners


def test_owners_a_file_in_force_is_considered_though_nothing_serves_it() -> None:
    private = {"tools": (ServedExport("tools", "home", HOME, OPTS),)}
    public = (PublicExport("scratch", "/srv/scratch", ("172.16.0.0/21",), OPTS),)
    old = in_force("old", ("/srv/old", ("10.0.0.1",)))
    owners = owners_to_consider(private, public, {"old.exports": old})
    assert owners == {
        "tools.exports": TOOLS,
        "public-scratch.exports": Owner(FileKind.PUBLIC, "scratch"),
        "old.exports": Owner(FileKind.PROJECT, "old"),
    }
    assert owners["public-scratch.exports"].label == "public:scratch"
    assert project_names(private, {"old.exports": old}) == {"tools", "old"}
    assert served_for(private, public) == {HOME: "tools", "/srv/scratch": "public:scratch"}


def test_owners_a_plain_string_kind_in_force_becomes_the_enum() -> None:
    f = ExportsFile("old.exports", "project", "old", ())  # type: ignore[arg-type]
    assert f.kind is FileKind.PROJECT and f.is_project
    assert owners_to_consider({}, (), {"old.exports": f})["old.exports"].is_project


def test_a_misspelt_kind_is_an_error_not_a_file_of_neither_kind() -> None:
    with pytest.raises(ValueError, match="projct"):
        ExportsFile("old.exports", "projct", "old", ())  # type: ignore[arg-type]


def test_mypy_strict_refuses_a_kind_compared_with_a_string(tmp_path: Path) -> None:
    """FileKind is a plain Enum: ``f.kind == "project"`` (misspelt or not) is a mypy
    error, so only the enum or ``is_project`` can decide whose a file is."""
    import nfs_exportd

    src = Path(nfs_exportd.__file__).parents[1]
    (tmp_path / "snippet.py").write_text(
        "from nfs_exportd.model import ExportsFile, FileKind\n\n\n"
        "def by_string(f: ExportsFile) -> bool:\n"
        '    return f.kind == "project"\n\n\n'
        "def by_enum(f: ExportsFile) -> bool:\n"
        "    return f.is_project or f.kind is FileKind.PUBLIC\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "snippet.py"],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    errors = [ln for ln in out.splitlines() if ": error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("snippet.py:5:"), out
    assert "Non-overlapping equality check" in errors[0], out


# ------------------------------------------------------------------------------ intent


def test_intent_complete_project_wants_its_uncontested_addresses() -> None:
    snap = snapshot({"tools": ["10.0.0.5", "10.0.0.6"], "web": ["10.0.0.6"]})
    intent = project_intent("tools", Verdict(Status.COMPLETE), cycle(snap))
    assert intent.desired == {HOME: {"10.0.0.5"}}
    assert intent.options == {HOME: OPTS}
    assert intent.keep_all is None and intent.gone_reason is Reason.INSTANCE_GONE


@pytest.mark.parametrize(
    ("status", "keep"),
    [
        (Status.UNKNOWN_LISTING, Reason.UNKNOWN_INVENTORY),
        (Status.UNKNOWN, Reason.UNKNOWN_PROJECT),
        (Status.RENAMED, Reason.UNKNOWN_PROJECT),
        (Status.ABSENT, Reason.PENDING_CONFIRMATION),
    ],
)
def test_intent_what_is_not_known_keeps_everything(status: Status, keep: Reason) -> None:
    intent = project_intent("tools", Verdict(status, "why"), cycle(snapshot({"tools": []})))
    assert intent.keep_all is keep and not intent.quiet and not intent.deleted


def test_intent_deleted_project_wants_nothing_and_is_deleted() -> None:
    intent = project_intent("tools", Verdict(Status.DELETED, "gone"), cycle(snapshot({})))
    assert intent == Intent(
        {HOME: OPTS}, {HOME: frozenset()}, gone_reason=Reason.PROJECT_DELETED, deleted=True
    )


def test_intent_disabled_and_unreadable_follows_policy() -> None:
    snap = snapshot({}, disabled=("tools",), incomplete={"tools": "403"})
    verdict = Verdict(Status.UNKNOWN, "403")
    kept = project_intent("tools", verdict, cycle(snap))
    assert kept.keep_all is Reason.UNKNOWN_PROJECT and kept.quiet
    assert "disabled" in kept.notes[0]
    removed = project_intent(
        "tools", verdict, cycle(snap, policy=Policy(disabled_projects="remove"))
    )
    assert removed.desired == {HOME: set()} and removed.gone_reason is Reason.PROJECT_DISABLED


def test_intent_a_name_taken_by_another_id_holds_each_path() -> None:
    snap = snapshot({"tools": ["10.0.0.5"]})
    intent = project_intent("tools", Verdict(Status.ABSENT, "x", "taken"), cycle(snap))
    assert [(h.reason, h.path) for h in intent.holds] == [(Reason.PROJECT_ID_CHANGED, HOME)]


def test_intent_public_is_its_configured_clients() -> None:
    pub = (PublicExport("scratch", "/srv/scratch", ("172.16.0.0/21",), OPTS),)
    intent = public_intent("scratch", pub)
    assert intent.desired == {"/srv/scratch": {"172.16.0.0/21"}}
    assert intent.gone_reason is Reason.NOT_SERVED


# ------------------------------------------------------------------------------ diff


def complete_intent(*clients: str) -> Intent:
    return Intent({HOME: OPTS}, {HOME: frozenset(clients)})


def test_diff_additions_new_instance_and_new_export() -> None:
    cur = in_force("tools", (HOME, ("10.0.0.5",)))
    d = diff_file(TOOLS, complete_intent("10.0.0.5", "10.0.0.6"), cur, cycle(snapshot({})))
    assert d.changes == (Change("tools", HOME, "10.0.0.6", Action.ADD, Reason.NEW_INSTANCE),)
    assert d.paths[HOME].result == {"10.0.0.5", "10.0.0.6"}
    d = diff_file(TOOLS, complete_intent("10.0.0.6"), None, cycle(snapshot({})))
    assert d.changes == (Change("tools", HOME, "10.0.0.6", Action.ADD, Reason.NEW_EXPORT),)


def test_diff_a_removal_is_counted_then_a_candidate() -> None:
    cur = in_force("tools", (HOME, ("10.0.0.5",)))
    key = PairKey("tools", HOME, "10.0.0.5")
    first = diff_file(TOOLS, complete_intent(), cur, cycle(snapshot({})))
    assert [h.reason for h in first.holds] == [Reason.PENDING_CONFIRMATION]
    assert first.counters == {key: 1} and first.candidates == ()
    last = diff_file(TOOLS, complete_intent(), cur, cycle(snapshot({}), counters={key: 2}))
    assert last.candidates == (
        Change("tools", HOME, "10.0.0.5", Action.REMOVE, Reason.INSTANCE_GONE),
    )
    assert last.holds == () and last.counters == {key: 3}
    # a cycle that does not count neither counts nor resets
    idle = diff_file(
        TOOLS, complete_intent(), cur, cycle(snapshot({}), counting=False, counters={key: 2})
    )
    assert idle.counters == {key: 2} and idle.candidates == ()


def test_diff_a_conflict_leaves_at_once_and_an_unsafe_path_too() -> None:
    snap = snapshot({"web": ["10.0.0.5"]})
    cur = in_force("tools", (HOME, ("10.0.0.5", "10.0.0.7")))
    d = diff_file(TOOLS, complete_intent("10.0.0.7"), cur, cycle(snap))
    assert d.changes == (Change("tools", HOME, "10.0.0.5", Action.REMOVE, Reason.IP_CONFLICT),)
    d = diff_file(
        TOOLS, complete_intent("10.0.0.7"), cur, cycle(snap, unsafe_paths={HOME: "a symlink"})
    )
    assert {(c.client, c.reason) for c in d.changes} == {
        ("10.0.0.5", Reason.IP_CONFLICT),
        ("10.0.0.7", Reason.PATH_UNSAFE),
    }
    # the path is held, and so is the addition its intent still wants
    assert [(h.reason, h.action) for h in d.holds] == [
        (Reason.PATH_UNSAFE, None),
        (Reason.PATH_UNSAFE, Action.ADD),
    ]


def test_diff_a_path_now_served_for_another_project_leaves_at_once() -> None:
    cur = in_force("tools", (HOME, ("10.0.0.5",)))
    c = cycle(snapshot({"tools": ["10.0.0.5"]}), private={"tools": (), "web": (HOME + "/sub",)})
    d = diff_file(TOOLS, Intent(), cur, c)
    assert d.changes == (Change("tools", HOME, "10.0.0.5", Action.REMOVE, Reason.PATH_UNSAFE),)
    assert "now served for web" in d.notes[0]
    assert d.paths[HOME] == PathOutcome(None, None, frozenset({"10.0.0.5"}))


def test_diff_keep_all_keeps_options_and_counters() -> None:
    cur = in_force("tools", (HOME, ("10.0.0.5",)))
    key = PairKey("tools", HOME, "10.0.0.5")
    intent = Intent({HOME: "ro"}, keep_all=Reason.UNKNOWN_PROJECT, keep_detail="403")
    d = diff_file(TOOLS, intent, cur, cycle(snapshot({}), counters={key: 2}))
    assert d.changes == () and d.counters == {key: 2}
    assert [(h.reason, h.client) for h in d.holds] == [(Reason.UNKNOWN_PROJECT, None)]
    assert d.paths[HOME].options == OPTS  # not even options change


def test_diff_frozen_holds_additions_and_missing_paths_hold_them() -> None:
    frozen = cycle(snapshot({}), policy=Policy(maintenance=Maintenance.FREEZE))
    d = diff_file(TOOLS, complete_intent("10.0.0.6"), None, frozen)
    assert [(h.reason, h.action) for h in d.holds] == [(Reason.FREEZE, Action.ADD)]
    d = diff_file(
        TOOLS,
        complete_intent("10.0.0.6"),
        None,
        cycle(snapshot({}), missing_paths=frozenset({HOME})),
    )
    assert [h.reason for h in d.holds] == [Reason.PATH_MISSING] and d.changes == ()


# ------------------------------------------------------------------------------ bounds


def removals(n: int, reason: Reason = Reason.INSTANCE_GONE, project: str = "tools") -> list[Change]:
    return [Change(project, HOME, f"10.0.1.{i}", Action.REMOVE, reason) for i in range(n)]


def bound_inp(**kw: object) -> DecideInput:
    return DecideInput({"tools": ()}, (), snapshot({}), {}, **kw)  # type: ignore[arg-type]


def test_bounds_within_the_share_go() -> None:
    b = bound_removals(removals(2), [], bound_inp(), Policy(), 100, None, {})
    assert len(b.go) == 2 and b.holds == ()


def test_bounds_beyond_the_share_and_the_count_are_held_unless_forced() -> None:
    policy = Policy(max_removal_fraction=0.1, min_removal_count=3)
    b = bound_removals(removals(5), [], bound_inp(), policy, 20, None, {})
    assert b.go == () and {h.reason for h in b.holds} == {Reason.TOO_MUCH_CHANGE}
    forced = bound_removals(removals(5), [], bound_inp(), Policy(force=True), 20, None, {})
    assert len(forced.go) == 5


def test_bounds_removing_every_pair_is_held_however_small() -> None:
    b = bound_removals(removals(2), [], bound_inp(), Policy(), 2, None, {})
    assert b.go == () and {h.reason for h in b.holds} == {Reason.TOO_MUCH_CHANGE}
    add = Change("tools", HOME, "10.0.2.1", Action.ADD, Reason.NEW_INSTANCE)
    assert len(bound_removals(removals(2), [add], bound_inp(), Policy(), 2, None, {}).go) == 2


@pytest.mark.parametrize(
    ("policy", "state", "reason"),
    [
        (Policy(maintenance=Maintenance.HOLD), None, Reason.MAINTENANCE),
        (Policy(maintenance=Maintenance.FREEZE), None, Reason.FREEZE),
        (Policy(rollback_hold="rolled back"), None, Reason.ROLLBACK_HOLD),
        (Policy(force=True), "counters lost", Reason.STATE_CORRUPT),
    ],
)
def test_bounds_maintenance_freeze_and_state_hold_all(
    policy: Policy, state: str | None, reason: Reason
) -> None:
    b = bound_removals(removals(1), [], bound_inp(state_problem=state), policy, 100, None, {})
    assert b.go == () and [h.reason for h in b.holds] == [reason]


def test_bounds_project_deletions_per_window() -> None:
    cands = removals(1, Reason.PROJECT_DELETED, "a") + removals(1, Reason.PROJECT_DELETED, "b")
    inp = bound_inp(memory=Memory(deletions={"old": 900.0}), now=1000.0)
    b = bound_removals(cands, [], inp, Policy(max_project_deletions=2), 100, None, {})
    assert b.go == () and "3 project deletions" in b.holds[0].detail
    ok = bound_removals(cands, [], bound_inp(), Policy(max_project_deletions=2), 100, None, {})
    assert ok.deleted_now == {"a", "b"}


def test_bounds_unnamed_project_and_shrinks() -> None:
    gone = removals(1, Reason.NOT_SERVED, "old")
    b = bound_removals(gone, [], bound_inp(), Policy(), 100, None, {})
    assert [h.reason for h in b.holds] == [Reason.TOO_MUCH_CHANGE]
    b = bound_removals(removals(1), [], bound_inp(), Policy(), 100, "fell", {})
    assert b.shrink_held and [h.reason for h in b.holds] == [Reason.INVENTORY_SHRINK]
    b = bound_removals(removals(1), [], bound_inp(), Policy(), 100, None, {"tools": "fell"})
    assert not b.shrink_held and [h.reason for h in b.holds] == [Reason.INVENTORY_SHRINK]


# ------------------------------------------------------------------------------ target files


def test_target_removed_pairs_leave_and_an_empty_unserved_file_goes() -> None:
    inp = DecideInput({"tools": ()}, (), snapshot({}), {"old.exports": in_force("old")})
    plans = {
        "tools.exports": FilePlan(
            TOOLS, {HOME: PathOutcome(OPTS, OPTS, frozenset({"10.0.0.5", "10.0.0.6"}))}, "id-t"
        ),
        "old.exports": FilePlan(Owner(FileKind.PROJECT, "old"), {}, None),
    }
    removed = frozenset({PairKey("tools", HOME, "10.0.0.6")})
    files, notes = target_files(plans, removed, inp, frozen=False)
    assert files["tools.exports"] == ExportsFile(
        "tools.exports", FileKind.PROJECT, "tools", (ExportLine(HOME, OPTS, ("10.0.0.5",)),), "id-t"
    )
    assert files["old.exports"] is None and notes == [
        "old.exports: no longer served and empty; removed"
    ]


def test_target_options_in_force_stay_while_frozen_or_missing() -> None:
    plans = {
        "tools.exports": FilePlan(
            TOOLS, {HOME: PathOutcome("ro", OPTS, frozenset({"10.0.0.5"}))}, None
        )
    }
    inp = DecideInput({"tools": ()}, (), snapshot({}), {})
    new = target_files(plans, frozenset(), inp, frozen=False)[0]["tools.exports"]
    old = target_files(plans, frozenset(), inp, frozen=True)[0]["tools.exports"]
    assert new is not None and new.lines[0].options == "ro"
    assert old is not None and old.lines[0].options == OPTS
    missing = replace_missing(inp)
    kept = target_files(plans, frozenset(), missing, frozen=False)[0]["tools.exports"]
    assert kept is not None and kept.lines[0].options == OPTS


def replace_missing(inp: DecideInput) -> DecideInput:
    from dataclasses import replace

    return replace(inp, missing_paths=frozenset({HOME}))


def test_guard_refuses_nested_paths_in_two_files_unless_in_force_so() -> None:
    a = in_force("tools", (HOME, ("10.0.0.5",)))
    b = in_force("web", (HOME + "/sub", ("10.0.0.6",)))
    files = {"tools.exports": a, "web.exports": b}
    with pytest.raises(PlanBug, match="would both be exported"):
        check_one_owner_per_path(files, {}, lambda x, y: False)
    check_one_owner_per_path(files, files, lambda x, y: False)  # no worse than in force
    check_one_owner_per_path(files, {}, lambda x, y: True)  # one project's two names


# ------------------------------------------------------------------------------ remember


def test_remember_counters_counting_keeps_the_diffs_not_removed_ones() -> None:
    k1, k2 = PairKey("tools", HOME, "a"), PairKey("tools", HOME, "b")
    snap = snapshot({})
    inp = DecideInput({}, (), snap, {}, counters={k1: 1, k2: 2})
    counting = timing(inp, Policy())
    assert next_counters(inp, counting, {k1: 2, k2: 3}, {k2}) == {k1: 2}
    idle = timing(replace_memory(inp, last_counted=0.0, now=1.0), Policy(confirmation_spacing=60))
    assert next_counters(inp, idle, {k1: 9}, {k2}) == {k1: 1}
    unknown = DecideInput({}, (), InventorySnapshot.unknown("t", "down"), {}, counters={k1: 1})
    assert next_counters(unknown, timing(unknown, Policy()), {}, {k1}) == {k1: 1}


def replace_memory(inp: DecideInput, *, last_counted: float, now: float) -> DecideInput:
    from dataclasses import replace

    return replace(inp, memory=Memory(last_counted=last_counted), now=now)


def test_remember_memory_keeps_old_counts_while_a_shrink_waits() -> None:
    inp = DecideInput(
        {}, (), snapshot({}), {}, memory=Memory(instances={"tools": 10, "web": 4}), now=5.0
    )
    when = timing(inp, Policy())
    assessed = Memory(absent={"gone": Absence(1.0, 1), "tools": Absence(2.0, 1)})
    counts = {"tools": 2, "web": 3}
    mem = next_memory(inp, Policy(), when, assessed, {"tools"}, (None, counts), {"tools"}, {"x"})
    assert mem.instances == {"tools": 10, "web": 3}  # tools' own shrink waits
    assert set(mem.absent) == {"tools"} and mem.deletions == {"x": 5.0} and mem.last_counted == 5.0
    whole = next_memory(inp, Policy(), when, assessed, {"tools"}, ("fell", counts), {}, ())
    assert whole.instances == {"tools": 10, "web": 4}
    unknown = DecideInput({}, (), InventorySnapshot.unknown("t", "down"), {}, memory=inp.memory)
    assert (
        next_memory(unknown, Policy(), timing(unknown, Policy()), assessed, (), (None, {}), {}, ())
        is unknown.memory
    )
