"""Two distributions from one tree: ``nfs-exportd`` (pyproject.toml) is what production
installs and must not carry the simulator; ``nfs-exportd-sim`` (sim/pyproject.toml) is
test-only and must carry all of it, the exportfs sandbox and the demo's data included.
Read from the packaging config with setuptools' own package finder (building the wheels
needs the network for the build backend; the README says how to check them by hand)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from setuptools import find_namespace_packages, find_packages

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def _packages(
    where: Path, include: Any = ("*",), exclude: Any = (), namespaces: bool = True
) -> set[str]:
    """The packages with modules that ``[tool.setuptools.packages.find]`` finds (namespaces
    on by default there; data folders such as demo/data are not packages of code)."""
    finder = find_namespace_packages if namespaces else find_packages
    found = finder(str(where), include=include, exclude=exclude)
    return {p for p in found if any(where.joinpath(*p.split(".")).glob("*.py"))}


def test_the_production_distribution_has_no_simulator() -> None:
    find = _toml(REPO / "pyproject.toml")["tool"]["setuptools"]["packages"]["find"]
    (where,) = find.pop("where")
    packages = _packages(REPO / where, **find)
    assert not {p for p in packages if p.split(".")[0] != "nfs_exportd"}, packages
    assert _packages(SRC, include=["nfs_exportd", "nfs_exportd.*"]) == packages
    # the layer folders and their subpackages, all of them
    layers = {"read", "read.inventory", "decide", "apply", "memory", "ops", "commands"}
    assert {f"nfs_exportd.{p}" for p in layers} <= packages


def test_the_sim_distribution_has_all_of_the_simulator() -> None:
    doc = _toml(REPO / "sim" / "pyproject.toml")
    setup = doc["tool"]["setuptools"]
    assert (REPO / "sim" / setup["package-dir"][""]).resolve() == SRC
    assert set(setup["packages"]) == _packages(
        SRC, include=["nfs_exportd_sim", "nfs_exportd_sim.*"]
    )
    data = setup["package-data"]["nfs_exportd_sim"]
    root = SRC / "nfs_exportd_sim"
    shipped = {p for pattern in data for p in root.glob(pattern)}
    assert root / "exportfs-sandbox" in shipped
    assert set((root / "demo" / "data").iterdir()) <= shipped
    assert doc["project"]["scripts"]["nfs-exportd-sim"] == "nfs_exportd_sim.cli:entrypoint"
