"""Read layer: where the projects and their instances' addresses come from.

A source never raises for a sick control plane or a bad file: it returns a snapshot in
which what could not be read is *unknown* (whole listing or per project), so that the
decide layer can hold exactly that part.
"""

from __future__ import annotations

from typing import Protocol

from ...config import Config
from ...errors import ConfigError
from ...model import InventorySnapshot


class InventorySource(Protocol):
    name: str

    def read(self, interest: frozenset[str] | None = None) -> InventorySnapshot:
        """A snapshot; ``interest`` names the projects the caller needs (a source may
        list only those, and must then mark the others unknown)."""
        ...

    def reset(self) -> None:
        """Drop cached connections and credentials (SIGHUP, rotated credentials)."""
        ...


def source_from_config(cfg: Config) -> InventorySource:
    if cfg.inventory.source == "static":
        from .static import StaticInventory

        assert cfg.inventory.file is not None
        return StaticInventory(cfg.inventory.file, cfg.inventory.file_max_bytes)
    if cfg.inventory.source == "openstack":
        from .openstack import OpenStackInventory, OpenStackSettings

        inv = cfg.inventory
        return OpenStackInventory(
            OpenStackSettings(
                clouds=inv.clouds,
                identity_cloud=inv.identity_cloud,
                mode=inv.mode,
                regions=tuple(inv.regions) if inv.regions else None,
                timeout=inv.timeout_seconds,
                concurrency=inv.concurrency,
                include_floating_ips=inv.include_floating_ips,
            )
        )
    raise ConfigError(f"{cfg.source_path}: inventory.source: {cfg.inventory.source!r} unsupported")
