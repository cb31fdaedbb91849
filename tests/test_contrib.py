"""The operations files in contrib/: the systemd unit, the sudoers rule, the Grafana dashboard.

Each is checked by the real tool where it can run (``systemd-analyze verify``, ``visudo -c``;
as root the Debian package is installed when the tool is missing, never skipped in CI) and
against the daemon itself, so that the files and the code cannot drift apart silently: the
unit's paths against the config defaults, the sudoers command against what the exportfs
backend actually runs, the dashboard's metric names against the metrics the daemon exports.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nfs_exportd.cli import build_parser
from nfs_exportd.commands.run import Loop
from nfs_exportd.config import DEFAULT_CONFIG, Config
from nfs_exportd.errors import EXIT_USAGE
from nfs_exportd.ops import metrics as daemon_metrics
from nfs_exportd.ops.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "contrib" / "systemd" / "nfs-exportd.service"
SUDOERS = ROOT / "contrib" / "sudoers.d" / "nfs-exportd"
DASHBOARD = ROOT / "contrib" / "grafana" / "nfs-exportd.json"
EXPORTFS_BACKEND = ROOT / "src" / "nfs_exportd" / "apply" / "exportfs.py"

IN_CI = bool(os.environ.get("CI"))
IS_ROOT = os.geteuid() == 0


# --------------------------------------------------------------------------- tools


def _have_package(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and proc.stdout.strip() == "install ok installed"


def tool(binary: str, package: str) -> str | None:
    """The path of ``binary``; as root, install Debian ``package`` first if it is missing.

    Returns None only when it cannot be had (not root, or no apt): the caller then falls
    back to its own checks, and fails instead in CI.
    """
    found = shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found:
        return found
    if not IS_ROOT or shutil.which("apt-get") is None:
        return None
    if not _have_package(package):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
        first = subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=600)
        if first.returncode != 0:  # the package lists may be missing or stale
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600)
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    return shutil.which(binary, path="/usr/bin:/usr/sbin:/bin:/sbin")


def missing_tool(binary: str, package: str) -> None:
    msg = f"{binary} is missing (Debian package {package}; run as root to have it installed)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg + "; the parser checks still ran")


# --------------------------------------------------------------------------- systemd unit

# Settings the unit must not have (see the comments in the unit).  NoNewPrivileges breaks the
# set-uid sudo; per systemd.exec(5) (systemd 252) each setting in IMPLY_NO_NEW_PRIVILEGES
# implies NoNewPrivileges=yes in a unit with User= (no CAP_SYS_ADMIN), and DynamicUser= does
# always.  The others break exportfs itself: a private network namespace, a read-only
# /proc/fs, a /proc without /proc/net, or a sudo without root's capabilities.
IMPLY_NO_NEW_PRIVILEGES = {
    "PrivateDevices",
    "ProtectClock",
    "ProtectHostname",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "SystemCallFilter",
    "SystemCallArchitectures",
    "SystemCallLog",
}
FORBIDDEN_KEYS = IMPLY_NO_NEW_PRIVILEGES | {
    "NoNewPrivileges",
    "DynamicUser",
    "PrivateNetwork",
    "PrivateUsers",
    "CapabilityBoundingSet",
    "ProcSubset",
}


def unit_assignments(text: str) -> list[tuple[str, str, str]]:
    """Every ``(section, key, value)`` in file order (a key may repeat, e.g. After=)."""
    out: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{UNIT.name}: not an assignment: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def unit_values(section: str, key: str) -> list[str]:
    """All space-separated values of a (possibly repeated) list setting."""
    text = UNIT.read_text(encoding="utf-8")
    return [
        v for s, k, val in unit_assignments(text) if (s, k) == (section, key) for v in val.split()
    ]


def seconds(span: str) -> float:
    """A systemd time span ("10min", "90", "1h 30s") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "ms": 0.001}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), span
    for number, unit in parts:
        assert unit in units, f"time span {span!r}: unit {unit!r}"
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    text = UNIT.read_text(encoding="utf-8")
    assert "\\\n" not in text, "no line continuations: keep one setting per line"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text, source=str(UNIT))
    return parser


def test_unit_service_type_watchdog_and_stop(unit: configparser.ConfigParser) -> None:
    svc = unit["Service"]
    assert svc["Type"] == "notify"
    assert svc["NotifyAccess"] == "main"
    # The daemon pings at half of WATCHDOG_USEC from a thread, also during a long cycle;
    # a cycle may take minutes, so the watchdog must not be a matter of seconds.
    assert seconds(svc["WatchdogSec"]) >= 60
    # SIGTERM lets the cycle finish: at least as long as the daemon's own bound on a healthy
    # cycle with the default timeouts (past it, the watchdog pings stop)
    default_cfg = SimpleNamespace(cfg=Config.model_construct())
    deadline = Loop.cycle_deadline(default_cfg)  # type: ignore[arg-type]
    assert deadline > 300
    assert seconds(svc["TimeoutStopSec"]) >= deadline
    assert seconds(svc["TimeoutStartSec"]) >= 30
    # SIGTERM to the daemon only, not to the sudo/exportfs the cycle is waiting for.
    assert svc["KillMode"] == "mixed"
    assert svc["Restart"] == "on-failure"
    assert str(EXIT_USAGE) in svc["RestartPreventExitStatus"].split()
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_unit_execstart_is_what_the_cli_accepts(unit: configparser.ConfigParser) -> None:
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv == ["/usr/bin/nfs-exportd", "--config", str(DEFAULT_CONFIG), "run"]
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.config) == ("run", DEFAULT_CONFIG)
    # the unit's comment offers --log-format json
    json_args = build_parser().parse_args([*argv[1:-1], "--log-format", "json", "run"])
    assert json_args.log_format == "json"


def test_unit_user_state_and_writable_paths(unit: configparser.ConfigParser) -> None:
    svc = unit["Service"]
    assert (svc["User"], svc["Group"]) == ("nfsmanager", "nfsmanager")
    defaults = {name: f.default for name, f in Config.model_fields.items()}
    assert Path("/var/lib") / svc["StateDirectory"] == defaults["state_dir"]
    assert svc["ProtectSystem"] == "strict"
    writable = {Path(p.lstrip("-")) for p in unit_values("Service", "ReadWritePaths")}
    # the daemon writes exports_dir and state_dir; exportfs (as root) writes the etab's dir
    needed = {defaults["exports_dir"], defaults["state_dir"], defaults["etab_file"].parent}
    assert needed == {Path("/etc/exports.d"), Path("/var/lib/nfs-exportd"), Path("/var/lib/nfs")}
    assert needed <= writable, f"ReadWritePaths lacks {needed - writable}"
    assert not [p for p in unit_values("Service", "ReadWritePaths") if p.startswith("-")], (
        "a missing writable path must fail the start, not leave it read-only"
    )
    # ProtectHome=yes/tmpfs would hide exported volumes under /home (path-missing holds,
    # "Failed to stat" from exportfs); read-only hides nothing.
    assert svc.get("ProtectHome", "no") in ("no", "false", "read-only")


def test_unit_hardening_keeps_sudo_and_exportfs_working(unit: configparser.ConfigParser) -> None:
    present = {key for section in unit.sections() for key in unit[section]}
    assert not present & FORBIDDEN_KEYS, (
        f"forbidden in the unit: {sorted(present & FORBIDDEN_KEYS)}"
    )
    # in any section, and however often repeated
    for _, key, _ in unit_assignments(UNIT.read_text(encoding="utf-8")):
        assert key not in FORBIDDEN_KEYS
    svc = unit["Service"]
    assert svc["PrivateTmp"] == "yes"
    assert svc["ProtectControlGroups"] == "yes"


def test_unit_ordering_and_install(unit: configparser.ConfigParser) -> None:
    after = unit_values("Unit", "After")
    assert "network-online.target" in after and "nfs-server.service" in after
    assert "network-online.target" in unit_values("Unit", "Wants")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def _verify(path: Path, systemd_analyze: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")}
    env.update(SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="cat")
    proc = subprocess.run(
        # --recursive-errors=no: warnings about this unit fail, the host's own units do not
        [systemd_analyze, "verify", "--recursive-errors=no", "--man=no", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The real systemd parser.  verify needs ExecStart's binary to exist: a copy of the unit
    points at the nfs-exportd script of this environment instead of /usr/bin/nfs-exportd;
    nothing else changes (User=nfsmanager need not exist for verify)."""
    systemd_analyze = tool("systemd-analyze", "systemd")
    if systemd_analyze is None:
        missing_tool("systemd-analyze", "systemd")
        return
    script = Path(sys.executable).parent / "nfs-exportd"
    if not script.exists():
        script = Path(shutil.which("nfs-exportd") or "/nonexistent/nfs-exportd")
    assert script.exists(), "the nfs-exportd script is not installed (pip install -e .)"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("ExecStart=/usr/bin/nfs-exportd ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/bin/nfs-exportd ", f"ExecStart={script} "))

    rc, out = _verify(copy, systemd_analyze)
    ours = [line for line in out.splitlines() if UNIT.name in line]
    assert rc == 0 and not ours, f"systemd-analyze verify:\n{out}"

    # the same check must catch a typo in a key and an unparsable value
    broken = tmp_path / "broken" / UNIT.name
    broken.parent.mkdir()
    broken.write_text(
        copy.read_text()
        .replace("\nType=notify\n", "\nTpye=notify\n")
        .replace("\nWatchdogSec=", "\nWatchdogSec=ten minutes #")
    )
    rc, out = _verify(broken, systemd_analyze)
    assert rc != 0 and "Tpye" in out and "ten minutes" in out, out


# --------------------------------------------------------------------------- sudoers


def daemon_exportfs_invocations() -> set[tuple[str, ...]]:
    """The argument lists of every ``self.run(...)`` in the exportfs backend (literals only)."""
    tree = ast.parse(EXPORTFS_BACKEND.read_text(encoding="utf-8"))
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
        ):
            args = [ast.literal_eval(a) for a in node.args]
            assert not node.keywords and all(isinstance(a, str) for a in args), ast.unparse(node)
            found.add(tuple(args))
    return found


def sudoers_rules() -> tuple[list[str], list[tuple[str, str, str, list[str]]]]:
    """(Defaults lines, [(user, host, runas, commands)]) of the contrib sudoers file."""
    defaults: list[str] = []
    rules: list[tuple[str, str, str, list[str]]] = []
    for raw in SUDOERS.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.endswith("\\"), "no line continuations"
        if line.startswith("Defaults"):
            defaults.append(line)
            continue
        m = re.fullmatch(r"(\S+)\s+(\S+)\s*=\s*\(([^)]*)\)\s*NOPASSWD:\s*(.+)", line)
        assert m, f"{SUDOERS.name}: unexpected line {raw!r}"
        commands = [c.strip() for c in m.group(4).split(",")]
        rules.append((m.group(1), m.group(2), m.group(3), commands))
    return defaults, rules


def test_sudoers_allows_exactly_the_daemons_exportfs_invocations(
    unit: configparser.ConfigParser,
) -> None:
    defaults, rules = sudoers_rules()
    assert len(rules) == 1, rules
    user, host, runas, commands = rules[0]
    assert (user, host, runas) == (unit["Service"]["User"], "ALL", "root")
    assert all(d.startswith(f"Defaults:{user} ") for d in defaults), defaults
    for command in commands:
        assert not re.search(r"[*?\[\]]|\bALL\b|\bsudoedit\b", command), command
    assert commands == ["/usr/sbin/exportfs -ra"]

    # ... and that is what the daemon runs: exportfs_command + each backend invocation
    exportfs_command = Config.model_fields["exportfs_command"].default_factory()  # type: ignore[misc,call-arg]
    assert exportfs_command[:2] == ["sudo", "-n"], "sudo must never prompt"
    invocations = daemon_exportfs_invocations()
    assert ("-ra",) in invocations
    daemon_runs = {" ".join([*exportfs_command[2:], *args]) for args in invocations}
    assert daemon_runs == set(commands), (
        f"the daemon runs {sorted(daemon_runs)}, sudoers allows {commands}: keep them equal"
    )


def test_sudoers_passes_visudo(tmp_path: Path) -> None:
    visudo = tool("visudo", "sudo")
    if visudo is None:
        missing_tool("visudo", "sudo")
        return
    # installed as it would be: mode 0440 (and owned by root when we are root)
    copy = tmp_path / "nfs-exportd"
    shutil.copyfile(SUDOERS, copy)
    copy.chmod(0o440)
    proc = subprocess.run(
        [visudo, "-c", "-f", str(copy)], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "parsed OK" in proc.stdout + proc.stderr

    # the same check rejects a broken rule
    bad = tmp_path / "bad"
    bad.write_text(SUDOERS.read_text().replace("NOPASSWD:", "NOPASSWD"))
    bad.chmod(0o440)
    proc = subprocess.run(
        [visudo, "-c", "-f", str(bad)], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- dashboard

# The metrics of issue 5, as the issue lists them: the daemon's own list
# (nfs_exportd.ops.metrics.METRIC_NAMES, which the dashboard checks use) must stay equal to it.
# Histograms are listed by their base name; in PromQL they appear as <name>_bucket,
# <name>_sum and <name>_count.
EXPECTED_METRICS = {
    "nfs_exportd_info",
    "nfs_exportd_last_cycle_timestamp_seconds",
    "nfs_exportd_last_cycle_result",
    "nfs_exportd_cycles_total",
    "nfs_exportd_cycle_duration_seconds",
    "nfs_exportd_last_complete_inventory_timestamp_seconds",
    "nfs_exportd_holds",
    "nfs_exportd_exports",
    "nfs_exportd_clients",
    "nfs_exportd_pairs",
    "nfs_exportd_projects",
    "nfs_exportd_changes_applied_total",
    "nfs_exportd_api_requests_total",
    "nfs_exportd_api_request_duration_seconds",
    "nfs_exportd_maintenance",
    "nfs_exportd_rollback_hold",
    "nfs_exportd_maintenance_flag_timestamp_seconds",  # issue 14: the flag's age
    # issue 16: notifications and change polling
    "nfs_exportd_notifications_total",
    "nfs_exportd_last_notification_timestamp_seconds",
    "nfs_exportd_bus_connected",
    "nfs_exportd_early_cycles_total",
    "nfs_exportd_change_polls_total",
}
SERVICES = {"identity", "compute", "network"}
# Labels of each metric besides the scrape target's own (instance, job); the values where
# they are a closed set (from the daemon's metrics module).
METRIC_LABELS: dict[str, dict[str, set[str] | None]] = {
    "nfs_exportd_info": {"version": None},
    "nfs_exportd_last_cycle_result": {"result": set(daemon_metrics.RESULTS)},
    "nfs_exportd_cycles_total": {"result": set(daemon_metrics.RESULTS)},
    "nfs_exportd_cycle_duration_seconds": {"le": None},
    "nfs_exportd_holds": {"reason": {r.value for r in daemon_metrics.HOLD_REASONS}},
    "nfs_exportd_changes_applied_total": {"action": set(daemon_metrics.ACTIONS)},
    "nfs_exportd_api_requests_total": {"service": SERVICES, "status": None},
    "nfs_exportd_api_request_duration_seconds": {"service": SERVICES, "le": None},
    "nfs_exportd_maintenance": {"mode": set(daemon_metrics.MODES)},
    "nfs_exportd_notifications_total": {"event_type": set(daemon_metrics.NOTIFICATION_TYPES)},
    "nfs_exportd_early_cycles_total": {"trigger": set(daemon_metrics.TRIGGERS)},
    "nfs_exportd_change_polls_total": {"result": set(daemon_metrics.POLL_RESULTS)},
}
TARGET_LABELS = {"instance", "job"}
METRIC_RE = re.compile(r"\bnfs_exportd_[a-z_]+")


def _daemon_registry() -> dict[str, tuple[str, set[str]]]:
    """METRIC_NAMES name -> (type, label names seen) from a fresh registry of the daemon."""
    m = daemon_metrics.Metrics()
    try:
        m.request("identity", "200", 0.01)  # so that the labelled API metrics have samples
        families = list(m.registry.collect())
    finally:
        m.close()
    out: dict[str, tuple[str, set[str]]] = {}
    for fam in families:
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        out[name] = (fam.type, {k for sample in fam.samples for k in sample.labels})
    return out


REGISTRY = _daemon_registry()
HISTOGRAMS = {name for name, (kind, _) in REGISTRY.items() if kind == "histogram"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # collapsed rows nest their panels


def base_metric(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    assert name not in HISTOGRAMS, f"{name}: a histogram is queried as _bucket, _sum or _count"
    return name


def panel_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            assert target.get("expr"), f"panel {panel['title']!r}: a target without expr"
            out.append((panel["title"], target["expr"]))
    return out


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    instance = variables["instance"]
    assert instance["type"] == "query"
    assert "label_values(nfs_exportd_info, instance)" in json.dumps(instance["query"])

    ids: list[int] = []
    for panel in all_panels(dashboard["panels"]):
        ids.append(panel["id"])
        gp = panel["gridPos"]
        assert {k: type(gp[k]) for k in "hwxy"} == dict.fromkeys("hwxy", int), panel["title"]
        assert gp["w"] > 0 and gp["h"] > 0 and gp["x"] >= 0 and gp["x"] + gp["w"] <= 24, gp
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel.get("targets"), panel
        # every query goes to the chosen Prometheus, none to a hard-coded datasource uid
        for owner in (panel, *panel["targets"]):
            assert owner["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"


def test_dashboard_queries_use_only_exported_metrics_and_labels(
    dashboard: dict[str, Any],
) -> None:
    used: set[str] = set()
    for title, expr in panel_exprs(dashboard):
        names = {base_metric(n) for n in METRIC_RE.findall(expr)}
        assert names, f"{title!r}: {expr!r} queries no nfs_exportd metric"
        assert names <= METRIC_NAMES, f"{title!r}: unknown metrics {names - METRIC_NAMES}"
        assert '$instance"' in expr, f"{title!r}: {expr!r} ignores the instance variable"
        used |= names
        for name, matchers in re.findall(r"\b(nfs_exportd_[a-z_]+)\{([^}]*)\}", expr):
            labels = METRIC_LABELS.get(base_metric(name), {})
            for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
                assert label in labels or label in TARGET_LABELS, (
                    f"{title!r}: {name} has no {label}"
                )
                allowed = labels.get(label)
                if op == "=" and allowed is not None:
                    assert value in allowed, f"{title!r}: {label}={value!r} never occurs"
        all_labels = set().union(*METRIC_LABELS.values(), TARGET_LABELS)
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            for label in filter(None, (g.strip() for g in group.split(","))):
                assert label in all_labels, f"{title!r}: grouping by unknown label {label!r}"
    # every metric has a panel; nfs_exportd_info may serve only the instance variable
    assert METRIC_NAMES - {"nfs_exportd_info"} <= used, (
        f"metrics without a panel: {sorted(METRIC_NAMES - {'nfs_exportd_info'} - used)}"
    )


def test_dashboard_metric_list_is_the_daemons() -> None:
    """The issue's list, the daemon's METRIC_NAMES and what its registry exports agree, with
    the labels the dashboard relies on."""
    assert set(METRIC_NAMES) == EXPECTED_METRICS
    assert set(REGISTRY) == EXPECTED_METRICS
    assert {
        "nfs_exportd_cycle_duration_seconds",
        "nfs_exportd_api_request_duration_seconds",
    } == HISTOGRAMS
    for name, (_, labels) in REGISTRY.items():
        assert labels <= set(METRIC_LABELS.get(name, {})), f"{name}: labels {labels}"
