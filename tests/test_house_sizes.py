"""Rooms a newcomer can read: no module in `aiquery/` over 400 lines, no function over 60 lines.

A module may be longer when its first lines say why, in a comment `# longer than 400 lines: <reason>`; a function
when the line just above its `def` (or its first decorator) says `# longer than 60 lines: <reason>`. The reason is
for the reader who wonders whether to split it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aiquery"
MODULE_LINES = 400
FUNCTION_LINES = 60
REASON = re.compile(r"#\s*longer than (\d+) lines:\s*\S")


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def has_reason(line: str, limit: int) -> bool:
    match = REASON.search(line)
    return bool(match) and int(match.group(1)) == limit


def test_no_module_over_400_lines_without_a_reason():
    long = []
    for path in python_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MODULE_LINES and not any(has_reason(line, MODULE_LINES) for line in lines[:5]):
            long.append(f"{path.relative_to(PACKAGE.parent)}: {len(lines)} lines")
    assert not long, "split these modules, or say why at their top (# longer than 400 lines: ...):\n" + "\n".join(long)


def test_no_function_over_60_lines_without_a_reason():
    long = []
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            if length > FUNCTION_LINES and not (first >= 2 and has_reason(lines[first - 2], FUNCTION_LINES)):
                long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines")
    assert not long, "split these functions, or say why above them (# longer than 60 lines: ...):\n" + "\n".join(long)
