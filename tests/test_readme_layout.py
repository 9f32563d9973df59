"""README.md's layout section, and the module names the documents give, against the tree.

The layout section is a table: the first column names paths from the checkout's root, the
second may name files and folders inside the row's folder (`cli.py` in the `xenballoond/guest/`
row). Every name must exist, and every folder must be named: each top-level folder and each
Python package folder (one with an ``__init__.py``). docs/design.md's "Modules" section lists
the modules folder by folder; each must exist there. Every ``*.py`` any document names must
exist somewhere in the tree, and every relative link must reach a file and a heading. A failure
names the stale entry, so a module that moved shows up here by name.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.repo import REPO

README = os.path.join(REPO, "README.md")
DOCS = os.path.join(REPO, "docs")
NOT_SOURCE = {"build", "dist", "venv", "rpmbuild", "__pycache__"}


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def documents() -> list[str]:
    return [README] + sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line), up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines))
                if re.match(rf"#{{1,{len(level)}}} ", lines[i])), len(lines))
    return "\n".join(lines[start:end])


def looks_like_path(token: str) -> bool:
    """A code span that names a file or folder: no blanks, ends in / or in an extension."""
    return (not re.search(r"\s", token) and not token.startswith("-")
            and (token.endswith("/") or re.search(r"\w\.[A-Za-z0-9]+$", token) is not None))


def layout_rows() -> list[tuple[list[str], list[str]]]:
    """(paths of the first column, path-like names of the second), for each row of the table."""
    rows = []
    for line in section(read(README), "## Layout").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2 or set(cells[0]) <= set("-: "):
            continue
        paths = re.findall(r"`([^`]+)`", cells[0])
        if not paths:  # the header
            continue
        names = [t for t in re.findall(r"`([^`]+)`", cells[1]) if looks_like_path(t)]
        rows.append((paths, names))
    return rows


def named_in_layout() -> set[str]:
    """Every path the layout section names, from the root; folders end in /."""
    named = set()
    for paths, names in layout_rows():
        named.update(paths)
        base = paths[0] if paths[0].endswith("/") else os.path.dirname(paths[0])
        named.update(os.path.join(base, n) for n in names)
    return named


def folders_to_name() -> set[str]:
    """Top-level folders with files in them, and every Python package folder, as `path/`."""
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                                 timeout=60).stdout.split("\n")
    except OSError:
        tracked = []
    tracked = [t for t in tracked if t]
    if tracked:  # a checkout: what git tracks
        top = {t.split("/", 1)[0] for t in tracked if "/" in t}
        packages = {os.path.dirname(t) for t in tracked if os.path.basename(t) == "__init__.py"}
    else:  # an sdist: what is there, without build output
        top = {n for n in os.listdir(REPO) if os.path.isdir(os.path.join(REPO, n))}
        packages = set()
        for dirpath, dirnames, filenames in os.walk(REPO):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in NOT_SOURCE
                           and not d.endswith(".egg-info")]
            if "__init__.py" in filenames:
                packages.add(os.path.relpath(dirpath, REPO))
    top = {t for t in top if not t.startswith(".") and t not in NOT_SOURCE
           and not t.endswith(".egg-info")}
    return {f + "/" for f in top | packages}


def test_the_layout_section_is_a_table_of_short_rows() -> None:
    rows = layout_rows()
    assert len(rows) >= 10
    for line in section(read(README), "## Layout").splitlines():
        assert len(line) <= 200, f"README.md layout: a row over 200 characters: {line[:80]}..."


@pytest.mark.parametrize("path", sorted(named_in_layout()))
def test_every_path_the_layout_names_exists(path: str) -> None:
    full = os.path.join(REPO, path)
    assert os.path.isdir(full) if path.endswith("/") else os.path.isfile(full), (
        f"README.md's layout section names `{path}`, which is not in the tree: "
        "fix or remove the name")


def test_every_folder_is_named_in_the_layout() -> None:
    missing = folders_to_name() - named_in_layout()
    assert not missing, f"README.md's layout section does not name these folders: {sorted(missing)}"


def test_the_folders_the_test_expects_are_found() -> None:
    """The folder discovery itself: the package folders are found, build output is not."""
    found = folders_to_name()
    assert {"xenballoond/", "xenballoond/guest/", "xenballoond/dom0/", "xenballoond/xenstore/",
            "xenballoond/sim/", "xenballoond/sim/plot/", "tests/", "tests/e2e/", "bench/",
            "etc/", "initscripts/", "debian/", "rpm/", "scripts/", "docs/"} <= found
    assert not any(f.endswith(".egg-info/") or f.startswith(".") for f in found)


def design_modules() -> list[tuple[str, str]]:
    """(folder, module) for each module docs/design.md's "Modules" section lists."""
    modules = section(read(os.path.join(DOCS, "design.md")), "## Modules")
    listed = []
    folder = None
    for line in modules.splitlines():
        heading = re.match(r"### `([^`]+/)`", line)
        if heading:
            folder = heading.group(1)
        elif line.startswith("- ") and folder:
            # the names before the first colon, e.g. "- `xenstored.py`, `xs_tree.py`: ..." and
            # those after a ';' that start a clause of their own ("; `meminfo.py`: ...")
            for clause in re.split(r";\s+", line[2:]):
                head = re.match(r"((?:`[^`]+`(?:,\s*)?)+):", clause)
                if head:
                    listed += [(folder, m) for m in re.findall(r"`([^`]+\.py)`", head.group(1))]
    return listed


def test_design_lists_modules() -> None:
    listed = design_modules()
    assert len(listed) > 50
    assert ("xenballoond/guest/", "tick.py") in listed


@pytest.mark.parametrize("folder,module", design_modules())
def test_every_module_design_lists_is_in_its_folder(folder: str, module: str) -> None:
    assert os.path.isfile(os.path.join(REPO, folder, module)), (
        f"docs/design.md's Modules section lists `{module}` under `{folder}`, which has no such "
        "module: fix the entry")


def source_files() -> list[str]:
    out = [n for n in os.listdir(REPO) if os.path.isfile(os.path.join(REPO, n))]
    for top in ("xenballoond", "tests", "bench", "scripts"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            out += [os.path.relpath(os.path.join(dirpath, f), REPO) for f in filenames]
    return out


def test_every_python_file_a_document_names_exists() -> None:
    """`numbers.py`, `guest/tick.py`, `tests/needs.py`: the tail of some file's path."""
    files = ["/" + f for f in source_files()]
    stale = []
    for doc in documents():
        for name in sorted(set(re.findall(r"`([\w./-]+\.py)`", read(doc)))):
            if not any(f.endswith("/" + name.lstrip("./")) for f in files):
                stale.append(f"{os.path.relpath(doc, REPO)}: `{name}`")
    assert not stale, f"these documents name Python files the tree does not have: {stale}"


def slug(heading: str) -> str:
    """A heading's anchor, as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_relative_link_reaches_a_file_and_a_heading() -> None:
    broken = []
    for doc in documents():
        for target in re.findall(r"\]\(([^)\s]+)\)", read(doc)):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            where = f"{os.path.relpath(doc, REPO)}: ({target})"
            if not os.path.exists(full):
                broken.append(where + " no such file")
            elif anchor:
                headings = re.findall(r"^#+ (.+)$", read(full), re.M)
                if anchor not in {slug(h) for h in headings}:
                    broken.append(where + " no such heading")
    assert not broken, broken
