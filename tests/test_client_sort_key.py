"""The client sort key (the order of clients in every rendered line): its IPv4 fast
path gives exactly the key ``ipaddress`` gives, and refuses what ``ipaddress`` refuses,
so no file in force is rewritten in another order."""

from __future__ import annotations

import ipaddress

from nfs_exportd.model import client_sort_key


def reference(client: str) -> tuple[int, int, str]:
    """The key as computed before the fast path: through ``ipaddress`` alone."""
    try:
        net = ipaddress.ip_network(client, strict=False)
    except ValueError:
        return (9, 0, client)
    single = net.prefixlen == net.max_prefixlen
    return (net.version, 0 if single else 1, f"{int(net.network_address):040d}/{net.prefixlen:03d}")


def octets() -> list[str]:
    """Every octet text ipaddress might meet: 0-999 plain, and with leading zeros."""
    out = [str(i) for i in range(1000)]
    out += [f"0{i}" for i in range(100)] + [f"00{i}" for i in range(10)] + ["", "0000"]
    return [*out, "\u0661", "1 ", "+1", "-1", "1_0"]  # an Arabic-Indic one, signs, spaces


def test_every_octet_text_keys_as_ipaddress_does() -> None:
    for o in octets():
        for client in (f"{o}.2.3.4", f"1.{o}.3.4", f"10.20.{o}.4", f"192.0.2.{o}"):
            assert client_sort_key.__wrapped__(client) == reference(client), client


def test_other_clients_key_as_ipaddress_does() -> None:
    for client in [
        "0.0.0.0",
        "255.255.255.255",
        "1.2.3.4.5",
        "1.2.3",
        "1.2.3.4/32",
        "1.2.3.4/24",
        "10.0.0.0/8",
        "2001:db8::1",
        "2001:db8::/32",
        "::ffff:1.2.3.4",
        "host.example",
        "1.2.3.4\n",
        " 1.2.3.4",
    ]:
        assert client_sort_key.__wrapped__(client) == reference(client), client


def test_the_order_is_numeric_v4_first_networks_after() -> None:
    clients = ["10.0.0.0/8", "2001:db8::1", "9.255.255.255", "10.0.0.1", "1.2.3.4"]
    assert sorted(clients, key=client_sort_key) == [
        "1.2.3.4",
        "9.255.255.255",
        "10.0.0.1",
        "10.0.0.0/8",
        "2001:db8::1",
    ]
