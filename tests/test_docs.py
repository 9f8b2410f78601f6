"""The docs stay findable and true to the code: every relative link resolves, every `aiquery` command parses.

A link is checked the way GitHub renders it: the file must exist in the repository and a ``#anchor`` must be the
slug of a heading in the target. A command is checked against the real parsers: its subcommand must exist and
each of its ``--options`` must be one that subcommand (or the top-level command) accepts.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiquery.cli import build_parser
from aiquery.gateway.command import build_parser as gateway_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to -."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (outside code blocks), with GitHub's -1, -2 ... for repeated ones."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in text.splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading is None:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(text: str) -> Iterator[str]:
    """The links of a page's text that point into the repository (not to a web address or a mail address)."""
    for target in LINK.findall(FENCE.sub("", text)):
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):
            yield target


def broken_links(page: Path, text: str | None = None) -> list[str]:
    """The page's relative links whose file or heading does not exist (``text``: the page's, unless given)."""
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8") if text is None else text):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        outside = not destination.exists() or ROOT not in (destination, *destination.parents)
        if outside or (anchor and (destination.suffix != ".md" or anchor not in anchors(destination))):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found() -> None:
    page = ROOT / "docs" / "architecture.md"  # links resolve from its folder
    text = "[ok](../README.md) [ok](#layers) [file](missing.md) [anchor](../README.md#no-such-heading)"
    assert broken_links(page, text) == ["missing.md", "../README.md#no-such-heading"]


def test_slugs_follow_githubs_rules() -> None:
    assert slug("SQL reference: `ai_query`") == "sql-reference-ai_query"
    assert slug("Images (`files =>`)") == "images-files-"
    assert slug("Scheduled batch jobs: `aiquery run`") == "scheduled-batch-jobs-aiquery-run"


def command_lines(page: Path) -> Iterator[list[str]]:
    """Each `aiquery ...` command shown in the page's code blocks, as words, from `aiquery` on."""
    for block in FENCE.findall(page.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            match = re.search(r"(?:^|[\s/])aiquery ([a-z].*)$", line)
            if match:  # a comment after the command is kept: the options it names must exist too
                try:
                    words = shlex.split(match.group(1))
                except ValueError:  # an apostrophe in the comment
                    words = match.group(1).split()
                yield ["aiquery", *words]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``aiquery`` by name; ``gateway`` parses with the emulator's own parser."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = dict(action.choices)
    found["gateway"] = gateway_parser()
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings a parser accepts (``--var``, ``-h`` ...)."""
    return {flag for action in parser._actions for flag in action.option_strings}


def unknown_in(command: list[str]) -> list[str]:
    """What in one `aiquery` command line the real parser would not accept: the subcommand, or an option."""
    known = subcommands()
    sub = command[1] if len(command) > 1 else ""
    if sub not in known:
        return [sub]
    parser = known[sub]
    nested = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if nested is not None:  # aiquery batch ACTION: the action's own options
        action = command[2] if len(command) > 2 else ""
        if action not in nested.choices:
            return [f"{sub} {action}"]
        parser = nested.choices[action]
    accepted = options(parser) | options(known[sub]) | options(build_parser())
    named = [word.split("=", 1)[0] for word in command[2:] if word.startswith("--")]
    return [option for option in named if option not in accepted]


def test_the_docs_show_aiquery_commands() -> None:
    commands = [command for page in PAGES for command in command_lines(page)]
    assert {command[1] for command in commands} >= {"run", "estimate", "dashboard", "gateway"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_aiquery_command_in_a_code_block_parses(page: Path) -> None:
    wrong = {" ".join(command): unknown_in(command) for command in command_lines(page) if unknown_in(command)}
    assert wrong == {}


def test_a_wrong_subcommand_or_option_is_found() -> None:
    assert unknown_in(["aiquery", "run", "job.sql", "--var", "a=1", "--no-such-option"]) == ["--no-such-option"]
    assert unknown_in(["aiquery", "runn", "job.sql"]) == ["runn"]
    assert unknown_in(["aiquery", "gateway", "--port", "8080", "--hostile"]) == []
