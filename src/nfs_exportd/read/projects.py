"""The projects file (the established ``projects.yaml`` format) and what this server serves.

Format: ``NAME: {gid: INT, mounts: {VOLUME: "HOST:/PATH" | true}}``; ``true`` means the
volume is handled elsewhere.  Extension: an optional ``id: KEYSTONE_ID`` binds the name to
that Keystone project id (a listing that shows the name under another id gives it
nothing: ``project-id-changed``).  This server serves the mounts whose HOST is listed in
``serve.hosts``, compared as text: deciding what to export never depends on DNS.

Parsing is pure (``parse_projects`` takes already-loaded YAML data); ``load_projects``
is the small I/O wrapper.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..addresses import AddressError, parse_network
from ..config import Config, ExportOptionsConfig
from ..errors import ConfigError
from ..model import (
    PUBLIC_FILE_PREFIX,
    Mount,
    ProjectSpec,
    PublicExport,
    ServedExport,
)
from ..validate import (
    KEYSTONE_ID_RE,
    check_name,
    normalise_path,
    path_within,
    system_directory,
)
from ..yamlsafe import PROJECTS_MAX_BYTES, YamlRefused, load_file

log = logging.getLogger(__name__)
MAX_GID = 2**32 - 2  # (gid_t)-1 means "no group" to the kernel


@dataclass(frozen=True)
class ProjectsFile:
    projects: Mapping[str, ProjectSpec]
    warnings: tuple[str, ...]


def _is_generated_mounts_file(data: dict[object, object]) -> bool:
    """``{private: {PROJECT: {gid, mounts}}, public: {...}}``, not two projects so named."""
    if "private" not in data or not set(data) <= {"public", "private"}:
        return False
    private = data["private"]
    return isinstance(private, dict) and not ({"gid", "mounts"} & set(private))


def parse_projects(data: object, source: str) -> ProjectsFile:
    """Validate projects data; raise ConfigError naming every offending project."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of project names at the top level")
    errors: list[str] = []
    warnings: list[str] = []
    if _is_generated_mounts_file(data):
        # the original daemon's generated /etc/nfs-mounts.yaml: {public: ..., private: ...}
        public = data.get("public") or {}
        if public:
            warnings.append(
                f"{source}: 'public' entries ({', '.join(sorted(map(str, public)))}) are "
                "not read from here: configure them under public_exports in the config"
            )
        data = data.get("private") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: private: expected a mapping of project names")
    projects: dict[str, ProjectSpec] = {}
    for name, body in data.items():
        where = f"{source}: project {name!r}"
        try:
            check_name(name, "project")
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        if not isinstance(body, dict):
            errors.append(f"{where}: expected a mapping with 'gid' and 'mounts'")
            continue
        unknown = set(body) - {"gid", "mounts", "id"}
        if unknown:
            errors.append(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
            continue
        gid = body.get("gid")
        if not isinstance(gid, int) or isinstance(gid, bool) or not 0 <= gid <= MAX_GID:
            errors.append(f"{where}: gid must be an integer from 0 to {MAX_GID}, got {gid!r}")
            continue
        keystone_id = body.get("id")
        if keystone_id is not None and (
            not isinstance(keystone_id, str) or not KEYSTONE_ID_RE.fullmatch(keystone_id)
        ):
            errors.append(
                f"{where}: id must be a Keystone project id (1-64 letters, digits, '-' or "
                f"'_'), got {keystone_id!r}"
            )
            continue
        mounts_data = body.get("mounts", {}) or {}
        if not isinstance(mounts_data, dict):
            errors.append(f'{where}: mounts must be a mapping VOLUME: "HOST:/PATH" | true')
            continue
        mounts: list[Mount] = []
        skipped: list[str] = []
        for volume, target in mounts_data.items():
            vwhere = f"{where}: mount {volume!r}"
            try:
                check_name(volume, "volume")
            except ValueError as exc:
                errors.append(f"{vwhere}: {exc}")
                continue
            if target is True:
                skipped.append(volume)
                continue
            if not isinstance(target, str) or ":" not in target:
                errors.append(f'{vwhere}: expected "HOST:/PATH" or true, got {target!r}')
                continue
            host, _, raw_path = target.partition(":")
            host = host.strip().lower().rstrip(".")
            if not host or not all(c.isascii() and (c.isalnum() or c in ".-") for c in host):
                errors.append(f"{vwhere}: invalid host {host!r}")
                continue
            try:
                path, changed = normalise_path(raw_path)
            except ValueError as exc:
                errors.append(f"{vwhere}: {exc}")
                continue
            if path == "/":
                errors.append(f"{vwhere}: path '/' is the whole file system, never a volume")
                continue
            if changed:
                warnings.append(f"{vwhere}: path {raw_path!r} normalised to {path!r}")
            mounts.append(Mount(project=name, volume=volume, host=host, path=path))
        projects[name] = ProjectSpec(name, gid, tuple(mounts), tuple(skipped), keystone_id)
    if errors:
        raise ConfigError("\n".join(errors))

    by_id: dict[str, list[str]] = {}
    for spec in projects.values():
        if spec.keystone_id is not None:
            by_id.setdefault(spec.keystone_id, []).append(spec.name)
    for kid, names in sorted(by_id.items()):
        if len(names) > 1:
            errors.append(f"{source}: id {kid} given for projects {', '.join(names)}")
    by_gid: dict[int, list[str]] = {}
    for spec in projects.values():
        by_gid.setdefault(spec.gid, []).append(spec.name)
    for gid, names in sorted(by_gid.items()):
        if len(names) > 1:
            errors.append(f"{source}: duplicate gid {gid} in projects {', '.join(names)}")

    # One path served for two projects, or a path inside another project's path, on one host.
    by_host: dict[str, list[Mount]] = {}
    for spec in projects.values():
        for m in spec.mounts:
            by_host.setdefault(m.host, []).append(m)
    errors.extend(_path_conflicts(by_host.items(), source))
    if errors:
        raise ConfigError("\n".join(errors))
    return ProjectsFile(projects, tuple(warnings))


def _path_conflicts(groups: Iterable[tuple[str, Sequence[Mount]]], source: str) -> list[str]:
    errors: list[str] = []
    for host, mounts in groups:
        # by components, so that everything below a path directly follows it
        ordered = sorted(mounts, key=lambda m: m.path.split("/"))
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                if not path_within(b.path, a.path):
                    break
                if a.project == b.project and a.path != b.path:
                    continue  # nesting inside one project is that project's business
                if a.path == b.path:
                    what = "the same path"
                    if a.project == b.project:
                        errors.append(
                            f"{source}: project {a.project!r}: volumes {a.volume!r} and "
                            f"{b.volume!r} use the same path {host}:{a.path}"
                        )
                        continue
                else:
                    what = "a path inside another project's path"
                errors.append(
                    f"{source}: projects {a.project!r} and {b.project!r} use {what}: "
                    f"{host}:{a.path} ({a.project}/{a.volume}) and {host}:{b.path} "
                    f"({b.project}/{b.volume})"
                )
    return errors


def load_projects(path: Path, max_bytes: int = PROJECTS_MAX_BYTES) -> ProjectsFile:
    try:
        data = load_file(path, max_bytes, "the projects file", "projects_file_max_bytes")
    except FileNotFoundError:
        raise ConfigError(f"{path}: projects file not found (config key projects_file)") from None
    except YamlRefused as exc:
        raise ConfigError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read projects file: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_projects(data, str(path))


@dataclass(frozen=True)
class ServedSet:
    """What this server exports: private exports per project, and public exports."""

    private: Mapping[str, tuple[ServedExport, ...]]  # project -> exports, every project listed
    public: tuple[PublicExport, ...]
    ids: Mapping[str, str] = field(default_factory=dict)  # project -> the file's ``id:``


def served_exports(
    projects: ProjectsFile,
    hosts: Sequence[str],
    options: ExportOptionsConfig,
    public: Mapping[str, tuple[str, Sequence[str], str | None]],
    source: str,
) -> ServedSet:
    """Select the mounts whose HOST is one of ``hosts`` (text match) and attach options.

    Raises ConfigError for conflicts that only appear once several hosts are served
    together or public exports are added (paths overlapping across hosts or projects).
    """
    wanted = {h.lower().rstrip(".") for h in hosts}
    private: dict[str, tuple[ServedExport, ...]] = {}
    all_served: list[Mount] = []
    for spec in projects.projects.values():
        mine = [m for m in spec.mounts if m.host in wanted]
        if not mine:
            continue
        all_served.extend(mine)
        private[spec.name] = tuple(
            ServedExport(m.project, m.volume, m.path, options.for_mount(m.project, m.volume))
            for m in mine
        )
    errors = _path_conflicts([("this server", all_served)], source) if len(wanted) > 1 else []
    pubs: list[PublicExport] = []
    public_paths: dict[str, str] = {}
    for name, (raw_path, raw_clients, opts) in sorted(public.items()):
        where = f"{source}: public_exports.{name}"
        try:
            path, _ = normalise_path(raw_path)
        except ValueError as exc:
            errors.append(f"{where}.path: {exc}")
            continue
        if path == "/":
            errors.append(f"{where}.path: '/' is the whole file system, never an export")
            continue
        clients: list[str] = []
        for i, c in enumerate(raw_clients):
            try:  # the one address grammar: what the renderer accepts, and nothing else
                clients.append(str(parse_network(c)))
            except AddressError as exc:
                errors.append(f"{where}.clients[{i}]: {exc}")
        for m in all_served:
            if path_within(m.path, path) or path_within(path, m.path):
                errors.append(
                    f"{where}.path: {path} overlaps project {m.project!r} volume {m.volume!r} "
                    f"({m.path})"
                )
        if path in public_paths:  # one owner per path (decide refuses the plan otherwise)
            errors.append(
                f"{where}.path: {path} is also public_exports.{public_paths[path]}.path: "
                "give one public export all its clients"
            )
        public_paths.setdefault(path, name)
        if (PUBLIC_FILE_PREFIX + name) in projects.projects:
            errors.append(f"{where}: name collides with project {PUBLIC_FILE_PREFIX + name!r}")
        pubs.append(PublicExport(name, path, tuple(clients), opts or options.default))
    if errors:
        raise ConfigError("\n".join(errors))
    ids = {s.name: s.keystone_id for s in projects.projects.values() if s.keystone_id}
    return ServedSet(private, tuple(pubs), ids)


def served_from_config(cfg: Config, projects: ProjectsFile) -> ServedSet:
    public = {name: (p.path, tuple(p.clients), p.options) for name, p in cfg.public_exports.items()}
    return served_exports(
        projects, cfg.serve.hosts, cfg.export_options, public, str(cfg.source_path)
    )


@dataclass(frozen=True)
class PathSafety:
    """Served paths that are not what they say, as read from the file system now.

    ``unsafe``: a system directory, a serve root itself (it exports every volume
    below it), or a path whose real path differs from it (any
    component a symlink: exportfs would export the target, another volume): its pairs
    in force leave at once, nothing is added.  ``held``: outside ``serve.roots`` (a
    config matter, not proof of a leak) or the real path could not be read: nothing is
    added, what is in force stays (fail static).  Both map path -> why.
    """

    unsafe: Mapping[str, str]
    held: Mapping[str, str]


def check_served_paths(paths: Iterable[str], roots: Sequence[str]) -> PathSafety:
    """Check every served path against ``roots`` and its real path (reads the file system)."""
    unsafe: dict[str, str] = {}
    held: dict[str, str] = {}
    for path in sorted(set(paths)):
        system = system_directory(path)
        if system is not None:
            unsafe[path] = (
                f"{path} is or lies in a system directory ({system}): never exported; "
                "fix the volume's path"
            )
            continue
        if path in roots:
            unsafe[path] = (
                f"{path} is a serve root itself: exporting it exports every volume below it; "
                "a volume must lie strictly below a root: fix the volume's path"
            )
            continue
        if not any(path_within(path, root) for root in roots):
            held[path] = (
                f"{path} is outside serve.roots ({', '.join(roots)}): not exported; add its "
                "root to serve.roots or fix the volume's path"
            )
            continue
        try:
            real = os.path.realpath(path, strict=True)
        except FileNotFoundError:
            real = os.path.realpath(path)  # missing (path-missing); its parents still count
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                unsafe[path] = f"{path} is a symlink loop: replace it with a directory"
            else:
                held[path] = (
                    f"cannot resolve {path} ({exc.strerror or exc}): what is in force is kept "
                    "until it can be checked"
                )
            continue
        if real != path:
            unsafe[path] = (
                f"{path} resolves to {real} (a symlink in the path): exportfs would export "
                f"{real}; replace the symlink with a real directory"
            )
    return PathSafety(unsafe, held)
