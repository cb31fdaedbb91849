"""pytest plugin: ``real_keystone``, one real Keystone for the whole session.

Loaded by the tests that need it (``pytest_plugins = ("keystone_lab.plugin",)``), so a run
that selects none of them never installs or starts Keystone.  A failing step fails the
tests with its output; it never skips them.  A failing test that used Keystone gets the
tail of its logs in the report (the server's directory is gone after the session).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from .real_keystone import RealKeystone, StepFailed, launch

KEYSTONE = pytest.StashKey[RealKeystone]()


@pytest.fixture(scope="session")
def real_keystone(request: pytest.FixtureRequest) -> Iterator[RealKeystone]:
    try:
        ks = launch()
    except StepFailed as exc:
        failure = str(exc)
    else:
        failure = ""
    if failure:  # outside the except: the step's output, without a chained traceback
        pytest.fail(failure, pytrace=False)
    request.config.stash[KEYSTONE] = ks
    try:
        yield ks
    finally:
        ks.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    ks = item.config.stash.get(KEYSTONE, None)
    if report.failed and ks is not None and "real_keystone" in getattr(item, "fixturenames", ()):
        report.sections.append(("real Keystone logs (tail)", ks.logs()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the real Keystone took (install 0.0 s: the cached venv was used)."""
    ks = terminalreporter.config.stash.get(KEYSTONE, None)
    if ks is not None:
        text = ", ".join(f"{k} {v:.1f} s" for k, v in ks.timings.items())
        terminalreporter.write_line(f"real Keystone (tests/keystone_lab): {text}")
