"""The README and docs/: links that resolve, a README that stays a front door, no history,
and a results page that is only what the benches wrote.

The Sphinx build (`make docs`, part of `make test`) checks the pages it renders; these
checks also cover the README, which Sphinx does not read, and run without Sphinx.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 260

PAGES = [README, *sorted(DOCS.glob("*.md"))]
#: Everything written in prose, including the benches' sections of the results page.
PROSE = [*PAGES, *sorted((DOCS / "results").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """The anchor of a heading, as GitHub and MyST (``myst_heading_anchors``) make it."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m[2]) for m in HEADING.finditer(FENCE.sub("", path.read_text()))}


def _links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    dead = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            dead.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            dead.append(f"{target}: no heading with anchor #{anchor} in {path.name}")
    assert not dead, f"{page.relative_to(ROOT)}: dead links:\n" + "\n".join(dead)


def test_readme_is_a_front_door():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference text to docs/"
    )


# A commit hash: 7 to 40 hex digits with at least one letter and one digit (so plain
# numbers and words such as "defaced" do not count).
HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
HISTORY = re.compile(r"\b(issue|stop)\s+#?[0-9]+\b", re.I)


@pytest.mark.parametrize("page", PROSE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_commit_hashes_or_issue_numbers(page):
    text = page.read_text()
    hashes = sorted(set(HASH.findall(text)))
    assert not hashes, f"{page.relative_to(ROOT)}: commit hashes {hashes}"
    refs = sorted({m[0] for m in HISTORY.finditer(text)})
    assert not refs, f"{page.relative_to(ROOT)}: history references {refs}"


def test_register_table_is_the_register_map():
    from oasa.hw.registers import register_table_markdown

    assert register_table_markdown() in (DOCS / "architecture.md").read_text()


def test_results_page_is_what_the_benches_wrote():
    """docs/results.md holds every bench section, unedited, and no section is missing
    (run ``python bench/results.py`` after a bench)."""
    page = (DOCS / "results.md").read_text()
    assert "## Not measured yet" not in page
    sections = sorted((DOCS / "results").glob("*.md"))
    assert sections
    for section in sections:
        assert section.read_text().rstrip("\n") in page, (
            f"docs/results.md does not hold {section.relative_to(ROOT)} as written: "
            "run python bench/results.py"
        )
