"""The README and docs/: the README stays short, every page is linked from it, and every link and every
repository path the docs name exists.

Paths in backticks are checked when they look like paths of this repository: they start with one of
``REPO_DIRS`` or are one of ``TOP_LEVEL_FILES``. Paths with placeholders (``<project>``, ``*``, ``$X``,
``{id}``) are not checked. Links are checked relative to the file that names them, backticked paths
relative to the repository root.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 150

REPO_DIRS = ("dags/", "plugins/", "include/", "scripts/", "tests/", "bench/", "docs/", ".ci/")
TOP_LEVEL_FILES = frozenset({
    "docker-compose.yaml", "requirements.txt", "requirements-dev.txt", "pyproject.toml", "Dockerfile", ".env.example",
})
PLACEHOLDER = re.compile(r"[<>*${}…]|\.\.\.")

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def split_code(text: str) -> tuple[str, list[str]]:
    """The text with fenced code blocks and inline code removed, and the code itself (blocks, then spans)."""
    blocks = [match.group(0) for match in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    spans = INLINE_CODE.findall(prose)
    return INLINE_CODE.sub("", prose), blocks + spans


def link_targets(text: str) -> list[str]:
    """Relative link and image targets outside code, without their #fragment."""
    prose, _ = split_code(text)
    targets = []
    for target in LINK.findall(prose):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        target = unquote(target.split("#", 1)[0])
        if target:
            targets.append(target)
    return targets


def repo_paths(text: str) -> list[str]:
    """Repository paths written in backticks (inline code or code blocks), without a :line suffix."""
    _, code = split_code(text)
    paths = []
    for chunk in code:
        for token in chunk.split():
            token = token.strip("\"'`()[],;")
            token = token.rstrip(".") if not token.endswith("..") else token
            if not token or PLACEHOLDER.search(token):
                continue
            token = re.sub(r"(::.*|:\d+(-\d+)?)$", "", token)
            if token.startswith(REPO_DIRS) or token in TOP_LEVEL_FILES:
                paths.append(token)
    return paths


def exists(path: Path, target: str) -> bool:
    return path.is_dir() if target.endswith("/") else path.exists()


def test_extractors_find_what_the_checks_need() -> None:
    """The checks below can fail: the extractors see links, images and backticked paths, and skip the rest."""
    text = (
        "See [a](docs/a.md#part), ![b](docs/b.png \"title\"), [c](https://x.org), [d](#here), <https://y.org>.\n"
        "Run `scripts/demo.sh --keep-running`, read `include/x.py:12`, `tests/t.py::test_a`, `Dockerfile`,\n"
        "not `.data/demo/`, `bench/results/<name>.txt`, `$HOME/dags/`, `GET /api/projects/{id}`.\n"
        "```\ncp .env.example .env   # see [e](not/a/link.md)\ndags/   thin DAG files\n```\n"
    )
    assert link_targets(text) == ["docs/a.md", "docs/b.png"]
    assert sorted(repo_paths(text)) == sorted([
        ".env.example", "dags/", "scripts/demo.sh", "include/x.py", "tests/t.py", "Dockerfile",
    ])


def test_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines, at most {MAX_README_LINES} allowed"


@pytest.mark.parametrize("doc", doc_files(), ids=_name)
def test_relative_links_exist(doc: Path) -> None:
    missing = [
        target for target in link_targets(doc.read_text(encoding="utf-8"))
        if not exists((doc.parent / target).resolve(), target)
    ]
    assert not missing, "\n".join(f"{_name(doc)}: link to a missing path: {target}" for target in missing)


@pytest.mark.parametrize("doc", doc_files(), ids=_name)
def test_backticked_repository_paths_exist(doc: Path) -> None:
    missing = sorted({
        target for target in repo_paths(doc.read_text(encoding="utf-8")) if not exists(REPO / target, target)
    })
    assert not missing, "\n".join(f"{_name(doc)}: names a missing path: {target}" for target in missing)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / target).resolve() for target in link_targets(README.read_text(encoding="utf-8"))}
    pages = sorted(DOCS.glob("*.md"))
    unlinked = [_name(page) for page in pages if page.resolve() not in linked]
    assert not unlinked, "\n".join(f"README.md: does not link the page {page}" for page in unlinked)
