"""Builds the wheel as pyproject.toml says, compiling the gettext catalogues (`.po` → `.mo`) with
babel on the way, so that an installed wheel speaks French without babel reading `.po` files."""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCatalogues(build_py):
    """`build_py`, then each `syndicator/locale/*/LC_MESSAGES/*.po` compiled beside its copy."""

    def run(self) -> None:
        super().run()
        for source in Path("syndicator", "locale").glob("*/LC_MESSAGES/*.po"):
            target = Path(self.build_lib) / source.with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with source.open("rb") as po, target.open("wb") as mo:
                write_mo(mo, read_po(po, locale=source.parts[2]), use_fuzzy=False)


setup(cmdclass={"build_py": BuildWithCatalogues})
