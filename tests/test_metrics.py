"""Prometheus metrics: the HTTP endpoint of a real ``run`` process, the textfile that a
one-shot ``sync`` writes, control-plane request observations, and their config."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Lab, wait_for
from nfs_exportd import __version__
from nfs_exportd.memory import state
from nfs_exportd.ops.metrics import METRIC_NAMES, Metrics
from nfs_exportd.read.inventory import observe

Labels = dict[str, str]


class Scrape:
    """One parsed exposition: families by name and every sample."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def names(self) -> set[str]:
        """Family names, counters also with ``_total``, and every sample name."""
        out = set(self.families)
        for f in self.families.values():
            if f.type == "counter":
                out.add(f.name + "_total")
            out.update(s.name for s in f.samples)
        return out

    def value(self, name: str, labels: Labels | None = None) -> float | None:
        for f in self.families.values():
            for s in f.samples:
                if s.name == name and s.labels == (labels or {}):
                    return float(s.value)
        return None

    def get(self, name: str, labels: Labels | None = None) -> float:
        v = self.value(name, labels)
        assert v is not None, f"no sample {name}{labels or ''} in:\n{self.text}"
        return v


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> Scrape:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        return Scrape(resp.read().decode())


def _try_scrape(port: int) -> Scrape | None:
    try:
        return _scrape(port)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _expected_families() -> set[str]:
    m = Metrics()
    try:
        return set(Scrape(generate_latest(m.registry).decode()).families)
    finally:
        m.close()


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out


def _lab_with_two_projects(lab: Lab) -> None:
    lab.add_project(
        "tools", 50380, {"home": lab.srv("tools", "home"), "data": lab.srv("tools", "data")}
    )
    lab.add_project("paws", 50381)
    lab.add_instance("i-1", "tools", "172.16.0.5", "fd00::5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    lab.add_instance("i-3", "paws", "172.16.0.9")


def test_every_metric_is_named_in_metric_names() -> None:
    expected = _expected_families()
    m = Metrics()
    try:
        names = Scrape(generate_latest(m.registry).decode()).names()
    finally:
        m.close()
    assert names >= METRIC_NAMES
    # and nothing outside the documented list (family names; counters without _total;
    # prometheus_client adds a *_created gauge beside each counter and histogram)
    documented = {n.removesuffix("_total") for n in METRIC_NAMES}
    assert {f.removesuffix("_created") for f in expected} <= documented


# ------------------------------------------------------------------ HTTP endpoint (run)


def test_run_serves_metrics_that_match_the_lab(lab: Lab) -> None:
    _lab_with_two_projects(lab)
    port = _free_port()
    lab.config["metrics"] = {"listen": f"127.0.0.1:{port}"}
    proc = lab.start_run()
    try:

        def first_cycle_done() -> bool:
            s = _try_scrape(port)
            return (
                s is not None and (s.value("nfs_exportd_cycles_total", {"result": "ok"}) or 0) >= 1
            )

        wait_for(first_cycle_done, "metrics after the first cycle")
        s = _scrape(port)
        pairs = lab.in_force()
        assert len(pairs) == 7  # tools: 2 volumes x 3 addresses; paws: 1 x 1
        assert s.get("nfs_exportd_pairs") == len(pairs)
        assert s.get("nfs_exportd_projects") == 2
        assert s.get("nfs_exportd_exports") == 3
        assert s.get("nfs_exportd_clients") == len({c for _, c in pairs}) == 4
        assert s.get("nfs_exportd_info", {"version": __version__}) == 1
        assert s.get("nfs_exportd_last_cycle_result", {"result": "ok"}) == 1
        assert s.get("nfs_exportd_last_cycle_result", {"result": "held"}) == 0
        assert s.get("nfs_exportd_last_cycle_result", {"result": "error"}) == 0
        assert s.get("nfs_exportd_cycles_total", {"result": "ok"}) >= 1
        assert s.get("nfs_exportd_changes_applied_total", {"action": "add"}) == len(pairs)
        assert s.get("nfs_exportd_changes_applied_total", {"action": "remove"}) == 0
        assert s.get("nfs_exportd_cycle_duration_seconds_count") >= 1
        assert s.get("nfs_exportd_cycle_duration_seconds_sum") > 0
        assert s.get("nfs_exportd_maintenance", {"mode": "off"}) == 1
        assert s.get("nfs_exportd_maintenance", {"mode": "freeze"}) == 0
        assert s.get("nfs_exportd_rollback_hold") == 0
        assert s.get("nfs_exportd_holds", {"reason": "unknown-inventory"}) == 0
        now = time.time()
        assert now - 30 < s.get("nfs_exportd_last_cycle_timestamp_seconds") <= now
        assert now - 30 < s.get("nfs_exportd_last_complete_inventory_timestamp_seconds") <= now
        assert s.names() >= METRIC_NAMES
        # the endpoint adds the process families (issue 14); the textfile never has them
        process = {f for f in s.families if f.startswith("process_")}
        assert {"process_cpu_seconds", "process_resident_memory_bytes"} <= process
        assert set(s.families) - process == _expected_families()

        # later cycles change nothing: the adds are not counted again
        def second_cycle_done() -> bool:
            s = _try_scrape(port)
            return (
                s is not None and (s.value("nfs_exportd_cycles_total", {"result": "ok"}) or 0) >= 2
            )

        wait_for(second_cycle_done, "a second cycle")
        s = _scrape(port)
        assert s.get("nfs_exportd_changes_applied_total", {"action": "add"}) == len(pairs)
        assert s.get("nfs_exportd_cycle_duration_seconds_count") >= 2

        # freeze, with a change pending: held, and the gauges say why
        (lab.root / "maintenance").write_text("freeze: storage upgrade\n")
        lab.add_instance("i-4", "paws", "172.16.0.10")
        lab.write()

        def frozen() -> bool:
            s = _try_scrape(port)
            return (
                s is not None
                and s.value("nfs_exportd_maintenance", {"mode": "freeze"}) == 1
                and (s.value("nfs_exportd_holds", {"reason": "freeze"}) or 0) >= 1
            )

        wait_for(frozen, "maintenance freeze in the metrics")
        s = _scrape(port)
        assert s.get("nfs_exportd_maintenance", {"mode": "off"}) == 0
        assert s.get("nfs_exportd_holds", {"reason": "freeze"}) == 1  # the one add
        assert s.get("nfs_exportd_last_cycle_result", {"result": "held"}) == 1
        assert s.get("nfs_exportd_last_cycle_result", {"result": "ok"}) == 0
        assert s.get("nfs_exportd_cycles_total", {"result": "held"}) >= 1
        assert s.get("nfs_exportd_pairs") == len(pairs) == len(lab.in_force())
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert _try_scrape(port) is None  # the endpoint went with the process


# ------------------------------------------------------------------ textfile (sync)


@pytest.fixture
def textfile(lab: Lab) -> Iterator[Path]:
    d = lab.root / "node-exporter"
    d.mkdir()
    path = d / "nfs_exportd.prom"
    lab.config["metrics"] = {"textfile": str(path)}
    yield path


def _read(path: Path) -> Scrape:
    assert path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporaries
    return Scrape(path.read_text())


def test_sync_writes_the_textfile(lab: Lab, textfile: Path) -> None:
    _lab_with_two_projects(lab)
    assert lab.cli("sync") == 0
    s = _read(textfile)
    assert set(s.families) == _expected_families()
    assert s.names() >= METRIC_NAMES
    assert s.get("nfs_exportd_pairs") == len(lab.in_force()) == 7
    assert s.get("nfs_exportd_last_cycle_result", {"result": "ok"}) == 1
    # a one-shot sync counts its own cycle only
    assert s.get("nfs_exportd_cycles_total", {"result": "ok"}) == 1
    assert s.get("nfs_exportd_changes_applied_total", {"action": "add"}) == 7
    assert s.get("nfs_exportd_cycle_duration_seconds_count") == 1

    # the next one replaces the file (counts start again: rate() handles it)
    assert lab.cli("sync") == 0
    s = _read(textfile)
    assert s.get("nfs_exportd_changes_applied_total", {"action": "add"}) == 0
    assert s.get("nfs_exportd_cycles_total", {"result": "ok"}) == 1


def test_held_sync_writes_holds_to_the_textfile(lab: Lab, textfile: Path) -> None:
    _lab_with_two_projects(lab)
    assert lab.cli("sync") == 0
    # an instance goes: its removal waits for confirmations
    lab.remove_instance("i-3")
    assert lab.cli("sync") == 3
    s = _read(textfile)
    assert s.get("nfs_exportd_holds", {"reason": "pending-confirmation"}) == 1
    assert s.get("nfs_exportd_last_cycle_result", {"result": "held"}) == 1
    assert s.get("nfs_exportd_last_cycle_result", {"result": "ok"}) == 0
    assert s.get("nfs_exportd_cycles_total", {"result": "held"}) == 1
    assert s.get("nfs_exportd_pairs") == 7  # nothing removed yet

    # an invalid inventory file: unknown, nothing changes, the textfile says why
    lab.inventory["bogus"] = True
    assert lab.cli("sync") == 3
    s = _read(textfile)
    assert s.get("nfs_exportd_holds", {"reason": "unknown-inventory"}) >= 1
    assert s.get("nfs_exportd_last_cycle_result", {"result": "held"}) == 1
    assert s.get("nfs_exportd_pairs") == 7
    complete = s.get("nfs_exportd_last_complete_inventory_timestamp_seconds")
    assert complete == lab.status()["last_complete_inventory"]  # the last complete one


def test_failed_sync_still_writes_the_textfile(lab: Lab, textfile: Path) -> None:
    _lab_with_two_projects(lab)
    assert lab.cli("sync") == 0
    lab.exports_dir.rename(lab.root / "moved-exports.d")
    assert lab.cli("sync") == 1
    s = _read(textfile)
    assert s.get("nfs_exportd_last_cycle_result", {"result": "error"}) == 1
    assert s.get("nfs_exportd_last_cycle_result", {"result": "ok"}) == 0
    assert s.get("nfs_exportd_cycles_total", {"result": "error"}) == 1
    assert set(s.families) == _expected_families()


def test_failed_first_sync_writes_an_error_textfile(lab: Lab, textfile: Path) -> None:
    _lab_with_two_projects(lab)
    lab.exports_dir.rmdir()
    assert lab.cli("sync") == 1
    s = _read(textfile)
    assert s.get("nfs_exportd_last_cycle_result", {"result": "error"}) == 1


def test_sync_refused_by_the_lock_leaves_the_textfile_to_the_lock_holder(
    lab: Lab, textfile: Path
) -> None:
    """A sync that exits 1 because another writer holds the lock ran no cycle: it must not
    report the previous cycle's result and changes again, nor overwrite the textfile that
    the lock holder (the daemon) keeps: the file stays exactly as the last cycle wrote it."""
    _lab_with_two_projects(lab)
    assert lab.cli("sync") == 0
    before = textfile.read_bytes()
    with state.StateLock(lab.state_dir):  # another writer holds the lock
        assert lab.cli("sync") == 1
    assert textfile.read_bytes() == before
    s = _read(textfile)
    assert s.get("nfs_exportd_cycles_total", {"result": "ok"}) == 1


def test_unwritable_textfile_does_not_fail_the_sync(lab: Lab, textfile: Path) -> None:
    _lab_with_two_projects(lab)
    lab.config["metrics"] = {"textfile": str(lab.root / "no-such-dir" / "nfs_exportd.prom")}
    assert lab.cli("sync") == 0
    assert len(lab.in_force()) == 7


# ------------------------------------------------------------------ request observations


def test_observe_report_counts_requests_and_latency() -> None:
    m = Metrics()
    try:
        observe.report("compute", "200", 0.03)
        observe.report("compute", "200", 0.2)
        observe.report("identity", "401", 0.01)
        observe.report("network", "error", 31.0)
        r = m.registry
        assert (
            r.get_sample_value(
                "nfs_exportd_api_requests_total", {"service": "compute", "status": "200"}
            )
            == 2
        )
        assert (
            r.get_sample_value(
                "nfs_exportd_api_requests_total", {"service": "identity", "status": "401"}
            )
            == 1
        )
        assert (
            r.get_sample_value(
                "nfs_exportd_api_requests_total", {"service": "network", "status": "error"}
            )
            == 1
        )
        h = "nfs_exportd_api_request_duration_seconds"
        assert r.get_sample_value(h + "_count", {"service": "compute"}) == 2
        assert r.get_sample_value(h + "_sum", {"service": "compute"}) == pytest.approx(0.23)
        assert r.get_sample_value(h + "_bucket", {"service": "compute", "le": "0.05"}) == 1
        assert r.get_sample_value(h + "_bucket", {"service": "compute", "le": "0.25"}) == 2
        assert r.get_sample_value(h + "_bucket", {"service": "network", "le": "30.0"}) == 0
        assert r.get_sample_value(h + "_bucket", {"service": "network", "le": "+Inf"}) == 1
        s = Scrape(generate_latest(r).decode())
        assert s.get(h + "_count", {"service": "identity"}) == 1
    finally:
        m.close()
    # closed: no longer listening
    observe.report("compute", "200", 0.03)
    assert (
        m.registry.get_sample_value(
            "nfs_exportd_api_requests_total", {"service": "compute", "status": "200"}
        )
        == 2
    )


def test_a_failing_listener_does_not_break_report() -> None:
    calls: list[str] = []

    def broken(service: str, status: str, seconds: float) -> None:
        calls.append(service)
        raise RuntimeError("listener bug")

    observe.add_listener(broken)  # before the metrics: later listeners still run
    m = Metrics()
    try:
        observe.report("compute", "503", 0.5)
        observe.report("compute", "503", 0.5)
        assert calls == ["compute", "compute"]
        assert (
            m.registry.get_sample_value(
                "nfs_exportd_api_requests_total", {"service": "compute", "status": "503"}
            )
            == 2
        )
    finally:
        observe.remove_listener(broken)
        m.close()


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "value", ["localhost", "1.2.3.4:99999", "127.0.0.1:0", ":9464", "127.0.0.1:port", 9464]
)
def test_bad_metrics_listen_is_a_config_error(
    lab: Lab, capsys: pytest.CaptureFixture[str], value: object
) -> None:
    lab.add_project("tools", 50380)
    lab.config["metrics"] = {"listen": value}
    for command in ("plan", "sync"):  # the same config check as run (below)
        capsys.readouterr()
        assert lab.cli(command) == 2
        err = capsys.readouterr().err
        assert "metrics.listen" in err, err
        assert str(lab.config_path) in err
    assert not lab.state_dir.exists()  # nothing ran


def test_unknown_metrics_key_is_a_config_error(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.add_project("tools", 50380)
    lab.config["metrics"] = {"listen": "127.0.0.1:9464", "textfle": "/tmp/x.prom"}
    capsys.readouterr()
    assert lab.cli("sync") == 2
    assert "metrics.textfle: unknown key" in capsys.readouterr().err


def test_listen_on_a_port_in_use_fails_the_run(lab: Lab) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        lab.config["metrics"] = {"listen": f"127.0.0.1:{port}"}
        proc = lab.start_run()
        try:
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    assert proc.returncode == 1, out
    assert f"metrics.listen 127.0.0.1:{port}: cannot listen" in out
    assert lab.in_force() == set()  # it failed before any cycle


def test_run_with_a_bad_metrics_listen_exits_2(lab: Lab) -> None:
    lab.add_project("tools", 50380)
    lab.config["metrics"] = {"listen": "localhost"}
    proc = lab.start_run()
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 2, out
    assert "metrics.listen" in out
    assert "expected HOST:PORT" in out


def test_openstack_source_reports_every_request_by_service_and_status() -> None:
    """Through the real openstacksdk against the simulated cloud: each request of a read
    is counted under its service, with its HTTP status; a failing one under its code."""
    from nfs_exportd.read.inventory.openstack import OpenStackInventory, OpenStackSettings
    from nfs_exportd_sim import SimCloud

    scenario = {
        "regions": ["RegionOne"],
        "projects": [{"name": "admin"}, {"name": "tools"}],
        "users": [
            {
                "name": "admin",
                "password": "pw-admin",
                "roles": [{"role": "admin", "project": "admin"}],
            }
        ],
        "servers": [
            {
                "id": "t1",
                "name": "t-1",
                "project": "tools",
                "region": "RegionOne",
                "addresses": ["172.16.0.5"],
            }
        ],
    }
    m = Metrics()
    with SimCloud(scenario) as sim:
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            clouds = sim.clouds_yaml(
                Path(tmp) / "clouds.yaml",
                {"c": {"user": "admin", "password": "pw-admin", "project": "admin"}},
            )
            old = os.environ.get("OS_CLIENT_CONFIG_FILE")
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
            try:
                src = OpenStackInventory(OpenStackSettings(clouds=("c",), timeout=5))
                snap = src.read(frozenset({"tools"}))
                assert snap.listing_complete, snap.problem
                r = m.registry
                sample = r.get_sample_value
                for service in ("identity", "compute", "network"):
                    assert (
                        sample(
                            "nfs_exportd_api_requests_total", {"service": service, "status": "200"}
                        )
                        or 0
                    ) >= 1, service
                    assert (
                        sample(
                            "nfs_exportd_api_request_duration_seconds_count", {"service": service}
                        )
                        or 0
                    ) >= 1
                sim.add_fault(service="compute", status=503)
                snap = src.read(frozenset({"tools"}))
                assert not snap.listing_complete or snap.incomplete
                assert (
                    sample(
                        "nfs_exportd_api_requests_total", {"service": "compute", "status": "503"}
                    )
                    or 0
                ) >= 1
            finally:
                m.close()
                if old is None:
                    os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
                else:
                    os.environ["OS_CLIENT_CONFIG_FILE"] = old
