"""The README documents what exists: every CLI command, every page, every model metadata key,
and the two set-up commands that CI runs."""

import re
from pathlib import Path

import click

from core.cli import cli
from core.models import METADATA_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "semtriage") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        out += _commands(cmd, full) if isinstance(cmd, click.Group) else [full]
    return out


def test_every_cli_command_in_readme():
    missing = [c for c in _commands(cli) if c not in README]
    assert not missing, f"README lacks: {missing}"


def test_every_metadata_key_in_readme():
    missing = [k for k in METADATA_KEYS if f"`{k}`" not in README]
    assert not missing, f"README lacks model metadata keys: {missing}"


def test_every_page_in_readme():
    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").rglob("*.py")
                   if not p.stem.startswith("_"))
    assert pages, "no pages found"
    missing = [p for p in pages if p not in README]
    assert not missing, f"README lacks pages: {missing}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    cmd = re.search(r"exec (\./scripts/\S+)", ci).group(1)
    assert f"{cmd}    # run the whole test suite" in README
    assert "./scripts/app.sh" in README
