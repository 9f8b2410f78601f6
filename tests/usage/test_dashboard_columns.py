"""Which columns the dashboard's snapshot keeps: every one a query names, all of them for ``SELECT *``."""

from __future__ import annotations

import pytest

from aiquery.usage.dashboard import DashboardQuery, load_queries, named_columns
from aiquery.usage.schema import USAGE_COLUMNS


def query(sql: str) -> DashboardQuery:
    return DashboardQuery("custom", "panel", sql)


TABLE = ["request_id", "endpoint_name", "cost", "token_details", "cache_hit", "event_time"]


def test_only_the_named_columns_are_kept_in_table_order() -> None:
    sql = "-- cost is not read here\nSELECT endpoint_name, 100.0 * count(*) FROM t WHERE NOT CACHE_HIT GROUP BY 1"
    assert named_columns([query(sql)], TABLE) == ["endpoint_name", "cache_hit"]


def test_a_field_of_a_struct_keeps_its_column() -> None:
    sql = "SELECT sum(token_details.cache_read_input_tokens) FROM t"
    assert named_columns([query(sql)], TABLE) == ["token_details"]


@pytest.mark.parametrize("sql", ["SELECT * FROM t", "SELECT DISTINCT * FROM t", "SELECT u.* FROM t AS u"])
def test_select_star_keeps_every_column(sql: str) -> None:
    assert named_columns([query(sql)], TABLE) == TABLE


def test_the_shipped_queries_leave_out_the_columns_no_panel_reads() -> None:
    columns = [column.name for column in USAGE_COLUMNS]
    kept = named_columns(load_queries(), columns)
    assert {"endpoint_name", "cost", "avoided_cost", "currency", "request_tags", "token_details"} <= set(kept)
    assert "request_id" not in kept and "url" not in kept
