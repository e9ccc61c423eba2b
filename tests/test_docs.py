"""The documentation covers the code: every command in the admin guide, every config key in the
configuration reference, every dependency in the Dependencies table, the quick start on the
README's front page, and a site that builds without a broken link."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from syndicator.cli.main import _parser
from syndicator.config.model import Config

from .support import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
MKDOCS = "mkdocs.yml"


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_every_command_is_documented_in_the_admin_guide() -> None:
    """Each subcommand of the CLI appears in the admin guide's command table."""
    guide = _page("admin-guide.md")
    parser = _parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name in commands.choices:
        assert f"| `syndicator {name}" in guide, name


def test_every_config_key_is_documented_in_the_reference() -> None:
    """Each top-level key of config.yaml, and each key of its sections, appears in the
    configuration reference's table."""
    reference = _page("config.md")
    missing: list[str] = []
    for name, field in Config.model_fields.items():
        if field.exclude:
            continue
        assert f"`{name}" in reference, name
        section = field.annotation
        for attribute, inner in getattr(section, "model_fields", {}).items():
            key = inner.alias or attribute
            if not re.search(rf"`{name}\.(\{{[^}}]*\b)?{key}\b", reference):
                missing.append(f"{name}.{key}")
    assert missing == []


def test_every_dependency_has_its_reason() -> None:
    """Each dependency of pyproject.toml (the package's and its extras') has a row of the
    Dependencies table, which says why it is there."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"].values()
    wanted = [*project["dependencies"], *(d for extra in extras for d in extra)]
    table = _page("development.md").split("## Dependencies", 1)[1]
    named = " ".join(line.split("|")[1].lower() for line in table.splitlines() if line.startswith("| "))
    for requirement in wanted:
        name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()
        assert name in named, requirement


def test_quick_start_is_two_commands() -> None:
    """The quick start installs and runs the main job, then runs the CI's test command."""
    assert (
        "\npython3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/syndicator run --once\n"
        in README
    )
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/check" in ci and "\nscripts/check\n" in README


def test_the_readme_is_a_front_page() -> None:
    """The README stays short (about 200 lines), says how to add a subscriber within its first
    screens, and links to every page of docs/."""
    lines = README.splitlines()
    assert len(lines) <= 210
    assert "syndicator subscribers add" in "\n".join(lines[:100])
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"(docs/{page.name})" in README, page.name


def test_every_page_is_in_the_navigation() -> None:
    """mkdocs.yml's nav lists every page of docs/, so none is built unreachable."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^theme:\n  name: material$", config, re.M)
    for page in DOCS.glob("*.md"):
        assert f": {page.name}\n" in config, page.name


def test_the_site_builds_without_a_broken_link(tmp_path: Path) -> None:
    """`mkdocs build --strict` succeeds: every page parses and every link between pages
    leads to a page that exists."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site"), "-f", MKDOCS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "LANG": "C.UTF-8"},
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "architecture" / "index.html").exists()


def _layout_tree() -> set[str]:
    """The paths the package tree of docs/architecture.md draws, from `syndicator/` down."""
    page = _page("architecture.md")
    block = page.split("## Package layout", 1)[1].split("```\n", 2)[1]
    paths: set[str] = set()
    stack: list[str] = []
    for line in block.splitlines()[1:]:
        branch = line.find("── ")
        if branch < 0:
            continue
        depth = (branch + 3) // 4 - 1
        name = line[branch + 3 :].split()[0]
        stack = [*stack[:depth], name.rstrip("/")]
        paths.add("/".join(stack))
    return paths


def test_the_architecture_page_draws_every_module() -> None:
    """The package tree of docs/architecture.md lists every module and subpackage of
    `syndicator/`, each where it is, and nothing that is gone."""
    package = ROOT / "syndicator"
    modules = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if p.name != "__init__.py" or p.parent == package
    }
    folders = {p.relative_to(package).as_posix() for p in package.rglob("*") if (p / "__init__.py").exists()}
    assert _layout_tree() == modules | folders
