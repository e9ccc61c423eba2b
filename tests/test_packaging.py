"""The built wheel, installed into a fresh virtualenv (not editable), runs the quick start on its
own: its modules and default templates are inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from .databases import use_database
from .support import ITEMS, ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built as `pip wheel .` does, from a copy of what it is built from: a
    `build/` folder left in the checkout by an earlier build would otherwise be reused."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("syndicator", "templates"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("syndicator-*.whl")
    return built


def test_the_wheel_holds_every_module_and_the_templates_folder(wheel: Path) -> None:
    """Every module of `syndicator/` and every file of the top-level `templates/` is in the wheel,
    the templates as `syndicator/templates/`; no second copy sits in the repository."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "syndicator").rglob("*.py")}
    templates = {
        "syndicator/" + p.relative_to(ROOT).as_posix() for p in (ROOT / "templates").rglob("*") if p.is_file()
    }
    assert "syndicator/templates/feeds_index.html" in templates
    assert modules - names == set()
    # The French catalogue, compiled by the build (setup.py), for the command line.
    assert "syndicator/locale/fr/LC_MESSAGES/syndicator.mo" in names
    assert templates - names == set()
    assert not (ROOT / "syndicator" / "templates").exists()


def test_the_installed_wheel_runs_the_quick_start_in_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    """`pip install` of the wheel into a fresh venv, then `syndicator run --once` in a folder
    holding only config.yaml and items/ (no templates/): feeds/index.html and the outbox's
    digests are written with the shipped templates."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies come from the test run's own environment (no download); that folder's .pth
    # files are not read from here, so the editable install of the checkout stays out of sight.
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    folder = tmp_path / "site"
    folder.mkdir()
    use_database(Path(shutil.copy(ROOT / "config.yaml", folder / "config.yaml")))
    shutil.copytree(ITEMS, folder / "items")
    where = subprocess.run(
        [python, "-c", "import syndicator; print(syndicator.__file__)"],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site)
    result = subprocess.run(
        [venv / "bin" / "syndicator", "run", "--once"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "27 new, 0 updated, 0 unchanged, 0 errors" in result.stdout
    assert "Flux" in (folder / "feeds" / "index.html").read_text(encoding="utf-8")
    assert list((folder / "outbox").glob("*.eml"))
    assert not (folder / "templates").exists()
    # The admin's French, from the compiled catalogue the wheel holds.
    french = subprocess.run(
        [venv / "bin" / "syndicator", "--help"], cwd=folder, capture_output=True, text=True, check=False,
        env={"PATH": os.environ["PATH"], "LANG": "fr_FR.UTF-8"},
    )  # fmt: skip
    assert french.stdout.startswith("utilisation\u00a0: syndicator "), french.stderr
    # A folder holding nothing at all: the shipped templates still write the feeds' index, and
    # the missing items/ is one located error saying what to do, not a traceback.
    empty = tmp_path / "empty"
    empty.mkdir()
    bare = subprocess.run(
        [venv / "bin" / "syndicator", "run", "--once"], cwd=empty, capture_output=True, text=True, check=False
    )
    assert bare.returncode == 1 and "Traceback" not in bare.stderr
    assert "items: no such file or folder: put the item files there" in bare.stderr
    assert (empty / "feeds" / "index.html").exists()
