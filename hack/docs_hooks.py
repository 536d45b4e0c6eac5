"""MkDocs hooks: every file of the repository that a page names in a code span
(`` `operator/trigger_operator/core/runs.py` ``) becomes a link to a page of the site showing that
file, so a reader goes from the README to the architecture page to any rule's file in two clicks,
and `mkdocs build --strict` checks each link.

The source pages are generated at build time (nothing is written into docs/): one per tracked
file under the folders below, at ``source/<path>.md``, with the file's text in a code block.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
# What the docs may link to as source: the operator, its schema, its chart's files, the tools.
SOURCE_GLOBS = ("operator/trigger_operator/**/*.py", "crds/*.yaml", "helm/trigger-operator/files/*",
                "hack/*.py", "hack/*.sh")
LANGUAGES = {".py": "python", ".yaml": "yaml", ".sh": "bash", ".lua": "lua", ".json": "json"}
SOURCE_DIR = "source"
# A code span naming a repository file, not already the text of a link.
CODE_SPAN = re.compile(r"(?<!\[)`([\w][\w./-]*\.\w+)`(?!\]\()")


def source_files() -> dict[str, Path]:
    """The files that get a page, by their path from the repository's root."""
    found: dict[str, Path] = {}
    for pattern in SOURCE_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                found[path.relative_to(ROOT).as_posix()] = path
    return found


def source_uri(path: str) -> str:
    return f"{SOURCE_DIR}/{path}.md"


def source_page(path: str, file: Path) -> str:
    fence = "````"  # a Markdown file with ``` blocks inside still shows whole
    return (f"# `{path}`\n\n{fence}{LANGUAGES.get(file.suffix, 'text')}\n{file.read_text()}\n{fence}\n")


def link_sources(markdown: str, page_uri: str, known: set[str]) -> str:
    """``markdown`` with each code span that names a known file made a link to its source page,
    relative to the page at ``page_uri``. Fenced code blocks are left as they are."""
    here = os.path.dirname(page_uri)
    parts = re.split(r"(^`{3,}.*?^`{3,}[^\n]*$)", markdown, flags=re.MULTILINE | re.DOTALL)

    def link(match: re.Match[str]) -> str:
        path = match.group(1)
        if path not in known:
            return match.group(0)
        return f"[`{path}`]({os.path.relpath(source_uri(path), here or '.')})"

    return "".join(part if i % 2 else CODE_SPAN.sub(link, part) for i, part in enumerate(parts))


def on_files(files: Files, config: Any) -> Files:
    for path, file in source_files().items():
        files.append(File.generated(config, source_uri(path), content=source_page(path, file)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.src_uri.startswith(f"{SOURCE_DIR}/"):
        return markdown
    return link_sources(markdown, page.file.src_uri, set(source_files()))
