"""Read layer: where the projects and their instances' addresses come from.

A source never raises for a sick control plane or a bad file: it returns a snapshot in
which what could not be read is *unknown* (whole listing or per project), so that the
decide layer can hold exactly that part.
"""

from __future__ import annotations

from typing import Protocol

from ..config import Config
from ..errors import ConfigError
from ..model import InventorySnapshot


class InventorySource(Protocol):
    name: str

    def read(self) -> InventorySnapshot: ...


def source_from_config(cfg: Config) -> InventorySource:
    if cfg.inventory.source == "static":
        from .static import StaticInventory

        assert cfg.inventory.file is not None
        return StaticInventory(cfg.inventory.file)
    raise ConfigError(f"{cfg.source_path}: inventory.source: {cfg.inventory.source!r} unsupported")
