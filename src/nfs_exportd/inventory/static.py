"""Static inventory: a YAML file that other tools write (DESIGN.md "Static inventory").

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
from typing import Any

import yaml

from ..addresses import AddressError, parse_address
from ..model import InstanceRecord, InventorySnapshot, IPAddress, ProjectRecord
from ..yamlsafe import INVENTORY_MAX_BYTES, YamlRefused, load_file

GONE_STATUSES = frozenset({"DELETED"})
UNKNOWN_STATUSES = frozenset({"UNKNOWN"})


class InvalidInventory(ValueError):
    pass


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    val = obj.get(key)
    if not isinstance(val, str) or not val:
        raise InvalidInventory(f"{where}: {key} must be a non-empty string, got {val!r}")
    return val


def parse_static(data: object, source: str) -> InventorySnapshot:
    """Pure: turn loaded YAML into a snapshot, raising InvalidInventory naming the object."""
    if not isinstance(data, dict):
        raise InvalidInventory(f"{source}: expected a mapping with 'projects' and 'instances'")
    unknown = set(data) - {"projects", "instances", "incomplete_projects"}
    if unknown:
        raise InvalidInventory(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    raw_projects = data.get("projects")
    raw_instances = data.get("instances")
    if not isinstance(raw_projects, list):
        raise InvalidInventory(f"{source}: 'projects' must be a list")
    if not isinstance(raw_instances, list):
        # required, even when empty: a file cut off after the project list is not "no instances"
        raise InvalidInventory(f"{source}: 'instances' must be a list (write [] for none)")
    projects: dict[str, ProjectRecord] = {}
    ids: set[str] = set()
    for i, p in enumerate(raw_projects):
        where = f"{source}: projects[{i}]"
        if not isinstance(p, dict):
            raise InvalidInventory(f"{where}: expected a mapping")
        extra = set(p) - {"id", "name", "enabled"}
        if extra:
            raise InvalidInventory(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
        pid = str(p.get("id")) if isinstance(p.get("id"), int) else _str(p, "id", where)
        name = _str(p, "name", where)
        where = f"{source}: project {name!r}"
        enabled = p.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidInventory(f"{where}: enabled must be true or false, got {enabled!r}")
        if name in projects:
            raise InvalidInventory(f"{where}: listed twice")
        if pid in ids:
            raise InvalidInventory(f"{where}: id {pid!r} listed twice")
        ids.add(pid)
        projects[name] = ProjectRecord(pid, name, enabled)
    incomplete: dict[str, str] = {}
    raw_incomplete = data.get("incomplete_projects") or []
    if not isinstance(raw_incomplete, list) or not all(isinstance(x, str) for x in raw_incomplete):
        raise InvalidInventory(f"{source}: incomplete_projects must be a list of project names")
    for name in raw_incomplete:
        if name not in projects:
            raise InvalidInventory(f"{source}: incomplete_projects: {name!r} is not in 'projects'")
        incomplete[name] = "marked incomplete by the inventory writer"
    instances: dict[str, list[InstanceRecord]] = {name: [] for name in projects}
    seen_ids: set[str] = set()
    for i, inst in enumerate(raw_instances):
        where = f"{source}: instances[{i}]"
        if not isinstance(inst, dict):
            raise InvalidInventory(f"{where}: expected a mapping")
        extra = set(inst) - {"id", "name", "project", "status", "addresses"}
        if extra:
            raise InvalidInventory(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
        iid = str(inst["id"]) if isinstance(inst.get("id"), int) else _str(inst, "id", where)
        iname = inst.get("name", "")
        if not isinstance(iname, str):
            raise InvalidInventory(f"{where}: name must be a string")
        where = f"{source}: instance {iid} ({iname})"
        if iid in seen_ids:
            raise InvalidInventory(f"{where}: listed twice")
        seen_ids.add(iid)
        project = _str(inst, "project", where)
        if project not in projects:
            raise InvalidInventory(f"{where}: project {project!r} is not in 'projects'")
        status = _str(inst, "status", where).upper()
        raw_addrs = inst.get("addresses")
        if not isinstance(raw_addrs, list):
            raise InvalidInventory(f"{where}: addresses must be a list")
        addrs: list[IPAddress] = []
        for j, a in enumerate(raw_addrs):
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
