"""The README stays short, and no relative link in it or in docs/ leads nowhere.

Plain file reads: no Django, no database. Anchors (``#...``) are not checked, only that the file
or folder a link names exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
README_MAX_LINES = 300
DOCS = sorted((REPO / "docs").glob("*.md"))

# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:...


def relative_links(markdown: Path) -> list[str]:
    """The targets of the relative links of a Markdown file, outside fenced code blocks."""
    text = FENCE.sub("", markdown.read_text(encoding="utf-8"))
    targets = []
    for target in LINK.findall(text):
        path = target.split("#", 1)[0]
        if path and not EXTERNAL.match(target):
            targets.append(path)
    return targets


def test_readme_is_at_most_300_lines():
    lines = README.read_text(encoding="utf-8").count("\n") + 1
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (limit {README_MAX_LINES})."


def test_readme_names_the_two_make_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text


def test_the_link_pattern_finds_relative_links_and_skips_code_and_urls(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "See [a](docs/a.md#part), ![b](b.png \"title\") and [c](https://example.com/c.md).\n"
        "```\n[d](not/a/link.md)\n```\n[e](#only-an-anchor)\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["docs/a.md", "b.png"]


@pytest.mark.parametrize("markdown", [README, *DOCS], ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file(markdown):
    missing = [target for target in relative_links(markdown) if not (markdown.parent / target).exists()]
    assert not missing, f"{markdown.relative_to(REPO)} links to files that do not exist: {missing}"
