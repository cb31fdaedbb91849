"""The lab's network: a router namespace, "VMs" behind it, and the NFS servers' namespaces.

    VM  .11/25 --\\                                  .129/25 -- .130/25  [srv]   Ganesha
    VM  .12/25 ---+-- br-vm .1/25  [rtr: router]
    VM  .21/25 --/                                  .241/30 -- .242/30  [knfs]  rpc.mountd

All in 198.51.100.0/24, inside namespaces named ``nxl<lab id>-<role>`` (the lab id is
drawn per lab, so parallel test sessions never meet).  Interface names are local to each
namespace (``eth0`` in a VM or server, ``p-<vm>``, ``to-srv``, ``to-knfs`` and ``br-vm``
in the router), so nothing is created in the root namespace: no interface, route,
forwarding switch or firewall rule of the host changes, and the router has no default
route, so nothing is routed off the machine.  ``masquerade(True)`` makes every VM reach
the servers from the router's address (the source-NAT outage), ``False`` undoes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from nfs_exportd_sim.lab.netns import PREFIX, NetNS, create_netns, new_lab_id
from nfs_exportd_sim.lab.proc import LabError, run

VM_NET = "198.51.100.0/25"
VM_GATEWAY = "198.51.100.1"
ROUTER_SRV_IP = "198.51.100.129"
SRV_IP = "198.51.100.130"
ROUTER_KNFS_IP = "198.51.100.241"
KNFS_IP = "198.51.100.242"
DEFAULT_VMS: Mapping[str, str] = {
    "a1": "198.51.100.11",
    "a2": "198.51.100.12",
    "b1": "198.51.100.21",
}
IFNAMSIZ = 15


@dataclass(frozen=True)
class VM:
    """A client machine: a namespace with one address on the VM subnet."""

    name: str
    address: str
    ns: NetNS

    @property
    def netns(self) -> str:
        return self.ns.name


class LabNetwork:
    """Router, VMs and server namespaces; ``start()`` builds, ``stop()`` deletes them all
    (by name, also after a partial start).  ``knfs=False`` leaves out rpc.mountd's net."""

    def __init__(self, vms: Mapping[str, str] | None = None, *, knfs: bool = True) -> None:
        vms = dict(DEFAULT_VMS if vms is None else vms)
        net = ipaddress.ip_network(VM_NET)
        for name, addr in vms.items():
            if not name.isalnum() or len(f"p-{name}") > IFNAMSIZ:
                raise LabError(f"VM name {name!r}: letters and digits, at most 13 characters")
            ip = ipaddress.ip_address(addr)
            if ip not in net or addr in (VM_GATEWAY, str(net.network_address)):
                raise LabError(f"VM {name} address {addr}: must be a host of {VM_NET} but .1")
        self.lab_id = new_lab_id()
        self.with_knfs = knfs
        self.router = NetNS(self._name("rtr"))
        self.server = NetNS(self._name("srv"))
        self.knfs = NetNS(self._name("knfs"))
        self.vms = {n: VM(n, a, NetNS(self._name(f"vm{n}"))) for n, a in vms.items()}
        self.server_ip = SRV_IP
        self.knfs_ip = KNFS_IP

    def _name(self, role: str) -> str:
        return f"{PREFIX}{self.lab_id}-{role}"

    def namespaces(self) -> list[NetNS]:
        """Every namespace of this lab, the router last (the order they are deleted in)."""
        servers = [self.server, self.knfs] if self.with_knfs else [self.server]
        return [vm.ns for vm in self.vms.values()] + servers + [self.router]

    # -- build --------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._build()
        except BaseException:
            self.stop()
            raise

    def _build(self) -> None:
        rtr = create_netns(self.router.name)
        run(rtr.argv("sysctl", "-qw", "net.ipv4.ip_forward=1"))
        rtr.ip("link", "add", "br-vm", "type", "bridge")
        rtr.ip("addr", "add", f"{VM_GATEWAY}/25", "dev", "br-vm")
        rtr.ip("link", "set", "br-vm", "up")
        self._server_link(self.server, "to-srv", ROUTER_SRV_IP, SRV_IP, 25)
        if self.with_knfs:
            self._server_link(self.knfs, "to-knfs", ROUTER_KNFS_IP, KNFS_IP, 30)
        for vm in self.vms.values():
            ns = create_netns(vm.ns.name)
            port = f"p-{vm.name}"
            rtr.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
            rtr.ip("link", "set", port, "master", "br-vm", "up")
            ns.ip("addr", "add", f"{vm.address}/25", "dev", "eth0")
            ns.ip("link", "set", "eth0", "up")
            ns.ip("route", "add", "default", "via", VM_GATEWAY, "dev", "eth0")

    def _server_link(self, ns: NetNS, port: str, gw: str, ip: str, plen: int) -> None:
        create_netns(ns.name)
        rtr = self.router
        rtr.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        rtr.ip("addr", "add", f"{gw}/{plen}", "dev", port)
        rtr.ip("link", "set", port, "up")
        ns.ip("addr", "add", f"{ip}/{plen}", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        ns.ip("route", "add", "default", "via", gw, "dev", "eth0")

    def stop(self) -> None:
        """Delete every namespace of this lab that exists; the first failure (a process
        still inside one) is raised after trying all of them."""
        errors: list[LabError] = []
        for ns in self.namespaces():
            try:
                ns.delete()
            except LabError as e:
                errors.append(e)
        if errors:
            raise LabError("; ".join(str(e) for e in errors))

    def __enter__(self) -> LabNetwork:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the source-NAT outage ----------------------------------------------------------

    def _masq_rules(self) -> list[list[str]]:
        ports = ["to-srv", "to-knfs"] if self.with_knfs else ["to-srv"]
        return [["POSTROUTING", "-s", VM_NET, "-o", p, "-j", "MASQUERADE"] for p in ports]

    def masquerade(self, on: bool) -> None:
        """Every VM leaves the router with the router's address on the server's link
        (``on``), or with its own again (``off``).  Only the router's nat table changes."""
        for rule in self._masq_rules():
            present = (
                run(self.router.argv("iptables", "-t", "nat", "-C", *rule), check=False).returncode
                == 0
            )
            if on and not present:
                run(self.router.argv("iptables", "-t", "nat", "-A", *rule))
            elif not on and present:
                run(self.router.argv("iptables", "-t", "nat", "-D", *rule))

    def masquerading(self) -> bool:
        out = run(self.router.argv("iptables", "-t", "nat", "-S", "POSTROUTING")).stdout
        return "MASQUERADE" in out
