"""``decide`` grows linearly: twice the input may take at most 2.5x the time.

A per-pair scan of every project (the alias question asked once per pair, answered by a
scan of the whole listing) made a 50,000-pair sync spend most of its time in decide;
this test fails if such a scan comes back.  Times are compared as a ratio on the same
machine, in the same process, interleaved and best-of-N, so that a noisy shared machine
moves both sides alike.
"""

from __future__ import annotations

import gc
import ipaddress
import random
import time

from nfs_exportd.decide.inputs import DecideInput, Policy
from nfs_exportd.decide.owners import ServedIndex
from nfs_exportd.decide.plan import Action
from nfs_exportd.decide.reconcile import decide
from nfs_exportd.model import (
    ExportLine,
    ExportsFile,
    FileKind,
    InstanceRecord,
    InventorySnapshot,
    ProjectRecord,
    ServedExport,
    sorted_clients,
)
from nfs_exportd.validate import path_within

OPTS = "rw,sync,no_subtree_check,root_squash"
PER, VOLUMES = 10, 2
BASE = 500  # projects at 1x: 10,000 pairs; 2x is 20,000
REPEATS = 5
MAX_RATIO = 2.5


def world(projects: int) -> DecideInput:
    """``projects`` projects x 10 instances x 2 volumes in force and served, a new
    instance in one project, and one stale address per project (pending removal)."""
    private: dict[str, tuple[ServedExport, ...]] = {}
    records: dict[str, ProjectRecord] = {}
    instances: dict[str, tuple[InstanceRecord, ...]] = {}
    in_force: dict[str, ExportsFile] = {}
    n = 0
    for p in range(projects):
        name = f"proj-{p:05d}"
        records[name] = ProjectRecord(f"{p + 1:032x}", name, True)
        paths = [f"/srv/{name}/vol{v}" for v in range(VOLUMES)]
        private[name] = tuple(ServedExport(name, f"vol{v}", pa, OPTS) for v, pa in enumerate(paths))
        insts = []
        for i in range(PER + (1 if p == 0 else 0)):
            addr = ipaddress.ip_address(0xAC100001 + n)
            insts.append(InstanceRecord(f"i-{n}", f"{name}-{i}", name, "ACTIVE", (addr,)))
            n += 1
        instances[name] = tuple(insts)
        clients = {str(i.addresses[0]) for i in insts[:PER]}
        clients.add(str(ipaddress.ip_address(0x0A000001 + p)))  # gone: pending confirmation
        lines = tuple(ExportLine(pa, OPTS, sorted_clients(clients)) for pa in paths)
        in_force[name + ".exports"] = ExportsFile(
            name + ".exports", FileKind.PROJECT, name, lines, records[name].id
        )
    snap = InventorySnapshot("scale", records, instances)
    return DecideInput(private=private, public=(), snapshot=snap, in_force=in_force)


def best_times(inputs: list[DecideInput]) -> list[float]:
    """Best of REPEATS for each input, the inputs interleaved in every round."""
    best = [float("inf")] * len(inputs)
    policy = Policy()
    for _ in range(REPEATS):
        for k, inp in enumerate(inputs):
            gc.collect()
            t0 = time.perf_counter()
            decide(inp, policy)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def test_twice_the_pairs_take_at_most_two_and_a_half_times_as_long() -> None:
    small, large = world(BASE), world(2 * BASE)
    plan = decide(small, Policy())  # the workload does what it says
    adds = [c for c in plan.changes if c.action is Action.ADD]
    assert len(adds) == VOLUMES, plan.changes
    assert len(plan.holds) == BASE * VOLUMES  # one pending removal per path
    t_small, t_large = best_times([small, large])
    ratio = t_large / t_small
    assert ratio <= MAX_RATIO, (
        f"decide took {t_small:.3f} s at {BASE * PER * VOLUMES} pairs and {t_large:.3f} s at "
        f"twice that ({ratio:.2f}x > {MAX_RATIO}x): something in it grows faster than the "
        "input (a scan of every project or path per pair?)"
    )


def test_served_index_answers_as_a_scan_of_every_served_path() -> None:
    """The index behind the moved-path rule says what ``path_within`` either way says."""
    rng = random.Random(7)
    parts = ["srv", "a", "b", "ab", "a-b", "c"]
    paths = {"/" + "/".join(rng.choices(parts, k=rng.randint(1, 4))) for _ in range(300)}
    served = {p: f"owner-{i % 17}" for i, p in enumerate(sorted(paths)[:150])}
    index = ServedIndex(served)
    for path in [*sorted(paths), "/", "/srv", "/a/b/c/d"]:
        scan = {
            label
            for spath, label in served.items()
            if path_within(path, spath) or path_within(spath, path)
        }
        assert index.around(path) == scan, path
    assert ServedIndex({"/": "all"}).around("/x/y") == {"all"}
