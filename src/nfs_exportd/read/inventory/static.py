"""Static inventory: a YAML file that other tools write (its format is
public contract: README, "Static inventory").

```yaml
projects:
  - {id: 9f1c, name: tools, enabled: true}
instances:
  - {id: i-17, name: tools-worker-1, project: tools, status: ACTIVE,
     addresses: ["172.16.0.5", "fd00::5"]}
incomplete_projects: [tools]      # optional extension: the writer could not read these
```

Because the file is rewritten by other tools, anything wrong with its structure
(unreadable, unparsable, an unknown key, a project not listed) makes the whole snapshot
*unknown*: the cycle holds, nothing changes.  An address that fails the one address
grammar (``addresses.parse_address``: no zone ids, no loopback, ... and ``::ffff:a.b.c.d``
read as ``a.b.c.d``) makes only *its instance's project* unknown, naming
``file: instances[i].addresses[j]``: the address is data about one instance, as in the
OpenStack source, and one bad address copied from the cloud must not stop every project's
additions.  That project keeps exactly what is in force; the cycle exits 3.
An instance with status ``UNKNOWN`` (a Nova down cell) makes its project's data unknown.
Instances with status ``DELETED`` are gone and contribute no address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BeforeValidator, ValidationError

from ...addresses import AddressError, parse_address
from ...model import InstanceRecord, InventorySnapshot, IPAddress, ProjectRecord
from ...records import Record, Text, describe, one_line
from ...validate import KEYSTONE_ID_RE
from ...yamlsafe import INVENTORY_MAX_BYTES, YamlRefused, load_file

GONE_STATUSES = frozenset({"DELETED"})
UNKNOWN_STATUSES = frozenset({"UNKNOWN"})


def _numeric_id(v: object) -> object:
    """Writers may emit numeric ids: 4711 is the id "4711" (true and 1.5 are refused)."""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


Id = Annotated[Text, BeforeValidator(_numeric_id)]


def _project_id(v: str) -> str:
    """A project id is recorded in the managed file and decides ownership: Keystone's
    grammar (letters, digits, '_', '-'; at most 64)."""
    if not KEYSTONE_ID_RE.fullmatch(v):
        raise ValueError(f"malformed project id {v!r} (letters, digits, '_', '-'; at most 64)")
    return v


ProjectId = Annotated[Id, AfterValidator(_project_id)]


class InvalidInventory(ValueError):
    pass


class ProjectEntry(Record):
    id: ProjectId
    name: Text
    enabled: bool = True


class InstanceEntry(Record):
    id: Id
    name: str = ""
    project: Text  # by name
    status: Text
    # each checked by the address grammar in parse_static: a bad one holds only its project
    addresses: list[Any]


class _InventoryHead(Record):
    """InventoryFile with the instances left unvalidated: they are validated one at a
    time (``_instances``), so that 100,000 instance models are never alive at once (the
    models of a whole large inventory cost as much memory as its YAML tree)."""

    projects: list[ProjectEntry]
    # required, even when empty: a file cut off after the project list is not "no instances"
    instances: list[Any]
    incomplete_projects: list[str] | None = None  # the writer could not read these


class InventoryFile(_InventoryHead):
    """The whole file, each instance entry validated (what an error message describes)."""

    instances: list[InstanceEntry]


# (id, name, project, status, addresses) of one validated instance entry
_Entry = tuple[str, str, str, str, list[Any]]


def _instances(items: list[Any]) -> list[_Entry]:
    """Each instance entry validated as InstanceEntry, kept as a tuple of its fields;
    ValidationError at the first invalid entry."""
    validate = InstanceEntry.model_validate
    out: list[_Entry] = []
    append = out.append
    for item in items:
        e = validate(item)
        append((e.id, e.name, e.project, e.status, e.addresses))
    return out


def _validated(data: dict[Any, Any], source: str) -> tuple[_InventoryHead, list[_Entry]]:
    """The file checked as InventoryFile; on any error the whole file is validated as
    InventoryFile once more, so that the message lists every error, as it always has."""
    try:
        head = _InventoryHead.model_validate(data)
        return head, _instances(head.instances)
    except ValidationError:
        pass
    try:
        InventoryFile.model_validate(data)
    except ValidationError as exc:
        raise InvalidInventory(one_line(describe(exc, source, about=_about(data)))) from None
    raise AssertionError("an instance entry failed alone but not within the file")


def _about(data: dict[Any, Any]) -> Any:
    """Name the project or instance an error is in: its index alone is hard to find."""

    def about(loc: tuple[int | str, ...]) -> str:
        if loc == ("instances",):
            return "write [] for none"
        if len(loc) < 3 or loc[0] not in ("projects", "instances") or not isinstance(loc[1], int):
            return ""
        items = data.get(loc[0])
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        if not isinstance(item, dict):
            return ""
        if loc[0] == "projects":
            return f"project {item.get('name')!r}" if "name" in item else ""
        return f"instance {item.get('id')!r} ({item.get('name', '')!r})" if "id" in item else ""

    return about


def parse_static(data: object, source: str) -> InventorySnapshot:
    """Pure: turn loaded YAML into a snapshot, raising InvalidInventory naming the key."""
    if not isinstance(data, dict):
        raise InvalidInventory(f"{source}: expected a mapping with 'projects' and 'instances'")
    inv, entries = _validated(data, source)
    projects: dict[str, ProjectRecord] = {}
    ids: dict[str, str] = {}
    for i, p in enumerate(inv.projects):
        pid = p.id
        where = f"{source}: projects[{i}] (project {p.name!r})"
        if p.name in projects:
            raise InvalidInventory(f"{where}: name listed twice")
        if pid in ids:
            raise InvalidInventory(f"{where}: id {pid!r} listed twice (also {ids[pid]!r})")
        ids[pid] = p.name
        projects[p.name] = ProjectRecord(pid, p.name, p.enabled)
    incomplete: dict[str, str] = {}
    for j, name in enumerate(inv.incomplete_projects or []):
        if name not in projects:
            raise InvalidInventory(
                f"{source}: incomplete_projects[{j}]: {name!r} is not in 'projects'"
            )
        incomplete[name] = "marked incomplete by the inventory writer"
    instances: dict[str, list[InstanceRecord]] = {name: [] for name in projects}
    seen_ids: set[str] = set()
    for i, (iid, iname, project, status, addresses) in enumerate(entries):
        where = f"{source}: instances[{i}] (instance {iid!r} ({iname!r}))"
        if iid in seen_ids:
            raise InvalidInventory(f"{where}: id listed twice")
        seen_ids.add(iid)
        if project not in projects:
            raise InvalidInventory(f"{where}: project {project!r} is not in 'projects'")
        status = status.upper()
        addrs: list[IPAddress] = []
        for j, a in enumerate(addresses):
            try:
                addrs.append(parse_address(a))
            except AddressError as exc:
                incomplete.setdefault(
                    project,
                    f"{source}: instances[{i}].addresses[{j}] of instance {iid!r} ({iname!r}): "
                    f"invalid {exc}; fix the inventory writer",
                )
        if status in UNKNOWN_STATUSES:
            incomplete.setdefault(project, f"instance {iid} ({iname}) has status {status}")
        if status in GONE_STATUSES:
            continue
        instances[project].append(InstanceRecord(iid, iname, project, status, tuple(addrs)))
    return InventorySnapshot(
        source=source,
        projects=projects,
        instances={k: tuple(v) for k, v in instances.items()},
        incomplete=incomplete,
    )


class StaticInventory:
    def __init__(self, path: Path, max_bytes: int = INVENTORY_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.name = f"static:{path}"

    def reset(self) -> None:
        """Nothing is cached: the file is read afresh every cycle."""

    def read(self, interest: frozenset[str] | None = None) -> InventorySnapshot:
        try:
            data = load_file(self.path, self.max_bytes, "the inventory", "inventory.file_max_bytes")
            return parse_static(data, str(self.path))
        except YamlRefused as exc:
            problem = str(exc)
        except (OSError, UnicodeDecodeError) as exc:
            problem = f"{self.path}: cannot read inventory: {exc}"
        except yaml.YAMLError as exc:
            problem = f"{self.path}: inventory is not valid YAML: {exc}"
        except InvalidInventory as exc:
            problem = str(exc)
        return InventorySnapshot.unknown(self.name, problem)
