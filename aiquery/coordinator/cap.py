"""Spending caps, kept by the coordinator: once one is reached, no new request it counts leaves anywhere.

A cap has an owner. ``SET aiquery.budget.max_cost = 20`` (or ``aiquery.budget.max_tokens``) caps the session that
set it: it counts that session's requests from the moment the builder first sees it (the next ``ai_query`` the
session analyses), and no other session, with or without a cap of its own, removes or resets it. ``aiquery run
--max-cost/--max-tokens`` caps the application: set on the coordinator directly, it counts every request, and the
job's SQL cannot ``RESET`` or raise it (a lower ``SET`` in the job adds a session cap: the stricter one stops
first). A session's new setting (``RESET`` then ``SET``, another amount, another currency) is a new cap counting
from then. :class:`~aiquery.coordinator.cap_book.CapBook` keeps them all; this module is one cap's account.

The coordinator checks the caps where every request already passes before it is sent: its begin record, in the
same sync that renews the workers' leases. So permission cannot pile up unused in a worker and overshoot later:

- each admitted begin *reserves*, in every cap that counts it, what a request has cost on average so far under
  that cap (nothing before the first one ends); its end replaces the reservation with what it really cost, as the
  worker reports it;
- a request whose end carries no usage report (timed out, cancelled in flight, a 2xx that cannot be read) may
  still be billed: providers bill generations that outlive the client. It counts at a pessimistic cost: its input
  tokens (estimated from its body) at the input price, plus its ``max_tokens``, else the largest output its
  endpoint has billed in this application, else the input estimate again, at the output price. The ledger's
  ``cost`` for it stays NULL: only the cap counts it;
- a begin is refused when what was spent, plus what is reserved, plus its own reservation would pass a cap that
  counts it. From then on that cap is *reached*: every later begin it counts is refused, until its owner sets a
  new one. Requests in flight finish and are recorded, so the spend ends at most the cap plus what those requests
  cost beyond their reservations;
- under a cost cap, a request without a price in the cap's currency is refused: an unpriced call is never
  silently uncapped (the builder refuses such calls at analysis time already; this covers calls planned before
  the cap was set).

Answers from the answer store cost nothing and are still served once a cap is reached. A request begun by a
worker that was lost counts at its pessimistic cost (it may have been billed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aiquery.errors import BudgetExceeded

__all__ = [
    "APPLICATION_SOURCE",
    "COST_SETTING",
    "DEFAULT_CURRENCY",
    "TOKENS_SETTING",
    "CapSetting",
    "SpendingCap",
    "cap_error",
    "parse_max_cost",
    "parse_max_tokens",
]

COST_SETTING = "aiquery.budget.max_cost"
TOKENS_SETTING = "aiquery.budget.max_tokens"
DEFAULT_CURRENCY = "USD"
APPLICATION_SOURCE = ("aiquery run --max-cost", "aiquery run --max-tokens")
"""How the application's cap is named in messages (a session's cap is named by its settings)."""


@dataclass(frozen=True, slots=True)
class CapSetting:
    """A cap on cost (in ``currency``), on tokens (input plus output), or both."""

    max_cost: float | None = None
    currency: str = DEFAULT_CURRENCY
    max_tokens: int | None = None

    def __bool__(self) -> bool:
        return self.max_cost is not None or self.max_tokens is not None

    def describe(self, sources: tuple[str, str] = (COST_SETTING, TOKENS_SETTING)) -> str:
        """E.g. ``20 USD (aiquery.budget.max_cost)``; both parts when both are set."""
        parts = []
        if self.max_cost is not None:
            parts.append(f"{self.max_cost:g} {self.currency} ({sources[0]})")
        if self.max_tokens is not None:
            parts.append(f"{self.max_tokens:,} tokens ({sources[1]})")
        return " and ".join(parts)


def parse_max_cost(value: Any, *, source: str = COST_SETTING) -> tuple[float, str]:
    """``20``, ``"20"`` or ``"20 DBU"`` as (amount, currency); the currency is USD unless named.

    Raises:
        ValueError: not a positive number, optionally followed by a currency code.
    """
    text = str(value).strip()
    amount_text, _, currency = text.partition(" ")
    currency = currency.strip().upper() or DEFAULT_CURRENCY
    try:
        amount = float(amount_text)
    except ValueError:
        amount = math.nan
    if not math.isfinite(amount) or amount <= 0 or not currency.isalpha():
        raise ValueError(
            f"{source} must be a positive amount, optionally followed by its currency (20, or '20 DBU'), "
            f"not {text[:60]!r}"
        )
    return amount, currency


def parse_max_tokens(value: Any, *, source: str = TOKENS_SETTING) -> int:
    """A positive whole number of tokens (``1000000`` or ``1_000_000``).

    Raises:
        ValueError: anything else.
    """
    text = str(value).strip().replace("_", "").replace(",", "")
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{source} must be a positive whole number of tokens, not {str(value)[:60]!r}")
    return int(text)


def cap_error(message: str, endpoint: str = "") -> BudgetExceeded:
    """The error of a row not sent because of the cap."""
    return BudgetExceeded(f"[{BudgetExceeded.error_class}] {message}", endpoint=endpoint, attempts=0)


class SpendingCap:
    """One cap's account: what the requests it counts spent since it was set, what those in flight reserve, and
    whether it is reached. Used on the coordinator's loop thread only.

    Args:
        setting: the cap.
        application: the application's cap (``aiquery run``), not a session's.
    """

    def __init__(self, setting: CapSetting, *, application: bool = False) -> None:
        self.setting = setting
        self.application = application
        self.spent_cost = 0.0
        self.spent_tokens = 0
        self.ended = 0
        """Requests whose spend was counted (their mean is what a new request reserves)."""
        self._reserved: dict[str, tuple[float, float]] = {}
        self._reserved_cost = 0.0
        self._reserved_tokens = 0.0
        self.reached: str | None = None
        """Why the cap is reached (the message every refused row carries), or None while requests may go."""
        self.refused = 0
        """Requests refused (each one a call not sent, or a retry not sent)."""
        self.admitted = 0

    def describe(self) -> str:
        """The cap and where it comes from, e.g. ``20 USD (aiquery.budget.max_cost)``."""
        if self.application:
            return self.setting.describe(APPLICATION_SOURCE)
        return self.setting.describe()

    def counts(self, request_id: str) -> bool:
        """Whether this cap admitted ``request_id`` and has not counted its spend yet."""
        return request_id in self._reserved

    # ---- admission -------------------------------------------------------------------------------------------
    def refusal(self, currency: str | None) -> str | None:
        """Why a request priced in ``currency`` may not go now (the cap may become reached), or None if it may."""
        setting = self.setting
        if self.reached is not None:
            return self.reached
        if setting.max_cost is not None and currency != setting.currency:
            return (
                f"not sent: the request has no price in {setting.currency}, and the spending cap of "
                f"{self.describe()} counts it; give its endpoint a price in {setting.currency}, or "
                f"{self._lift()}."
            )
        cost_each, tokens_each = self._mean()
        if self._passes(cost_each, tokens_each):
            self.reached = self._reached_message()
            return self.reached
        return None

    def reserve(self, request_id: str) -> None:
        """Admit a request: it reserves what a request has cost on average so far."""
        cost_each, tokens_each = self._mean()
        self._reserved[request_id] = (cost_each, tokens_each)
        self._reserved_cost += cost_each
        self._reserved_tokens += tokens_each
        self.admitted += 1

    def _mean(self) -> tuple[float, float]:
        if not self.ended:
            return 0.0, 0.0
        return self.spent_cost / self.ended, self.spent_tokens / self.ended

    def _passes(self, cost_each: float, tokens_each: float) -> bool:
        setting = self.setting
        if setting.max_cost is not None:
            spent = self.spent_cost
            if spent >= setting.max_cost or spent + self._reserved_cost + cost_each > setting.max_cost:
                return True
        if setting.max_tokens is not None:
            spent_tokens = self.spent_tokens
            if (
                spent_tokens >= setting.max_tokens
                or spent_tokens + self._reserved_tokens + tokens_each > setting.max_tokens
            ):
                return True
        return False

    # ---- what requests spent ---------------------------------------------------------------------------------
    def settle(self, request_id: str, cost: float, tokens: int, currency: str | None) -> None:
        """A request this cap admitted ended: its reservation gives way to what it cost (``currency``: what
        ``cost`` is in, None when unpriced). Requests it did not admit are not its to count."""
        if self._release(request_id) is None:
            return
        if currency == self.setting.currency:
            self.spent_cost += cost
        self.spent_tokens += tokens
        self.ended += 1

    def settle_unknown(self, request_id: str, cost: float, tokens: int) -> None:
        """A request this cap admitted ended without a usage report, or was lost: it counts at its pessimistic
        ``cost`` and ``tokens`` (and at least at what it reserved)."""
        held = self._release(request_id)
        if held is None:
            return
        self.spent_cost += max(cost, held[0])
        self.spent_tokens += max(tokens, math.ceil(held[1]))
        self.ended += 1

    def withdraw(self, request_id: str) -> None:
        """A request admitted and then not sent: its reservation goes, nothing is spent."""
        self._release(request_id)

    def _release(self, request_id: str) -> tuple[float, float] | None:
        held = self._reserved.pop(request_id, None)
        if held is not None:
            self._reserved_cost -= held[0]
            self._reserved_tokens -= held[1]
        return held

    # ---- messages --------------------------------------------------------------------------------------------
    def _lift(self) -> str:
        if self.application:
            return "run the job again with a higher --max-cost/--max-tokens"
        return "raise the session's cap (SET) or remove it (RESET)"

    def _reached_message(self) -> str:
        setting = self.setting
        spent = []
        if setting.max_cost is not None:
            spent.append(f"{self.spent_cost:.4g} {setting.currency}")
        if setting.max_tokens is not None:
            spent.append(f"{self.spent_tokens:,} tokens")
        whose = "the application's" if self.application else "this session's"
        return (
            f"not sent: {whose} spending cap of {self.describe()} is reached ({' and '.join(spent)} spent since it "
            f"was set, requests that ended without a usage report counted at a pessimistic cost; "
            f"{len(self._reserved)} request(s) still in flight). To finish, {self._lift()} and run again: rows "
            "already answered come from the answer store without paying again."
        )

    def snapshot(self) -> dict[str, Any]:
        """Where the cap stands (for summaries and tests)."""
        return {
            "cap": self.describe(),
            "application": self.application,
            "max_cost": self.setting.max_cost,
            "currency": self.setting.currency,
            "max_tokens": self.setting.max_tokens,
            "spent_cost": self.spent_cost,
            "spent_tokens": self.spent_tokens,
            "in_flight": len(self._reserved),
            "reached": self.reached is not None,
            "refused": self.refused,
            "admitted": self.admitted,
        }
