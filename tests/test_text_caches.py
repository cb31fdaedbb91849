"""What a cycle remembers per text (address parses, canonical client texts, client sort
keys) is forgotten by ``cycle.forget_texts``, which ``run`` calls after every cycle: a
long-running daemon must not keep the addresses of cycles past (up to 2^18 entries per
cache)."""

from __future__ import annotations

from nfs_exportd import addresses, cycle, model
from nfs_exportd.exportsfile import parse, render

TEXT = (
    "# nfs-exportd managed file, do not edit: project=a\n"
    "/srv/a -rw 192.0.2.1 192.0.2.9 198.51.100.0/24 2001:db8::1\n"
)

CACHES = [
    addresses._parse_address,
    addresses._parse_network,
    addresses._network_text,
    model.client_sort_key,
]


def test_a_cycle_fills_the_caches_and_forget_texts_empties_them() -> None:
    f = parse("a.exports", TEXT)
    assert f is not None and render(f) == TEXT
    assert all(c.cache_info().currsize > 0 for c in CACHES)
    cycle.forget_texts()
    assert [c.cache_info().currsize for c in CACHES] == [0] * len(CACHES)
    assert render(f) == TEXT  # computed again, the same
