"""Every relative link and repository path named in README.md and docs/ exists, every link to a
heading and every `docs/X.md §N` finds it, and the README's test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "mosquitto" / "README.md", *(ROOT / "docs").glob("*.md")])

#: top-level folders of the repository: a backticked or code-block token starting with one of
#: these names a file or folder that must exist
PREFIXES = (
    "app",
    "bench",
    "collectors",
    "dashboards",
    "deploy",
    "docs",
    "examples",
    "lingtan",
    "mosquitto",
    "simulator",
    "tests",
    "tools",
    ".ci",
)
ROOT_FILES = ("README.md", "pyproject.toml", "docker-compose.yml", "Dockerfile")
#: files the docs name that are written at run time, never committed (`lingtan gateways`)
GENERATED = frozenset({"mosquitto/passwd", "mosquitto/acl", "mosquitto/gateways.json"})

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(
    r"(?<![\w./$-])((?:" + "|".join(re.escape(p) for p in PREFIXES) + r")/[\w./-]*[\w/])"
    r"(?![\w*{}<>$…-])"  # not the start of a pattern such as tests/test_x_*.py
)
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = _FENCE.sub("", md.read_text("utf-8"))
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def _is_path(token: str) -> bool:
    if any(c in token for c in "{}<>*…$ ") or "..." in token:
        return False  # a pattern or placeholder, not a file
    return not token.startswith("lingtan/v1")  # an MQTT topic


def problems(md: Path, root: Path = ROOT) -> list[str]:
    """What `md` names that does not exist: relative links (and their #headings), and
    repository paths in code spans and code blocks."""
    text = md.read_text("utf-8")
    found: list[str] = []
    prose = _FENCE.sub("", text)
    for m in _LINK.finditer(prose):
        target = m[1]
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (md.parent / path_part).resolve() if path_part else md
        if not dest.exists():
            found.append(f"link {target!r}: {dest.relative_to(root)} does not exist")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            found.append(f"link {target!r}: no heading #{fragment} in {dest.name}")
    spans = [m[1].strip().rstrip(".,:;") for m in _CODE_SPAN.finditer(prose)]
    paths = [t for t in spans if t in ROOT_FILES]
    # a span that is one token is a path or not as a whole; in a command, find the paths
    paths += [t for t in spans if " " not in t and _PATH.fullmatch(t) and _is_path(t)]
    paths += [m[1] for t in spans if " " in t for m in _PATH.finditer(t)]
    paths += [m[1] for block in _FENCE.findall(text) for m in _PATH.finditer(block)]
    for path in paths:
        if _is_path(path) and path not in GENERATED and not (root / path).exists():
            found.append(f"path {path!r} does not exist")
    return found


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_path_exists(md: Path) -> None:
    assert problems(md) == []


def test_the_checker_finds_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "there.py").write_text("")
    (tmp_path / "docs" / "other.md").write_text("# Title\n\n## 2. Known part\n")
    md = tmp_path / "docs" / "page.md"
    md.write_text(
        "# Page\n\n"
        "[ok](other.md#2-known-part) [gone](missing.md) [bad anchor](other.md#nope)\n"
        "[web](https://example.org/x) [self](#page) [self bad](#nowhere)\n"
        "`app/there.py` `app/not-there.py` `lingtan/v1/{park}/x` `docs/*.md`\n"
        "`tests/test_x_*.py` `influxd run -config deploy/gone.conf`\n\n"
        "```bash\ncat examples/absent.yaml app/there.py\n```\n"
    )
    assert problems(md, tmp_path) == [
        "link 'missing.md': docs/missing.md does not exist",
        "link 'other.md#nope': no heading #nope in other.md",
        "link '#nowhere': no heading #nowhere in page.md",
        "path 'app/not-there.py' does not exist",
        "path 'deploy/gone.conf' does not exist",
        "path 'examples/absent.yaml' does not exist",
    ]


_SECTION_REF = re.compile(r"`?docs/([a-z-]+\.md)`? §(\d+(?:\.\d+)?)")


def section_problems(md: Path, root: Path = ROOT) -> list[str]:
    """`docs/X.md §N` (or §N.M) references whose numbered heading does not exist."""
    found = []
    for m in _SECTION_REF.finditer(md.read_text("utf-8")):
        target = root / "docs" / m[1]
        numbers = set()
        if target.exists():
            text = _FENCE.sub("", target.read_text("utf-8"))
            numbers = {h[1] for h in re.finditer(r"^#{2,3} (\d+(?:\.\d+)?)\. ", text, re.M)}
        if m[2] not in numbers:
            found.append(f"docs/{m[1]} has no section {m[2]}")
    return found


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_numbered_section_named_exists(md: Path) -> None:
    assert section_problems(md) == []


def test_section_check_finds_a_missing_section(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## 1. One\n\n### 1.1. Sub\n")
    md = tmp_path / "docs" / "b.md"
    md.write_text("see `docs/a.md` §1, docs/a.md §1.1, `docs/a.md` §2 and docs/c.md §1\n")
    assert section_problems(md, tmp_path) == [
        "docs/a.md has no section 2",
        "docs/c.md has no section 1",
    ]


def test_slug_matches_github() -> None:
    assert slug("8. Embedded store") == "8-embedded-store"
    assert slug("4.3. `GET /api/v1/parks/{park}/balance?start=&end=&every=`") == (
        "43-get-apiv1parksparkbalancestartendevery"
    )
    assert slug("Quick start (Debian 12): one command") == "quick-start-debian-12-one-command"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Tests", 1)[1].split("\n## ", 1)[0]
    commands = [
        line.strip()
        for block in _FENCE.findall(section)
        for line in block.splitlines()
        if "pytest" in line and not line.startswith("```")
    ]
    assert commands == [".venv/bin/python -m pytest"], commands
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert re.search(r"^\.venv/bin/python -m pytest$", ci, re.M), "CI runs another command"
    assert "-e '.[dev]'" in section and "-e '.[dev]'" in ci
