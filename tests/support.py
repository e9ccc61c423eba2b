"""Helpers the tests share: where the samples are, and a small item file in the export format."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ITEMS = ROOT / "items"
SEED = ITEMS / "000_fef656b9b6bf81b1.txt"


def item_text(
    url: str = "https://www.irev.fr/actualites-0/un-titre-de-test",
    *,
    body: str = "Un titre de test pour vérifier le parseur.",
    modified: str | None = "30/11/2021 - 11:29",
    fields: str = "",
) -> str:
    """A small item file in the website's export format."""
    stamp = f" (modifié le {modified})" if modified else ""
    return (
        f"\n\n{body}\n\n{fields}"
        f"Publié le 30 novembre 2021\n\n"
        f"URL de la source{stamp}: <{url}>\n\nLiens\n\n"
        "[1] https://www.irev.fr/sites/default/files/doc.pdf\n\n"
        "[2] <https://www.irev.fr/javascript%3A%3B>\n\n"
        "[3] <https://www.irev.fr/taxonomy/term/4314>\n"
    )


def numbered_items(folder: Path, count: int) -> None:
    """`count` small item files in `folder` (made if missing), `0000.txt` on, each its own item
    (`…/titre-numero-N`, titled `Titre numéro N.`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"{n:04d}.txt").write_text(
            item_text(f"https://www.irev.fr/actualites-0/titre-numero-{n}", body=f"Titre numéro {n}."),
            encoding="utf-8",
        )
