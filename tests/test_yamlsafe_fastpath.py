"""The direct builder (``yamlsafe._build``) against the checked loader: for every plain
document they build the same data, and whatever the builder does not handle plainly
(duplicate keys, merge keys, a second document, deep nesting...) goes to the checked
loader, so ``loads`` answers exactly as the checked loader alone would."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nfs_exportd import yamlsafe

# plain scalars that YAML 1.1 resolves to something else than a string
TRICKY = [
    "yes", "No", "on", "OFF", "true", "~", "null", "", "1e3", "1_000", "0x1F", "017",
    "0o17", "0b101", "+12", "-0", ".inf", "-.Inf", ".nan", "3.14", "1:20", "190:20:30",
    "2001-12-14", "2001-12-14t21:59:43.10-05:00", "<<", "=", "- a", "a: b", "#x", "'q'",
    "10.0.0.1", "2001:db8::1", "/srv/tools/home", "tools.home", "1e", "0.", ".5",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TRICKY),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(TRICKY), st.text(max_size=8), st.integers(-5, 5))
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def checked(text: str) -> Any:
    loader = yamlsafe._Loader(text, "t")
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def answer(fn: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", fn(text)
    except Exception as exc:  # the type and message are what the operator sees
        return type(exc).__name__, str(exc)


@settings(max_examples=300, deadline=None)
@given(data, st.sampled_from([None, False, True]), st.booleans())
def test_the_builder_gives_the_checked_loaders_data(
    value: Any, flow: bool | None, canonical_quotes: bool
) -> None:
    text = yaml.safe_dump(
        value, default_flow_style=flow, default_style='"' if canonical_quotes else None
    )
    want = checked(text)
    try:
        got = yamlsafe._build(text)
    except yamlsafe._Unusual:
        got = answer(lambda t: yamlsafe.loads(t, "t"), text)
        assert got[0] == "ok" and same(got[1], want), (text, got, want)
        return
    assert same(got, want), (text, got, want)
    assert same(yamlsafe.loads(text, "t"), want)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key
        "a: 1\n'a': 2\n",  # the same key, quoted
        "1: x\n0x1: y\n",  # the same int key, spelled twice
        "<<: {a: 1}\n",  # merge key
        "a: 1\n---\nb: 2\n",  # a second document
        "[" * 70 + "]" * 70 + "\n",  # deeper than MAX_DEPTH
        "? [a, b]\n: c\n",  # a complex key
        "a: [1, 2\n",  # a syntax error
        "x: 1" + "0" * 5000 + "\n",  # an integer too long for int()
        "k: 2001-02-30\n",  # no such date
    ],
)
def test_what_the_builder_leaves_is_answered_as_the_checked_loader_does(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = answer(lambda t: yamlsafe.loads(t, "t"), text)

    def unusual(_text: str) -> object:
        raise yamlsafe._Unusual

    monkeypatch.setattr(yamlsafe, "_build", unusual)  # the checked loader alone
    assert fast == answer(lambda t: yamlsafe.loads(t, "t"), text)
