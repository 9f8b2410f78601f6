"""What the demo leaves behind: the Delta tables' locations and sizes, a sample of results, a manifest file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from aiquery.jobs.statements import format_rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["TableOutput", "describe_table", "sample_text", "write_manifest"]

SAMPLE_SQL = """
SELECT s.title, g.genre, g.confidence, s.summary
FROM demo.summaries s JOIN demo.genres g ON s.id = g.id
WHERE s.kind = 'synopsis'
ORDER BY s.id
LIMIT {rows}
"""


@dataclass(frozen=True)
class TableOutput:
    """A Delta table the demo wrote (or read): its name, where its files are, and its size."""

    name: str
    location: str
    rows: int


def describe_table(spark: SparkSession, name: str) -> TableOutput:
    """Name, local location and row count of a Delta table registered in ``spark``."""
    detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
    location = str(detail["location"]) if detail is not None else ""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        location = unquote(parsed.path)
    return TableOutput(name=name, location=location, rows=spark.table(name).count())


def sample_text(spark: SparkSession, rows: int = 5) -> str:
    """A few books with their genre and summary, as a small text table."""
    frame = spark.sql(SAMPLE_SQL.format(rows=int(rows)))
    text = format_rows(frame.columns, frame.collect(), rows)
    first = spark.sql("SELECT embedding FROM demo.embeddings WHERE embedding IS NOT NULL LIMIT 1").first()
    if first is not None:
        vector = first["embedding"]
        head = ", ".join(f"{value:.4f}" for value in vector[:4])
        text += f"\n  demo.embeddings: vectors of {len(vector)} floats, e.g. [{head}, ...]"
    return text


def write_manifest(path: Path, **content: Any) -> None:
    """Write what the demo produced as JSON, for scripts (``TableOutput`` values become objects)."""

    def plain(value: Any) -> Any:
        if isinstance(value, TableOutput):
            return asdict(value)
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    path.write_text(json.dumps(plain(content), indent=2) + "\n", encoding="utf-8")
