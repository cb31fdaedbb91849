"""The docs stay true to the code: every config key is in the configuration reference,
its complete example loads, every command and hold reason is documented, and every metric
the daemon exports is described."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from nfs_exportd.cli import build_parser
from nfs_exportd.config import Config, load_config
from nfs_exportd.decide import HOLD_REASONS
from nfs_exportd.ops.metrics import METRIC_NAMES
from nfs_exportd_sim.cli import build_parser as sim_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        out.add(prefix + name)
        ann: Any = field.annotation
        args = getattr(ann, "__args__", ())
        if getattr(ann, "__origin__", None) is dict and len(args) == 2:
            # NAME: {...} mappings are documented as KEY.NAME.field
            if isinstance(args[1], type) and issubclass(args[1], BaseModel):
                out |= _keys(args[1], prefix + name + ".NAME.")
            continue
        for candidate in (ann, *args):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                out |= _keys(candidate, prefix + name + ".")
    return out


def test_every_config_key_is_in_the_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    keys = _keys(Config)
    assert "inventory.identity_cloud" in keys and "history.retention_days" in keys
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"not documented in docs/configuration.md: {missing}"


def test_the_complete_example_config_loads(tmp_path: Path) -> None:
    text = (DOCS / "configuration.md").read_text()
    section = text.split("## Complete example", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "no yaml block under '## Complete example'"
    data = yaml.safe_load(block.group(1))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)  # raises ConfigError naming the key if the docs are wrong
    used = set()

    def walk(d: dict[str, Any], prefix: str = "") -> None:
        for k, v in d.items():
            used.add(prefix + k)
            if isinstance(v, dict) and prefix + k not in ("public_exports",):
                walk(v, prefix + k + ".")

    walk(data)
    assert cfg.source_path == path
    # the example shows every section
    for section_key in ("safety", "metrics", "check", "maintenance", "history", "inventory"):
        assert section_key in used


@pytest.mark.parametrize("doc", ["install.md", "configuration.md", "runbook.md", "migration.md"])
def test_docs_exist_and_link_from_the_readme(doc: str) -> None:
    assert (DOCS / doc).stat().st_size > 2000
    readme = (DOCS.parent / "README.md").read_text()
    assert f"docs/{doc}" in readme


def test_every_command_is_in_the_readme_and_every_hold_in_the_runbook() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set(getattr(sub, "choices", {}))
    assert {"explain", "history", "rollback", "release", "adopt", "check"} <= commands
    missing = sorted(c for c in commands if f"`{c}" not in readme)
    assert not missing, f"commands missing from README: {missing}"
    runbook = (DOCS / "runbook.md").read_text()
    holds = HOLD_REASONS
    headings = re.findall(r"^### (.+)$", runbook, re.M)
    documented = {w.strip("` ") for h in headings for w in h.split(",")}
    missing = sorted(r.value for r in holds if r.value not in documented)
    assert not missing, f"hold reasons without a runbook entry: {missing}"


def test_the_simulators_commands_are_in_the_readme() -> None:
    """The simulator is a program of its own (``nfs-exportd-sim``), not a daemon command."""
    readme = (DOCS.parent / "README.md").read_text()
    parser = sim_parser()
    sub = next(a for a in parser._actions if a.dest == "sim_command")
    commands = set(getattr(sub, "choices", {}))
    assert commands == {"serve", "gen"}
    missing = sorted(c for c in commands if f"`nfs-exportd-sim {c}" not in readme)
    assert not missing, f"simulator commands missing from README: {missing}"


def test_every_metric_is_described_in_the_install_guide() -> None:
    text = (DOCS / "install.md").read_text()
    missing = sorted(m for m in METRIC_NAMES if m not in text)
    assert not missing, f"metrics not described in docs/install.md: {missing}"


def test_documented_integer_defaults_are_the_models() -> None:
    """A default the docs table gives as a plain integer is the model's (the per-project
    concurrency default changed by measurement: the table must say the new one)."""
    text = (DOCS / "configuration.md").read_text()
    rows = re.findall(r"^\| `([a-z_.]+)` \| [^|]+ \| `(\d+)`", text, flags=re.M)
    assert any(key == "inventory.concurrency" for key, _ in rows)
    checked = 0
    for key, default in rows:
        model: Any = Config
        *parents, leaf = key.split(".")
        for part in parents:
            field = model.model_fields.get(part)
            model = field.annotation if field is not None else None
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                break
        else:
            field = model.model_fields.get(leaf)
            if field is not None and isinstance(field.default, int):
                assert field.default == int(default), key
                checked += 1
    assert checked >= 2
