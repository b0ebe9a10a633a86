"""The README and docs/ only point at things that exist: relative links resolve to files in the repository, their
#anchors to headings of the target page, and no page cites the private reference notes."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: pathlib.Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", ""))
            out.add(text.replace(" ", "-"))
    return out


def _code_free(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_image_resolves(page):
    text = _code_free(page.read_text(encoding="utf-8"))
    bad = []
    for target in LINK.findall(text) + IMAGE.findall(text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, f"{page.name}: " + "; ".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_cites_the_private_reference_notes(page):
    text = page.read_text(encoding="utf-8")
    for missing in ("antithetic.md", "nag.md", "reference notes"):
        assert missing not in text, f"{page.name} cites {missing!r}, which is not in the repository"


def test_readme_is_a_front_page_and_every_doc_is_linked_from_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    before_nodes = readme.split("\n## Nodes", 1)[0]
    assert len(before_nodes.splitlines()) < 80, "the README should reach its node table within a screen or two"
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{doc.name}" in readme, f"docs/{doc.name} is not linked from the README"
    for block in ("bench-headline",):
        assert f"<!-- BEGIN:{block} -->" in readme and f"<!-- END:{block} -->" in readme


def test_the_registry_icon_is_a_square_png_of_this_repository():
    toml = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    url = re.search(r'^Icon = "([^"]+)"', toml, re.M).group(1)
    prefix = "https://raw.githubusercontent.com/antithetic-sampling/antithetic-sampling/main/"
    assert url.startswith(prefix), url
    png = (ROOT / url[len(prefix):]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
    assert width == height and 64 <= width <= 512, (width, height)
