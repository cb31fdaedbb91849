"""Phase "claims": who claims each address, and who owns a project name (by Keystone id).

An address shown (in a complete listing) on an instance of project Q may not stay in any
other project's private exports: it leaves them at once (``ip-conflict``).  So does an
address claimed by something that is no listed project's instance (a port of a project
Keystone does not list, a port and its server of two projects): it stands in the
claimants as ``FOREIGN``, which is never a project's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from ..model import InventorySnapshot
from .lifecycle import aliases as project_aliases
from .lifecycle import names_by_id
from .plan import Hold, Reason

FOREIGN = ""  # a claimant that is not a listed project (no project has an empty name)

Claims = Mapping[str, frozenset[str]]  # address -> the project names claiming it (FOREIGN)


def address_claims(snap: InventorySnapshot) -> dict[str, frozenset[str]]:
    """address -> claimants, from a complete listing only (a partial one proves nothing
    about who else has an address)."""
    claims: dict[str, set[str]] = {}
    if snap.listing_complete:
        for project, insts in snap.instances.items():
            for inst in insts:
                for addr in inst.addresses:
                    claims.setdefault(str(addr), set()).add(project)
        for ip, foreign in snap.claims.items():
            claims.setdefault(ip, set()).update(
                {FOREIGN, *(p for c in foreign for p in c.projects)}
            )
    return {ip: frozenset(names) for ip, names in claims.items()}


def conflict_holds(claims: Claims, snap: InventorySnapshot, ours: Iterable[str]) -> list[Hold]:
    """One ``ip-conflict`` hold per address that more than one claimant has, when one of
    them is a project of ours: it is exported for none of them."""
    mine = set(ours)
    holds: list[Hold] = []
    for ip, claimants in sorted(claims.items()):
        names = claimants - {FOREIGN}
        if len(claimants) > 1 and names & mine:
            by = "; ".join(sorted({c.detail for c in snap.claims.get(ip, ())}))
            holds.append(
                Hold(
                    Reason.IP_CONFLICT,
                    client=ip,
                    detail=f"claimed by projects {', '.join(sorted(names))}"
                    + (f" ({by})" if by else "")
                    + ": exported for none of them",
                )
            )
    return holds


def own_claims(snap: InventorySnapshot, client: str, pid: str | None) -> bool:
    """Every claim on ``client`` that is no listed project's instance involves only the
    id ``pid`` (ownership is by id): the project's own servers, orphaned while Keystone
    does not list it (deleted, or a listing silently short of it).  Such an address
    follows the deletion rules and their bounds, not the conflict rule."""
    found = snap.claims.get(client, ())
    return pid is not None and bool(found) and all(set(c.ids) == {pid} for c in found)


@dataclass(frozen=True)
class Ownership:
    """Who owns what in this cycle: the claims on addresses, and the Keystone ids of
    names (the listing's, and those the lifecycle memory binds)."""

    snap: InventorySnapshot
    claims: Claims
    known_ids: Mapping[str, str]  # the memory's name -> id after this cycle's assessment
    # aliases asked once per pair in force: answered once per name (values are immutable)
    _aliases: dict[str, frozenset[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @cached_property
    def listed_ids(self) -> Mapping[str, str]:
        """name -> id of the listing (built once: it is asked once per pair)."""
        projects = self.snap.projects
        return {r.name: r.id for r in projects.values()} if projects else {}

    @cached_property
    def _listed_by_id(self) -> Mapping[str, frozenset[str]]:
        return names_by_id(self.listed_ids)

    def owner_id(self, name: str) -> str | None:
        """The Keystone id a name stands for: the bound id, else the listed one."""
        return self.known_ids.get(name) or self.listed_ids.get(name)

    def aliases(self, name: str) -> frozenset[str]:
        """The names one project has in this listing (a renamed project has two; a name
        taken by another id is not its own any more): ownership is by id."""
        found = self._aliases.get(name)
        if found is None:
            found = project_aliases(name, self.listed_ids, self.known_ids, self._listed_by_id)
            self._aliases[name] = found
        return found

    def successors(self, name: str) -> frozenset[str]:
        """The other names of a renamed project that stand for its id: a name the
        projects file (or the memory) binds to another id is not where it moves."""
        pid = self.owner_id(name)
        return frozenset(
            n for n in self.aliases(name) - {name} if pid is not None and self.owner_id(n) == pid
        )

    def claimants(self, client: str) -> frozenset[str]:
        return self.claims.get(client, frozenset())

    def others(self, client: str, owner: str) -> frozenset[str]:
        """Who else than ``owner`` claims ``client`` (empty: nobody, or only ``owner``'s
        own servers while Keystone does not list it)."""
        others = self.claimants(client) - self.aliases(owner)
        if others == {FOREIGN} and own_claims(self.snap, client, self.owner_id(owner)):
            return frozenset()  # its own servers while Keystone does not list it
        return others
