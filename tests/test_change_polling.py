"""Change polling (no bus): between full cycles ``run`` asks Nova ``changes-since`` and
Neutron ``changed_since`` what changed, one page each per region, and runs a cycle early
when something is new; and the early-cycle rules (debounce, minimum gap, request
ceiling) as pure bookkeeping."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from conftest import Lab, use_sim_cloud, wait_for
from nfs_exportd.ops.early import ChangePoller, EarlyCycles
from nfs_exportd_sim import SimCloud

ADMIN_PW = "admin-pw"
SCENARIO = {
    "regions": ["RegionOne"],
    "projects": [{"name": "admin"}, {"name": "tools"}, {"name": "paws"}],
    "users": [
        {"name": "admin", "password": ADMIN_PW, "roles": [{"role": "admin", "project": "admin"}]},
        {"name": "observer", "password": "obs-pw", "roles": [{"role": "reader", "system": "all"}]},
    ],
    "servers": [
        {"id": "t1", "name": "tools-1", "project": "tools", "addresses": ["172.16.0.5"]},
        {"id": "p1", "name": "paws-1", "project": "paws", "addresses": ["172.16.0.7"]},
    ],
}  # fmt: skip


@pytest.fixture
def cloud(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCloud]:
    sim = SimCloud(SCENARIO)
    sim.start()
    try:
        use_sim_cloud(lab, sim, monkeypatch, ADMIN_PW)
        lab.config["interval_seconds"] = 60
        lab.config["change_polling"] = {"enabled": True, "poll_seconds": 1}
        lab.config["early_cycles"] = {"debounce_seconds": 0.2, "min_gap_seconds": 0.5}
        lab.add_project("tools", 50380)
        lab.add_project("paws", 52771)
        yield sim
    finally:
        sim.stop()


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out


def polling(lab: Lab) -> dict[str, object]:
    try:
        doc = json.loads((lab.state_dir / "triggers.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return dict(doc.get("polling", {}))


def test_change_polling_brings_new_instances_and_reused_addresses_within_seconds(
    lab: Lab, cloud: SimCloud
) -> None:
    tools, paws = lab.srv("tools", "home"), lab.srv("paws", "home")
    proc = lab.start_run({"OS_CLIENT_CONFIG_FILE": str(lab.root / "clouds.yaml")})
    try:
        wait_for(lambda: (paws, "172.16.0.7") in lab.in_force(), "the first cycle", 30)
        # idle: only the polls (poll_seconds 1), 1 Nova and 1 Neutron request each
        time.sleep(1.5)
        cloud.reset_counts()
        time.sleep(3.0)
        counts = cloud.counts()
        assert 2 <= counts.get("compute GET /servers/detail", 0) <= 4, counts
        assert 2 <= counts.get("network GET /ports", 0) <= 4, counts
        assert counts.get("identity GET /projects", 0) == 0, counts  # no cycle
        assert counts.get("tokens_issued") == 0, counts  # the cycle's token is reused
        t0 = time.monotonic()
        cloud.create_server("tools-2", "tools", addresses=["172.16.0.9"])
        wait_for(lambda: (tools, "172.16.0.9") in lab.in_force(), "the new instance", 10)
        assert time.monotonic() - t0 < 5
        t0 = time.monotonic()
        cloud.move_ip("172.16.0.7", "t1")  # paws-1's address reused by tools
        wait_for(lambda: (paws, "172.16.0.7") not in lab.in_force(), "the conflict removal", 10)
        assert time.monotonic() - t0 < 5
        assert (tools, "172.16.0.7") in lab.in_force()
        wait_for(lambda: int(polling(lab).get("changes", 0) or 0) >= 2, "changes counted", 10)
        # the API failing: polling says so, cycles and exports stay
        before = lab.in_force()
        cloud.add_fault(service="compute", status=503)
        wait_for(lambda: bool(polling(lab).get("problem")), "the poll failure reported", 10)
        assert lab.in_force() == before
    finally:
        out = stop(proc)
    assert out.count("change polling failed") == 1, out


# ------------------------------------------------------------------ the rules, pure


def test_debounce_and_minimum_gap() -> None:
    e = EarlyCycles(debounce=1.0, min_gap=5.0, max_requests_per_minute=1000)
    assert e.due(0.0) is None
    e.started(0.0)
    e.ended(2.0)
    e.fire(3.0, "notification")
    e.fire(3.5, "notification")  # within the window: the same cycle
    assert e.due(3.6) == 7.0  # the gap after the last cycle's end (2 + 5) wins over 3 + 1
    assert e.started(7.0) == ("notification",)
    assert e.due(7.1) is None
    e.fire(7.2, "change-poll")  # during the cycle: kept, one more cycle after the gap
    e.ended(8.0)
    assert e.due(8.0) == 13.0


def test_a_steady_stream_cannot_postpone_the_cycle() -> None:
    e = EarlyCycles(debounce=1.0, min_gap=0.0, max_requests_per_minute=1000)
    for i in range(100):
        e.fire(10.0 + i * 0.01, "notification")
    assert e.due(11.0) == 11.0  # a fixed window from the first trigger


def test_request_ceiling_defers_early_cycles() -> None:
    e = EarlyCycles(debounce=0.0, min_gap=0.0, max_requests_per_minute=30)
    e.started(0.0)
    for i in range(20):
        e.request(0.1 + i * 0.01)  # the cycle costs 20 requests
    e.ended(1.0)
    e.fire(2.0, "notification")
    # 20 in the last minute + 20 for the next cycle > 30: wait until 10 have aged out
    assert e.due(2.0) == pytest.approx(0.1 + 9 * 0.01 + 60)
    assert e.deferred == 1
    assert e.due(70.0) == 2.0  # aged out: due (in the past, so at once)


def test_change_poller_reports_only_what_is_new() -> None:
    answers: list[tuple[list[tuple[str, float | None]], bool]] = [
        ([("s1@a", 95.0), ("s2@b", 101.0)], False),  # s1 changed before the cycle started
        ([("s2@b", 101.0)], False),  # the overlap: seen
        ([("s2@b", 101.0), ("p9@c", 104.0)], False),
        ([], True),  # a full page: much changed
    ]
    asked: list[float] = []

    def fetch(since: float) -> tuple[list[tuple[str, float | None]], bool]:
        asked.append(since)
        return answers[len(asked) - 1]

    p = ChangePoller(fetch, margin=2.0)
    assert p.poll(102.0, cycle_started=100.0) is True  # s2 is after the cycle's start
    assert p.poll(103.0, cycle_started=100.0) is False
    assert p.poll(105.0, cycle_started=100.0) is True
    assert p.poll(106.0, cycle_started=100.0) is True
    assert asked == [98.0, 100.0, 101.0, 103.0]


def test_reload_keeps_the_poller_the_early_rules_object_and_a_pending_trigger(
    lab: Lab, cloud: SimCloud
) -> None:
    """SIGHUP's reload: the poller keeps what it has seen unless the polling settings or
    the source change; the early-cycle rules change in place, so a trigger fired by the
    listener's thread during the reload is never dropped with a replaced object."""
    import argparse

    from nfs_exportd.commands.run import Loop
    from nfs_exportd.config import load_config
    from nfs_exportd.cycle import load_served

    lab.write()
    cfg = load_config(lab.config_path)
    loop = Loop(argparse.Namespace(config=lab.config_path), cfg, load_served(cfg))
    loop.start_polling()
    poller, early = loop.poller, loop.early
    assert poller is not None
    poller.since, poller.seen = 1234.0, frozenset({"server t1"})
    early.fire(100.0, "notification")

    loop.reload()  # same config
    assert loop.poller is poller and poller.since == 1234.0
    assert loop.early is early and early.pending["notification"] == 1

    lab.config["early_cycles"] = {"debounce_seconds": 3, "min_gap_seconds": 0.5}
    lab.write()
    loop.reload()
    assert loop.early is early and early.debounce == 3
    assert early.due(100.0) == 103.0  # the pending trigger, under the new rule
    assert loop.poller is poller

    lab.config["change_polling"] = {"enabled": True, "poll_seconds": 2}
    lab.write()
    loop.reload()
    assert loop.poller is not poller and loop.poller is not None


def test_triggers_json_has_one_writer_at_a_time(lab: Lab, cloud: SimCloud) -> None:
    """The listener's thread (a bus state change) and the loop both save triggers.json;
    they share one temporary file, so unserialised saves fail or tear the file."""
    import argparse
    import logging
    import threading

    from nfs_exportd.commands.run import Loop
    from nfs_exportd.config import load_config
    from nfs_exportd.cycle import load_served
    from nfs_exportd.memory import triggers as triggers_file

    lab.write()
    cfg = load_config(lab.config_path)
    loop = Loop(argparse.Namespace(config=lab.config_path), cfg, load_served(cfg))
    errors: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage())

    handler = Catch(logging.ERROR)
    logging.getLogger("nfs_exportd").addHandler(handler)
    try:

        def saver(n: int) -> None:
            for i in range(n):
                with loop.trig.lock:
                    loop.trig.polls += 1
                    loop.trig.poll_problem = "x" * (i % 500)  # records of varying size
                loop.save_triggers()

        threads = [threading.Thread(target=saver, args=(300,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logging.getLogger("nfs_exportd").removeHandler(handler)
    assert errors == []
    rec = triggers_file.load(cfg.state_dir)
    assert rec is not None and rec.polling.polls == 900
