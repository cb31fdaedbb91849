"""The daemon's config file: its keys are public contract (extended, never renamed),
validated strictly.

Unknown keys are errors (a typo must not silently fall back to a default), and every
message names the file and the dotted key.  Relative paths resolve against the config
file's directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .ganesha_options import ganesha_option_problem
from .records import describe
from .validate import check_name, check_root
from .yamlsafe import (
    CONFIG_MAX_BYTES,
    INVENTORY_MAX_BYTES,
    MIB,
    PROJECTS_MAX_BYTES,
    YamlRefused,
    loads,
    read_bounded,
)

DEFAULT_CONFIG = Path("/etc/nfs-exportd/config.yaml")
DEFAULT_OPTIONS = "rw,sync,no_subtree_check,root_squash"

# exports(5) option lists: comma-separated words, values without spaces or parentheses.
OPTIONS_RE = re.compile(r"[a-z0-9_]+(=[A-Za-z0-9_:./@+-]+)?(,[a-z0-9_]+(=[A-Za-z0-9_:./@+-]+)?)*")
# Options that would widen access beyond the listed clients or are not per-client.
FORBIDDEN_OPTIONS = frozenset({"insecure_locks", "no_auth_nlm"})


def check_options(value: str) -> str:
    value = value.strip()
    if not OPTIONS_RE.fullmatch(value):
        raise ValueError(
            f"invalid export options {value!r}: expected comma-separated words like "
            f"{DEFAULT_OPTIONS!r} (no spaces, parentheses or leading '-')"
        )
    bad = FORBIDDEN_OPTIONS.intersection(o.split("=", 1)[0] for o in value.split(","))
    if bad:
        raise ValueError(f"export option(s) {', '.join(sorted(bad))} are not allowed")
    return value


Options = Annotated[str, Field(min_length=1), AfterValidator(check_options)]


def _int_to_float(v: Any) -> Any:
    """Strict mode would reject a plain ``1`` for a float: accept ints, not bools or text."""
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:  # 10**400: no float; say so as a validation error
            raise ValueError("number too large") from None
    return v


# Every number in the config is finite (YAML's .inf and .nan are refused: an infinite
# timeout disables it, an infinite interval kills ``run``) and has an upper bound.
Number = Annotated[float, BeforeValidator(_int_to_float), Field(allow_inf_nan=False)]
DAY = 86400.0
HOUR = 3600.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class ServeConfig(_Strict):
    hosts: list[str] = Field(min_length=1)
    # every served path (private and public) must lie below one of these; no system dir
    roots: list[Annotated[str, AfterValidator(check_root)]] = Field(
        default_factory=lambda: ["/srv"], min_length=1
    )

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", host):
                raise ValueError(f"invalid host name {host!r}")
        return [h.lower().rstrip(".") for h in hosts]


class ExportOptionsConfig(_Strict):
    default: Options = DEFAULT_OPTIONS
    volumes: dict[str, Options] = Field(default_factory=dict)
    projects: dict[str, dict[str, Options]] = Field(default_factory=dict)

    def for_mount(self, project: str, volume: str) -> str:
        """Project/volume override, then volume override, then the default."""
        per_project = self.projects.get(project, {})
        if volume in per_project:
            return per_project[volume]
        return self.volumes.get(volume, self.default)


class PublicExportConfig(_Strict):
    path: str
    clients: list[str] = Field(min_length=1)
    options: Options | None = None


class InventoryConfig(_Strict):
    source: Literal["static", "openstack"] = "openstack"
    cloud: str | list[str] = "novaobserver"  # clouds.yaml entry, or entries tried in order
    identity_cloud: str | None = None  # clouds.yaml entry for Keystone (default: cloud)
    mode: Literal["all-projects", "per-project"] = "all-projects"
    file: Path | None = None
    regions: list[str] | None = None  # default: every region with a compute endpoint
    timeout_seconds: Number = Field(default=30, gt=0, le=HOUR)
    # 16: measured (bench/concurrency.py, 1,000 NFS projects, 20 ms): 8 -> 6.0 s, 16 -> 3.6 s,
    # 32 -> 3.2 s a warm cycle; beyond 16 the reading process's CPU bounds it
    concurrency: int = Field(default=16, ge=1, le=64)
    include_floating_ips: bool = False
    file_max_bytes: int = Field(default=INVENTORY_MAX_BYTES, ge=1024, le=1024 * MIB)

    @field_validator("cloud")
    @classmethod
    def _clouds(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("at least one clouds.yaml entry is needed")
        return v

    @property
    def clouds(self) -> tuple[str, ...]:
        return (self.cloud,) if isinstance(self.cloud, str) else tuple(self.cloud)


class SafetyConfig(_Strict):
    removal_confirmations: int = Field(default=3, ge=1, le=1000)
    max_removal_fraction: Number = Field(default=0.25, gt=0, le=1)
    min_removal_count: int = Field(default=10, ge=0, le=1_000_000)
    removal_min_age_seconds: Number = Field(default=3600, ge=0, le=90 * DAY)
    disabled_projects: Literal["keep", "remove"] = "keep"
    # project deletions (a project's pairs going as project-deleted) allowed per window;
    # more are held (too-much-change) until sync --force: a Keystone listing that
    # silently lost projects deletes them all at once
    max_project_deletions: int = Field(default=2, ge=0, le=1_000_000)
    project_deletion_window_seconds: Number = Field(default=DAY, gt=0, le=90 * DAY)
    # a project whose instance count falls, between two complete listings, by more than
    # this share and by more than project_shrink_min_count instances holds its removals
    # (inventory-shrink, naming it) until sync --force: a silently short page of one
    # project slips under every bound on the whole cloud
    max_project_shrink_fraction: Number = Field(default=0.5, gt=0, le=1)
    project_shrink_min_count: int = Field(default=2, ge=0, le=1_000_000)
    # a complete cycle counts toward confirmations only this long after the last one
    # that counted; default (null) 0.5 x interval_seconds: no burst of cycles removes
    # access faster than polling
    confirmation_spacing_seconds: Number | None = Field(default=None, ge=0, le=DAY)


def _listen(value: str) -> str:
    split_listen(value)
    return value


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); ValueError naming the problem."""
    m = re.fullmatch(
        r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<p>\d+)|(?P<h>[A-Za-z0-9.-]+):(?P<p2>\d+)", value
    )
    if not m:
        raise ValueError(f"expected HOST:PORT or [IPV6]:PORT, got {value!r}")
    port = int(m.group("p") or m.group("p2"))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return (m.group("v6") or m.group("h"), port)


class MetricsConfig(_Strict):
    """Prometheus: an HTTP endpoint and/or a node-exporter textfile; both off by default."""

    listen: Annotated[str, AfterValidator(_listen)] | None = None  # e.g. "127.0.0.1:9464"
    textfile: Path | None = None  # e.g. /var/lib/prometheus/node-exporter/nfs_exportd.prom

    @field_validator("textfile", mode="before")
    @classmethod
    def _path(cls, v: Any) -> Any:
        return Path(v) if isinstance(v, str) else v


class CheckConfig(_Strict):
    """Thresholds of ``nfs-exportd check`` (Nagios/Icinga plugin)."""

    warning_after_seconds: Number = Field(default=900, gt=0, le=30 * DAY)  # held/stale this long
    critical_after_seconds: Number = Field(default=3600, gt=0, le=30 * DAY)  # no complete inventory


class MaintenanceConfig(_Strict):
    # a maintenance flag older than this is a WARNING in ``check``: forgotten flags are
    # how removals silently stop
    max_age_seconds: Number = Field(default=86400, gt=0, le=365 * DAY)


class HistoryConfig(_Strict):
    retention_days: Number = Field(default=90, gt=0, le=3650)  # journal entries older than this go
    max_entries: int = Field(default=1000, ge=2, le=1_000_000)  # and never more than this many


class DiagnoseSource(_Strict):
    """Where ``diagnose`` reads refusal lines: a log file, or the journal by unit or by
    SYSLOG_IDENTIFIER (``journalctl -o json``, optionally of a journal directory)."""

    kind: Literal["file", "journal"]
    path: Path | None = None  # kind file: Ganesha's log, a syslog file, rpc.mountd's stderr
    unit: str | None = Field(default=None, pattern=r"^[A-Za-z0-9@._:-]+$")  # journalctl -u
    identifier: str | None = Field(default=None, pattern=r"^[A-Za-z0-9@._:-]+$")  # -t
    directory: Path | None = None  # journalctl -D (default: the system journal)

    @field_validator("path", "directory", mode="before")
    @classmethod
    def _path(cls, v: Any) -> Any:
        return Path(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _complete(self) -> DiagnoseSource:
        if self.kind == "file" and (self.path is None or self.unit or self.identifier):
            raise ValueError("kind file needs path (and no unit or identifier)")
        if self.kind == "journal" and (
            self.path is not None or (self.unit is None) == (self.identifier is None)
        ):
            raise ValueError("kind journal needs one of unit or identifier (and no path)")
        return self

    def label(self) -> str:
        if self.kind == "file":
            return f"file:{self.path}"
        where = f"@{self.directory}" if self.directory else ""
        if self.unit:
            return f"journal-unit:{self.unit}{where}"
        return f"journal-id:{self.identifier}{where}"


# The defaults of a Debian server with systemd: rpc.mountd logs to syslog, which journald
# keeps (SYSLOG_IDENTIFIER rpc.mountd); Debian's nfs-ganesha writes its own log file.
DEBIAN_SOURCES = {
    "exportfs": (DiagnoseSource(kind="journal", identifier="rpc.mountd"),),
    "ganesha": (DiagnoseSource(kind="file", path=Path("/var/log/ganesha/ganesha.log")),),
}


class DiagnoseConfig(_Strict):
    """``nfs-exportd diagnose``: where the refusal lines are, the default window, and an
    optional node-exporter textfile for the refusal counts by cause."""

    sources: list[DiagnoseSource] | None = None  # null: DEBIAN_SOURCES for the backend
    window_seconds: Number = Field(default=900, gt=0, le=30 * DAY)  # --since default
    timeout_seconds: Number = Field(default=30, gt=0, le=HOUR)  # journalctl, DBus
    metrics_textfile: Path | None = None

    @field_validator("metrics_textfile", mode="before")
    @classmethod
    def _path(cls, v: Any) -> Any:
        return Path(v) if isinstance(v, str) else v

    def sources_for(self, backend: str) -> tuple[DiagnoseSource, ...]:
        return tuple(self.sources) if self.sources is not None else DEBIAN_SOURCES[backend]


def _transport_url(value: str) -> str:
    if not re.fullmatch(r"(rabbit|amqp|kombu\+[a-z]+)://\S+", value):
        raise ValueError(
            "expected an oslo.messaging transport URL like "
            "'rabbit://USER:PASSWORD@HOST:5672/VHOST' (several hosts: comma-separated)"
        )
    return value


Topic = Literal["notifications", "versioned_notifications"]


def _default_topics() -> list[Topic]:
    return ["notifications"]


class NotificationsConfig(_Strict):
    """Listen to the cloud's own notifications (oslo.messaging, as designate-sink and
    ceilometer do) and run a cycle early when one says something changed.  A trigger,
    never evidence: the full listing decides everything."""

    enabled: bool = False
    # a secret (its password): never logged, registered with the redaction filter
    transport_url: Annotated[str, AfterValidator(_transport_url)] | None = None
    topics: list[Topic] = Field(default_factory=lambda: _default_topics(), min_length=1)
    exchanges: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]] = Field(
        default_factory=lambda: ["nova", "neutron", "keystone"], min_length=1
    )
    # a queue of our own on each exchange: we get our copy, never steal others' messages;
    # default nfs-exportd-<host name>
    pool: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")] | None = None
    retry_max_seconds: Number = Field(default=30, ge=1, le=HOUR)  # reconnect backoff cap
    # ``check`` warns when the bus has been unusable this long
    warning_after_seconds: Number = Field(default=600, gt=0, le=30 * DAY)


class ChangePollingConfig(_Strict):
    """Between full cycles, ask Nova (changes-since) and Neutron (changed_since) only what
    changed; anything new runs a cycle early.  2 requests per region per poll."""

    enabled: bool = False
    poll_seconds: Number = Field(default=5, ge=1, le=HOUR)


class EarlyCyclesConfig(_Strict):
    """How triggers (notifications, change polling) turn into cycles."""

    # events within this window after the first one make one cycle
    debounce_seconds: Number = Field(default=0.5, ge=0, le=600)
    # at least this long from the end of one cycle to the start of an early one
    min_gap_seconds: Number = Field(default=2, ge=0, le=DAY)
    # early cycles wait while the last minute's control-plane requests (cycles and
    # change polls) plus one more cycle would exceed this
    max_requests_per_minute: int = Field(default=600, ge=1, le=1_000_000)


EXPORT_ID_MAX = 65535  # Export_Id is a uint16 in Ganesha 4.3 (90000 is refused)
KERNEL_EXPORTS_DIR = Path("/etc/exports.d")


class GaneshaConfig(_Strict):
    """``backend: ganesha``: one generated EXPORT file per exported path in ``conf_dir``
    (which ganesha.conf ``%dir``-includes), applied one by one over DBus; conf_dir is also
    the record of what is in force (exports_dir is not used)."""

    conf_dir: Path = Path("/etc/ganesha/nfs-exportd.d")
    # where a conf file is written before its rename into conf_dir: never inside it
    # (Ganesha's %dir include reads every file there, hidden ones too), same filesystem;
    # default: the sibling ``<conf_dir>.staging``
    staging_dir: Path | None = None
    # "system" (the system bus; DBUS_SYSTEM_BUS_ADDRESS is honoured) or a D-Bus address
    dbus_address: str = Field(default="system", min_length=1, max_length=1024)
    timeout_seconds: Number = Field(default=30, gt=0, le=600)
    export_id_min: int = Field(default=1000, ge=1, le=EXPORT_ID_MAX)
    export_id_max: int = Field(default=EXPORT_ID_MAX, ge=1, le=EXPORT_ID_MAX)

    @field_validator("conf_dir", "staging_dir", mode="before")
    @classmethod
    def _path(cls, v: Any) -> Any:
        return Path(v) if isinstance(v, str) else v

    @field_validator("dbus_address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v != "system" and not re.fullmatch(r"(unix|tcp):[A-Za-z0-9_=,./:@+-]+", v):
            raise ValueError(
                f"expected 'system' or a D-Bus address like 'unix:path=/run/dbus/"
                f"system_bus_socket', got {v!r}"
            )
        return v

    @property
    def staging(self) -> Path:
        if self.staging_dir is not None:
            return self.staging_dir
        return self.conf_dir.with_name(self.conf_dir.name + ".staging")


class Config(_Strict):
    projects_file: Path
    projects_file_max_bytes: int = Field(default=PROJECTS_MAX_BYTES, ge=1024, le=1024 * MIB)
    serve: ServeConfig
    export_options: ExportOptionsConfig = Field(default_factory=ExportOptionsConfig)
    public_exports: dict[str, PublicExportConfig] = Field(default_factory=dict)
    inventory: InventoryConfig = Field(default_factory=InventoryConfig)
    exports_dir: Path = Path("/etc/exports.d")
    state_dir: Path = Path("/var/lib/nfs-exportd")
    exportfs_command: list[str] = Field(
        default_factory=lambda: ["sudo", "-n", "/usr/sbin/exportfs"], min_length=1
    )
    exportfs_timeout_seconds: Number = Field(default=60, gt=0, le=HOUR)
    etab_file: Path = Path("/var/lib/nfs/etab")  # extension: where exportfs keeps its state
    maintenance_file: Path = Path("/etc/nfs-exportd/maintenance")
    interval_seconds: Number = Field(default=60, ge=1, le=DAY)
    backend: Literal["exportfs", "ganesha"] = "exportfs"
    ganesha: GaneshaConfig = Field(default_factory=GaneshaConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    check: CheckConfig = Field(default_factory=CheckConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    diagnose: DiagnoseConfig = Field(default_factory=DiagnoseConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    change_polling: ChangePollingConfig = Field(default_factory=ChangePollingConfig)
    early_cycles: EarlyCyclesConfig = Field(default_factory=EarlyCyclesConfig)

    # Where this config came from; set by load_config, not a key in the file.
    source_path: Path = Field(default=Path("config.yaml"), exclude=True)
    source_text: str = Field(default="", exclude=True)  # the text it was read from

    @field_validator(
        "projects_file",
        "exports_dir",
        "state_dir",
        "maintenance_file",
        "etab_file",
        mode="before",
    )
    @classmethod
    def _path(cls, v: Any) -> Any:
        return Path(v) if isinstance(v, str) else v


InventoryConfig.model_rebuild()


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p)


def load_config(path: Path) -> Config:
    """Read, validate and resolve one config file, or raise ConfigError naming the culprit."""
    try:
        text = read_bounded(path, CONFIG_MAX_BYTES, "the config file")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except YamlRefused as exc:  # larger than the bound
        raise ConfigError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return load_config_text(text, path)


def load_config_text(text: str, path: Path) -> Config:
    """``load_config`` of ``text`` as if it were the file ``path`` (relative paths resolve
    against its directory): the read-only commands use the copy of the config the last
    cycle ran with when the file on disk is broken."""
    try:
        data = loads(text, str(path))
    except YamlRefused as exc:
        raise ConfigError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    # YAML gives plain str for paths; the strict model wants the types it declares.
    inv = data.get("inventory")
    if isinstance(inv, dict) and isinstance(inv.get("file"), str):
        inv = dict(inv)
        inv["file"] = Path(inv["file"])
        data = {**data, "inventory": inv}
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(describe(exc, str(path)))) from None
    base = path.resolve().parent
    inv_cfg = cfg.inventory
    if inv_cfg.source == "static" and inv_cfg.file is None:
        raise ConfigError(f"{path}: inventory.file: required when inventory.source is static")
    if cfg.check.warning_after_seconds > cfg.check.critical_after_seconds:
        raise ConfigError(
            f"{path}: check.warning_after_seconds: must not exceed check.critical_after_seconds"
        )
    notes = cfg.notifications
    if notes.enabled and notes.transport_url is None:
        raise ConfigError(
            f"{path}: notifications.transport_url: required when notifications.enabled is "
            "true (e.g. rabbit://USER:PASSWORD@rabbitmq.svc:5672/)"
        )
    if cfg.change_polling.enabled and (
        inv_cfg.source != "openstack" or inv_cfg.mode != "all-projects"
    ):
        raise ConfigError(
            f"{path}: change_polling.enabled: needs inventory.source: openstack with "
            "inventory.mode: all-projects (changes-since of all projects is an admin "
            "listing; a static inventory has no change API); turn it off or use notifications"
        )
    for name in cfg.public_exports:
        try:
            check_name(name, "public export")
        except ValueError as exc:
            raise ConfigError(f"{path}: public_exports.{name}: {exc}") from None
    exports_dir = cfg.exports_dir
    ganesha = cfg.ganesha
    if cfg.backend == "ganesha":
        if "exports_dir" not in cfg.model_fields_set:
            # unused with ganesha (conf_dir is what is in force); never where the
            # kernel server would read, should the backend be switched back
            exports_dir = cfg.state_dir / "exports.d"
        ganesha = _check_ganesha(path, cfg, _resolve(base, exports_dir), base)
    new_inv = inv_cfg.model_copy(
        update={"file": _resolve(base, inv_cfg.file) if inv_cfg.file else None}
    )
    return cfg.model_copy(
        update={
            "projects_file": _resolve(base, cfg.projects_file),
            "exports_dir": _resolve(base, exports_dir),
            "ganesha": ganesha,
            "state_dir": _resolve(base, cfg.state_dir),
            "maintenance_file": _resolve(base, cfg.maintenance_file),
            "etab_file": _resolve(base, cfg.etab_file),
            "inventory": new_inv,
            "metrics": cfg.metrics.model_copy(
                update={"textfile": _resolve(base, cfg.metrics.textfile)}
            )
            if cfg.metrics.textfile
            else cfg.metrics,
            "diagnose": _resolve_diagnose(base, cfg.diagnose),
            "source_path": path,
            "source_text": text,
        }
    )


def _resolve_diagnose(base: Path, d: DiagnoseConfig) -> DiagnoseConfig:
    sources = None
    if d.sources is not None:
        sources = [
            s.model_copy(
                update={
                    "path": _resolve(base, s.path) if s.path else None,
                    "directory": _resolve(base, s.directory) if s.directory else None,
                }
            )
            for s in d.sources
        ]
    textfile = _resolve(base, d.metrics_textfile) if d.metrics_textfile else None
    return d.model_copy(update={"sources": sources, "metrics_textfile": textfile})


def _check_ganesha(path: Path, cfg: Config, exports_dir: Path, base: Path) -> GaneshaConfig:
    """The ganesha section resolved, and the combinations that cannot work refused."""
    g = cfg.ganesha
    conf_dir = _resolve(base, g.conf_dir)
    staging = _resolve(base, g.staging)
    g = g.model_copy(update={"conf_dir": conf_dir, "staging_dir": staging})
    if g.export_id_min > g.export_id_max:
        raise ConfigError(
            f"{path}: ganesha.export_id_min: {g.export_id_min} is above ganesha.export_id_max "
            f"{g.export_id_max}; give a range low..high"
        )
    if exports_dir.resolve() == KERNEL_EXPORTS_DIR:
        raise ConfigError(
            f"{path}: exports_dir: {KERNEL_EXPORTS_DIR} is read by the kernel NFS server, and "
            "with backend: ganesha exports_dir is unused; remove the key (default: "
            "STATE_DIR/exports.d) or name another directory"
        )
    if conf_dir.resolve() == exports_dir.resolve():
        raise ConfigError(
            f"{path}: ganesha.conf_dir: must not be exports_dir ({exports_dir}); "
            "give Ganesha a directory of its own, e.g. /etc/ganesha/nfs-exportd.d"
        )
    if staging.resolve() == conf_dir.resolve() or conf_dir.resolve() in staging.resolve().parents:
        raise ConfigError(
            f"{path}: ganesha.staging_dir: {staging} lies in ganesha.conf_dir, whose every "
            "file Ganesha reads; name a sibling directory on the same filesystem"
        )
    sources: list[tuple[str, str]] = [("export_options.default", cfg.export_options.default)]
    sources += [(f"export_options.volumes.{v}", o) for v, o in cfg.export_options.volumes.items()]
    sources += [
        (f"export_options.projects.{p}.{v}", o)
        for p, vols in cfg.export_options.projects.items()
        for v, o in vols.items()
    ]
    sources += [
        (f"public_exports.{n}.options", e.options)
        for n, e in cfg.public_exports.items()
        if e.options is not None
    ]
    for key, options in sources:
        problem = ganesha_option_problem(options)
        if problem is not None:
            raise ConfigError(f"{path}: {key}: {problem}")
    return g
