"""The application's spending cap, kept by the coordinator: once reached, no new request leaves anywhere.

A cap is set on the driver (``SET aiquery.budget.max_cost = 20``, ``aiquery.budget.max_tokens``, or
``aiquery run --max-cost``) and counts what the application spends from that moment; a new setting replaces it.
The coordinator checks it where every request already passes before it is sent: its begin record, in the same
sync that renews the workers' leases. So permission cannot pile up unused in a worker and overshoot later:

- each admitted begin *reserves* what a request has cost on average so far under the cap (nothing before the
  first one ends); its end replaces the reservation with what it really cost, as the worker reports it;
- a begin is refused when what was spent, plus what is reserved, plus its own reservation would pass the cap.
  From then on the cap is *reached*: every later begin is refused, until a new cap is set. Requests in flight
  finish and are recorded, so the spend ends at most the cap plus what those requests cost beyond their
  reservations;
- under a cost cap, a request without a price in the cap's currency is refused: an unpriced call is never
  silently uncapped (the builder refuses such calls at analysis time already; this covers calls planned before
  the cap was set).

Answers from the answer store cost nothing and are still served once the cap is reached. A request begun by a
worker that was lost keeps its reservation as spent (it may have been billed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiquery.errors import BudgetExceeded

__all__ = [
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


@dataclass(frozen=True, slots=True)
class CapSetting:
    """A cap on cost (in ``currency``), on tokens (input plus output), or both."""

    max_cost: float | None = None
    currency: str = DEFAULT_CURRENCY
    max_tokens: int | None = None

    def __bool__(self) -> bool:
        return self.max_cost is not None or self.max_tokens is not None

    def describe(self) -> str:
        """E.g. ``20 USD (aiquery.budget.max_cost)``; both parts when both are set."""
        parts = []
        if self.max_cost is not None:
            parts.append(f"{self.max_cost:g} {self.currency} ({COST_SETTING})")
        if self.max_tokens is not None:
            parts.append(f"{self.max_tokens:,} tokens ({TOKENS_SETTING})")
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
    """What the application spent since its cap was set, what its requests in flight reserve, and whether the cap
    is reached. Used on the coordinator's loop thread only.

    Args:
        setting: the cap.
        generation: increases with every new setting (workers compare it).
    """

    def __init__(self, setting: CapSetting, generation: int = 1) -> None:
        self.setting = setting
        self.generation = generation
        self.spent_cost = 0.0
        self.spent_tokens = 0
        self.ended = 0
        """Requests whose spend was reported (their mean is what a new request reserves)."""
        self._reserved: dict[str, tuple[float, float]] = {}
        self._reserved_cost = 0.0
        self._reserved_tokens = 0.0
        self.reached: str | None = None
        """Why the cap is reached (the message every refused row carries), or None while requests may go."""
        self.refused = 0
        """Requests refused (each one a call not sent, or a retry not sent)."""
        self.admitted = 0

    # ---- what workers report ---------------------------------------------------------------------------------
    def spend(self, report: Mapping[str, Sequence[float]]) -> None:
        """Spend reported by a worker: ``{currency: [cost, tokens, requests]}`` (``""`` for unpriced requests)."""
        for currency, (cost, tokens, requests) in report.items():
            if currency == self.setting.currency:
                self.spent_cost += float(cost)
            self.spent_tokens += int(tokens)
            self.ended += int(requests)

    def release(self, request_ids: Sequence[str]) -> None:
        """Requests ended or withdrawn: their reservations go (their real spend comes with :meth:`spend`)."""
        reserved = self._reserved
        if not reserved:
            return
        for request_id in request_ids:
            held = reserved.pop(request_id, None)
            if held is not None:
                self._reserved_cost -= held[0]
                self._reserved_tokens -= held[1]

    def lost(self, request_ids: Sequence[str]) -> None:
        """Requests closed as lost: what they reserved counts as spent (they may have been billed)."""
        for request_id in request_ids:
            held = self._reserved.pop(request_id, None)
            if held is not None:
                self._reserved_cost -= held[0]
                self._reserved_tokens -= held[1]
                self.spent_cost += held[0]
                self.spent_tokens += int(held[1])

    # ---- admission -------------------------------------------------------------------------------------------
    def admit(self, request_ids: Sequence[str], currencies: Any) -> list[int]:
        """Admit the begins of a sync in order; the indices of those refused.

        Args:
            request_ids: the begun requests.
            currencies: the currency each is priced in (None: no price), or one for all of them.
        """
        refused: list[int] = []
        setting = self.setting
        cost_each = self.spent_cost / self.ended if self.ended else 0.0
        tokens_each = self.spent_tokens / self.ended if self.ended else 0.0
        for index, request_id in enumerate(request_ids):
            currency = currencies[index] if isinstance(currencies, list) else currencies
            if self.reached is not None or (setting.max_cost is not None and currency != setting.currency):
                refused.append(index)
                continue
            if self._passes(cost_each, tokens_each):
                self.reached = self._reached_message()
                refused.append(index)
                continue
            self._reserved[request_id] = (cost_each, tokens_each)
            self._reserved_cost += cost_each
            self._reserved_tokens += tokens_each
            self.admitted += 1
        self.refused += len(refused)
        return refused

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

    def refusal(self, currency: str | None) -> str:
        """The message of a refused request priced in ``currency``."""
        if self.reached is not None:
            return self.reached
        return (
            f"not sent: the request has no price in {self.setting.currency}, and the application has a spending cap "
            f"of {self.setting.describe()}; give its endpoint a price in {self.setting.currency} or unset the cap."
        )

    def _reached_message(self) -> str:
        setting = self.setting
        spent = []
        if setting.max_cost is not None:
            spent.append(f"{self.spent_cost:.4g} {setting.currency}")
        if setting.max_tokens is not None:
            spent.append(f"{self.spent_tokens:,} tokens")
        return (
            f"not sent: the application's spending cap of {setting.describe()} is reached ({' and '.join(spent)} "
            f"spent since it was set, {len(self._reserved)} request(s) still in flight). Raise or unset the cap and "
            "run again: rows already answered come from the answer store without paying again."
        )

    def snapshot(self) -> dict[str, Any]:
        """Where the cap stands (for summaries and tests)."""
        return {
            "cap": self.setting.describe(),
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
