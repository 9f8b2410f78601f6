"""What a call plan needs from the driver's session: its settings, the session under analysis and its spending cap,
DDL parsing, and the coordinator, ledger and answer store the workers will use.

One :class:`SparkContextInfo` is made per registered session (:mod:`aiquery.spark.registry`); the builders of
ai_query and of the AI Functions ask it for a :class:`~aiquery.spark.plan.CallPlan` at analysis time.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiquery.config import Settings
from aiquery.coordinator.cap import (
    COST_SETTING,
    DEFAULT_CURRENCY,
    TOKENS_SETTING,
    CapSetting,
    parse_max_cost,
    parse_max_tokens,
)
from aiquery.coordinator.protocol import CoordinatorAddress
from aiquery.errors import ArgumentError, ConfigError
from aiquery.spark.analysed_session import AnalysedSession, analysed_session
from aiquery.spark.plan import CallPlan, plan_call
from aiquery.spark.versions import VARIANT, mentions_variant, require_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aiquery.coordinator.server import Coordinator

__all__ = [
    "BATCH_COLLECT_SETTING",
    "BATCH_RUN_SETTING",
    "ESTIMATE_FRACTION_SETTING",
    "ESTIMATE_RUN_SETTING",
    "SparkContextInfo",
    "parse_ddl_with",
]

CACHE_SETTING = "aiquery.cache.enabled"
ESTIMATE_RUN_SETTING = "aiquery.estimate.run"
"""Set by an estimate run (see :mod:`aiquery.jobs.estimate`) while its statements are analysed: its id."""
ESTIMATE_FRACTION_SETTING = "aiquery.estimate.fraction"
BATCH_COLLECT_SETTING = "aiquery.batch.collect"
"""Set by batch mode's collect pass while its statements are analysed: the run's id (see
:mod:`aiquery.engine.collection`)."""
BATCH_RUN_SETTING = "aiquery.batch.run"
"""Set by batch mode's run pass while its statements are analysed: the run's id."""


@dataclass(eq=False)
class SparkContextInfo:
    """What a call plan needs from the driver's session: DDL parsing, journal, coordinator, app id, parallelism."""

    spark: SparkSession
    settings: Settings
    journal: str | None
    coordinator: CoordinatorAddress | None = None
    store: str | None = None
    service: Coordinator | None = None
    """The coordinator itself (this is the driver): it keeps the spending cap."""
    app_id: str = field(init=False)
    parallelism: int = field(init=False)

    def __post_init__(self) -> None:
        self.app_id = self.spark.sparkContext.applicationId
        self.parallelism = max(1, self.spark.sparkContext.defaultParallelism)

    def analysed_session(self) -> AnalysedSession:
        """The session whose query is being analysed (the registering one outside an analysis)."""
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        return analysed_session(jvm, self.spark._jsparkSession)

    def session_time_zone(self) -> str:
        """The analysed session's time zone (``spark.sql.session.timeZone``), for struct literals with timestamps."""
        return str(self.analysed_session().conf.get("spark.sql.session.timeZone"))

    def spending_cap(self, session: AnalysedSession | None = None) -> CapSetting:
        """A session's cap (``aiquery.budget.max_cost``, ``aiquery.budget.max_tokens``); empty when unset.

        Args:
            session: the session; the one under analysis when None.

        Raises:
            ConfigError: a value is not a positive amount (optionally with its currency) or number of tokens.
        """
        session = session or self.analysed_session()
        cost, tokens = session.get(COST_SETTING), session.get(TOKENS_SETTING)
        try:
            max_cost, currency = parse_max_cost(cost) if cost not in (None, "") else (None, DEFAULT_CURRENCY)
            max_tokens = parse_max_tokens(tokens) if tokens not in (None, "") else None
        except ValueError as error:
            raise ConfigError(f"{error}; fix it with SET, or RESET it to remove the cap") from None
        return CapSetting(max_cost=max_cost, currency=currency, max_tokens=max_tokens)

    def apply_cap(self, plan: CallPlan, session: AnalysedSession) -> CallPlan:
        """Put ``session``'s cap in force on the coordinator (its own: no other session's cap changes, nor
        the application's) and check that ``plan``'s calls can be counted by every cap that counts them.

        Raises:
            ArgumentError: ``AI_QUERY_BUDGET_UNPRICED`` (a cost cap and an endpoint without a price in its
                currency: it would go uncapped) or ``AI_QUERY_BUDGET_NEEDS_LEDGER`` (a cap is kept on the usage
                ledger's records).
        """
        owner = session.owner
        setting = self.spending_cap(session)
        application = CapSetting()
        if self.service is not None:
            self.service.set_session_cap(owner, setting)
            application = self.service.application_cap()
        for cap, lift in ((setting, "RESET the session's cap"), (application, "run without --max-cost")):
            if cap:
                _check_cappable(plan, cap, lift, has_service=self.service is not None)
        if not setting and not application:
            return plan
        return dataclasses.replace(plan, capped=True, cap_owner=owner if setting else "")

    def parse_ddl(self, text: str) -> tuple[Any, str]:
        """Parse DDL with Spark's own parser."""
        return parse_ddl_with(self.spark, text)

    def plan(self, **arguments: Any) -> CallPlan:
        """A call plan for literal arguments given as Python values, under the analysed session's settings."""
        session = self.analysed_session()
        return_type = arguments.get("return_type")
        if isinstance(return_type, str) and mentions_variant(return_type):
            # On Spark 3.5 parsing fails, naming the Spark that has VARIANT. On 4.x the type parses, but a pandas
            # UDF cannot return it: refuse it now rather than fail in the workers after the requests are paid for.
            type_json, _ = self.parse_ddl(return_type)
            if _has_variant(type_json):
                raise ArgumentError(
                    "UNSUPPORTED_FEATURE.AI_QUERY_VARIANT",
                    f"ai_query cannot return VARIANT yet (returnType {return_type!r}); use returnType 'STRING' "
                    "and parse_json() on the result.",
                    sqlstate="0A000",
                )
        plan = plan_call(
            self.settings,
            parse_ddl=self.parse_ddl,
            journal=self.journal,
            coordinator=self.coordinator,
            store=self.store,
            cache=_enabled(session.get(CACHE_SETTING)),
            spark_app_id=self.app_id,
            # Configured budgets are per application; a worker cut off from the coordinator uses 1/N of them.
            budget_share=1.0 / self.parallelism,
            **arguments,
        )
        connect = session.connect
        plan = dataclasses.replace(
            plan,
            query_tag=session.query_tag,
            # The user id a Connect client declares (a client without one: the server's own requester).
            requester=(connect.user_id if connect is not None else "") or plan.requester,
            session_id=connect.session_id if connect is not None else None,
            batch_collect=session.get(BATCH_COLLECT_SETTING) or None,
        )
        batch_run = session.get(BATCH_RUN_SETTING)
        if batch_run:
            plan = dataclasses.replace(plan, site=dataclasses.replace(plan.site, batch_run=batch_run))
        run = session.get(ESTIMATE_RUN_SETTING)
        if run:
            fraction = float(session.get(ESTIMATE_FRACTION_SETTING) or 0.01)
            plan = dataclasses.replace(plan, sample=(str(run), fraction))
        return self.apply_cap(plan, session)


def _enabled(value: str | None) -> bool:
    """A switch such as ``aiquery.cache.enabled``: true when unset."""
    return value is None or value.strip().lower() not in ("false", "0", "off", "no")


def _check_cappable(plan: CallPlan, setting: CapSetting, lift: str, *, has_service: bool) -> None:
    """Refuse at analysis a call the cap ``setting`` could not count (``lift``: how to do without the cap)."""
    endpoint = plan.site.endpoint
    if plan.journal is None or not has_service:
        raise ArgumentError(
            "AI_QUERY_BUDGET_NEEDS_LEDGER",
            f"a spending cap ({setting.describe()}) is checked against the usage ledger's records, which are "
            f"off ([usage] enabled = false); turn the ledger on or {lift}.",
            sqlstate="0A000",
        )
    price = endpoint.price
    if setting.max_cost is not None and (price is None or price.currency != setting.currency):
        found = "no price" if price is None else f"prices in {price.currency}"
        raise ArgumentError(
            "AI_QUERY_BUDGET_UNPRICED",
            f"endpoint '{endpoint.name}' (model {endpoint.model!r}) has {found}, and a spending cap of "
            f"{setting.describe()} counts its requests: they could not be counted against it. Give "
            f"the endpoint a price in {setting.currency} (price = {{ input_per_million = ..., "
            f"output_per_million = ... }}) or {lift}.",
            sqlstate="42K09",
        )


def parse_ddl_with(spark: SparkSession, text: str) -> tuple[Any, str]:
    """(jsonValue, SQL spelling) of a DDL type string, or ArgumentError."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    try:
        data_type = jvm.org.apache.spark.sql.types.DataType.fromDDL(text)
    except Exception as exc:
        if mentions_variant(text):
            # Spark 3.5's parser knows no VARIANT; say which Spark does rather than "unsupported data type".
            require_spark(VARIANT, spark.version, used_by=f"the type {text!r}")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArgumentError(
            "INVALID_SCHEMA.PARSE_ERROR",
            f"the type {text!r} cannot be parsed as a Spark DDL type: {first[:300]}",
            sqlstate="42K07",
        ) from None
    return json.loads(data_type.json()), str(data_type.sql())


def _has_variant(type_json: Any) -> bool:
    if isinstance(type_json, dict):
        return any(
            _has_variant(value)
            for key, value in type_json.items()
            if key in ("type", "elementType", "valueType", "keyType", "fields")
        )
    if isinstance(type_json, list):
        return any(_has_variant(item) for item in type_json)
    return bool(type_json == "variant")
