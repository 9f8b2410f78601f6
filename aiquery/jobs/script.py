"""SQL job files: split into statements, fill in ``${name}`` variables. Pure text work, no Spark.

A job file is what ``spark-sql -f`` would take: statements separated by ``;``. The splitter understands
single- and double-quoted strings (with backslash escapes, as Spark SQL reads them, and doubled quotes),
back-quoted identifiers, ``--`` line comments and ``/* */`` block comments, so a ``;`` inside any of them does
not end a statement. Comments stay in the statement text: ``/*+ REPARTITION(8) */`` is a hint Spark reads.

Variables are written ``${name}`` and filled in from ``--var name=value`` before anything runs; a variable the
file uses but the command line does not give is an error that names it and its line. Values are inserted as
they are, in code and in string literals alike (``'${day}'`` is how a date becomes a literal), never in
comments, so a commented-out line cannot fail a job for want of a variable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["JobScriptError", "Statement", "parse_variables", "prepare_job", "split_statements", "without_comments"]

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class JobScriptError(ValueError):
    """The job file or its variables are wrong; nothing has run yet."""


@dataclass(frozen=True)
class Statement:
    """One statement of a job file.

    Attributes:
        number: 1 for the file's first statement, 2 for the second, ...
        line: the line of the file on which its first code (not comment) appears.
        sql: the statement's text without the closing ``;``, variables filled in.
        sql_line: the line of the file on which ``sql`` begins (a comment may come before the code).
    """

    number: int
    line: int
    sql: str
    sql_line: int

    @property
    def first_line(self) -> str:
        """The first line of code, for messages (``CREATE OR REPLACE TABLE summaries AS``)."""
        for text in _code_lines(self.sql):
            return text
        return ""

    def describe(self) -> str:
        """``statement 2 (line 7: CREATE OR REPLACE TABLE summaries AS)``."""
        first = self.first_line
        if len(first) > 100:
            first = first[:97] + "..."
        return f"statement {self.number} (line {self.line}: {first})"


@dataclass(frozen=True)
class _Piece:
    kind: str  # "code", "string" or "comment"
    text: str
    line: int


def _scan(text: str) -> Iterator[_Piece]:
    """The file as code, string and comment pieces; a ``;`` in code is its own piece."""
    pos, line, length = 0, 1, len(text)
    while pos < length:
        char = text[pos]
        start, start_line = pos, line
        if char in "'\"`":
            pos += 1
            while pos < length:
                if text[pos] == "\\" and char != "`":
                    pos += 2
                    continue
                if text[pos] == char:
                    if pos + 1 < length and text[pos + 1] == char:  # a doubled quote stands for one quote
                        pos += 2
                        continue
                    pos += 1
                    break
                pos += 1
            else:
                raise JobScriptError(f"line {start_line}: a {char} quote is never closed")
            kind = "string"
        elif text.startswith("--", pos):
            end = text.find("\n", pos)
            pos = length if end < 0 else end
            kind = "comment"
        elif text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            if end < 0:
                raise JobScriptError(f"line {start_line}: a /* comment is never closed")
            pos = end + 2
            kind = "comment"
        elif char == ";":
            pos += 1
            kind = "end"
        else:
            while pos < length and text[pos] not in "'\"`;" and not text.startswith(("--", "/*"), pos):
                pos += 1
            kind = "code"
        piece = text[start:pos]
        line += piece.count("\n")
        yield _Piece(kind, piece, start_line)


def split_statements(text: str) -> list[Statement]:
    """The statements of a job file, in order, variables left as written.

    Raises:
        JobScriptError: a quote or block comment is never closed.
    """
    statements: list[Statement] = []
    pieces: list[_Piece] = []

    def close() -> None:
        raw = "".join(p.text for p in pieces)
        first_code = next((p for p in pieces if p.kind != "comment" and p.text.strip()), None)
        if first_code is not None:
            line = first_code.line + _leading_newlines(first_code.text)
            sql_line = pieces[0].line + _leading_newlines(raw)
            statements.append(Statement(len(statements) + 1, line, raw.strip(), sql_line))
        pieces.clear()

    for piece in _scan(text):
        if piece.kind == "end":
            close()
        else:
            pieces.append(piece)
    close()
    return statements


def _leading_newlines(text: str) -> int:
    return text[: len(text) - len(text.lstrip())].count("\n")


def without_comments(sql: str) -> str:
    """``sql`` with each comment replaced by a space (quoted text and identifiers kept as written)."""
    return "".join(p.text if p.kind != "comment" else " " for p in _scan(sql))


def _code_lines(sql: str) -> Iterator[str]:
    code = "".join(p.text if p.kind != "comment" else "\n" * p.text.count("\n") for p in _scan(sql))
    for text in code.splitlines():
        if text.strip():
            yield text.strip()


def parse_variables(assignments: Sequence[str]) -> dict[str, str]:
    """``["day=2024-06-01", "limit=10"]`` as a dict; a later assignment of a name wins.

    Raises:
        JobScriptError: an assignment has no ``=`` or an invalid name.
    """
    variables: dict[str, str] = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        name = name.strip()
        if not equals:
            raise JobScriptError(f"--var {assignment!r}: expected name=value")
        if not _NAME.match(name):
            raise JobScriptError(
                f"--var {assignment!r}: {name!r} is not a variable name (letters, digits, _ and ., not first digit)"
            )
        variables[name] = value
    return variables


def _substitute(statement: Statement, variables: Mapping[str, str], missing: dict[str, int]) -> Statement:
    parts: list[str] = []
    for piece in _scan(statement.sql):
        if piece.kind == "comment":
            parts.append(piece.text)
            continue
        for match in VARIABLE.finditer(piece.text):
            if match.group(1) not in variables:
                line = statement.sql_line + piece.line - 1 + piece.text.count("\n", 0, match.start())
                missing.setdefault(match.group(1), line)
        parts.append(VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), piece.text))
    return Statement(statement.number, statement.line, "".join(parts), statement.sql_line)


def prepare_job(text: str, variables: Mapping[str, str]) -> list[Statement]:
    """Split a job file and fill in its variables; fail before anything runs if one is missing.

    Args:
        text: the job file's content.
        variables: values for ``${name}``.

    Returns:
        The statements to run, in order.

    Raises:
        JobScriptError: the file has no statement, a quote or comment is never closed, or a variable it uses
            is not given (every missing one is named, with the line of its first use).
    """
    statements = split_statements(text)
    if not statements:
        raise JobScriptError("the job file holds no SQL statement")
    missing: dict[str, int] = {}
    # Split first, substitute after: a value holding ';' or a quote must not change where statements end.
    prepared = [_substitute(statement, variables, missing) for statement in statements]
    if missing:
        listed = ", ".join(f"${{{name}}} (line {line})" for name, line in missing.items())
        flags = " ".join(f"--var {name}=..." for name in missing)
        raise JobScriptError(f"undefined variable(s): {listed}; give them with {flags}")
    return prepared
