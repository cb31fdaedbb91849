"""pytest plugin: ``rabbitmq``, one real RabbitMQ broker for the whole session.

Loaded by the tests that need it (``pytest_plugins = ("rabbit_lab.plugin",)``), so a run
that selects none of them never starts a broker.  A broker that cannot start fails the
tests with its output; it never skips them.  A failing test that used the broker gets
the tail of its logs in the report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from .broker import Broker, BrokerFailed, launch

BROKER = pytest.StashKey[Broker]()


@pytest.fixture(scope="session")
def rabbitmq(request: pytest.FixtureRequest) -> Iterator[Broker]:
    try:
        broker = launch()
    except BrokerFailed as exc:
        failure = str(exc)
    else:
        failure = ""
    if failure:  # outside the except: the broker's output, without a chained traceback
        pytest.fail(failure, pytrace=False)
    request.config.stash[BROKER] = broker
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def broker(rabbitmq: Broker) -> Iterator[Broker]:
    """The session's broker, running at the start of the test and again after it (a
    test may stop or restart it)."""
    rabbitmq.start()
    yield rabbitmq
    if not rabbitmq.running:
        rabbitmq.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    b = item.config.stash.get(BROKER, None)
    if report.failed and b is not None and "rabbitmq" in getattr(item, "fixturenames", ()):
        report.sections.append(("RabbitMQ logs (tail)", b.logs()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    b = terminalreporter.config.stash.get(BROKER, None)
    if b is not None:
        text = ", ".join(f"{k} {v:.1f} s" for k, v in b.timings.items())
        terminalreporter.write_line(f"real RabbitMQ (tests/rabbit_lab): {text}")
