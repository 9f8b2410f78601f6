"""Every spending cap of the application, and the requests each counts (see :mod:`.cap` for what a cap is).

The book holds the application's cap (``aiquery run --max-cost``) and one cap per session that set
``aiquery.budget.*``, keyed by the session's id (the builder's *cap owner*). A begin names its session's cap owner
(empty when its session has none); the application's cap counts every begin, a session's cap the begins that name
it. A request goes only if every cap that counts it lets it go; each of them then holds its reservation until the
worker reports what the request spent.

A begin also carries its *claim* (:class:`~aiquery.engine.governor.CapClaim`: endpoint, input-token estimate,
``max_tokens``, prices): what it would cost should it end without a usage report. The book remembers, per
endpoint, the largest output it has seen billed, which stands in for a missing ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiquery.coordinator.cap import CapSetting, SpendingCap

__all__ = ["CapBook"]

_NO_CLAIM: tuple[str, int, int, float, float] = ("", 0, 0, 0.0, 0.0)


class CapBook:
    """The application's spending caps. Used on the coordinator's loop thread only."""

    def __init__(self) -> None:
        self.application: SpendingCap | None = None
        self.sessions: dict[str, SpendingCap] = {}
        self.generation = 0
        """Increases with every change of a cap (workers see it in sync replies)."""
        self._held: dict[str, tuple[tuple[SpendingCap, ...], tuple[Any, ...], str | None]] = {}
        """Requests admitted and not settled yet: the caps counting them, their claim, their currency."""
        self._largest_output: dict[str, int] = {}

    def __bool__(self) -> bool:
        return self.application is not None or bool(self.sessions)

    # ---- setting caps ----------------------------------------------------------------------------------------
    def set_application(self, setting: CapSetting) -> bool:
        """Cap every request from now on (an empty setting removes the cap); whether the cap changed."""
        current = self.application
        if (current.setting if current is not None else CapSetting()) == setting:
            return False
        self.application = SpendingCap(setting, application=True) if setting else None
        self._changed()
        return True

    def set_session(self, owner: str, setting: CapSetting) -> bool:
        """Cap the requests of the session ``owner`` from now on (an empty setting removes its cap); whether its cap
        changed. Other sessions' caps and the application's are left as they are."""
        current = self.sessions.get(owner)
        if (current.setting if current is not None else CapSetting()) == setting:
            return False
        if setting:
            self.sessions[owner] = SpendingCap(setting)
        else:
            del self.sessions[owner]
        self._changed()
        return True

    def _changed(self) -> None:
        self.generation += 1
        alive = {id(cap) for cap in self._caps()}
        # Requests counted only by caps that are gone have no one left to count them.
        self._held = {
            request_id: held for request_id, held in self._held.items() if any(id(cap) in alive for cap in held[0])
        }

    def _caps(self) -> list[SpendingCap]:
        caps = list(self.sessions.values())
        if self.application is not None:
            caps.append(self.application)
        return caps

    # ---- admission -------------------------------------------------------------------------------------------
    def admit(
        self, request_ids: Sequence[str], currencies: Any, owners: Any, claims: Any
    ) -> list[tuple[int, str]]:
        """Admit the begins of a sync in order; those refused, by index, with why.

        Args:
            request_ids: the begun requests.
            currencies: the currency each is priced in (None: no price), or one for all of them.
            owners: the cap owner each names (``""``: its session has no cap), or one for all of them.
            claims: one claim per begin (see :meth:`~aiquery.engine.governor.CapClaim.wire`), or None.
        """
        refused: list[tuple[int, str]] = []
        for index, request_id in enumerate(request_ids):
            currency = _item(currencies, index)
            counting = self._counting(_item(owners, index) or "")
            message = None
            for cap in counting:
                message = cap.refusal(currency)
                if message is not None:
                    cap.refused += 1
                    break
            if message is not None:
                refused.append((index, message))
                continue
            for cap in counting:
                cap.reserve(request_id)
            if counting:
                claim = claims[index] if isinstance(claims, list) else None
                self._held[request_id] = (counting, tuple(claim) if claim else _NO_CLAIM, currency)
        return refused

    def _counting(self, owner: str) -> tuple[SpendingCap, ...]:
        session = self.sessions.get(owner) if owner else None
        application = self.application
        if session is None:
            return (application,) if application is not None else ()
        return (session, application) if application is not None else (session,)

    # ---- what requests spent ---------------------------------------------------------------------------------
    def spent(self, report: Mapping[str, Any]) -> None:
        """What ended requests spent, as a worker reports it: ``{request_id: [currency, cost, tokens,
        output_tokens]}``, or ``{request_id: 0}`` for a request that ended without a usage report."""
        for request_id, entry in report.items():
            held = self._held.pop(request_id, None)
            if held is None:
                continue  # admitted by no cap in force (begun before it was set, or its caps are gone)
            caps, claim, _currency = held
            if not entry:
                cost, tokens = self._pessimistic(claim)
                for cap in caps:
                    cap.settle_unknown(request_id, cost, tokens)
                continue
            spent_currency, cost, tokens, output_tokens = entry
            endpoint = claim[0]
            if endpoint and int(output_tokens) > self._largest_output.get(endpoint, 0):
                self._largest_output[endpoint] = int(output_tokens)
            for cap in caps:
                cap.settle(request_id, float(cost), int(tokens), spent_currency or None)

    def withdraw(self, request_ids: Sequence[str]) -> None:
        """Requests admitted and then not sent: nothing spent."""
        for request_id in request_ids:
            held = self._held.pop(request_id, None)
            if held is not None:
                for cap in held[0]:
                    cap.withdraw(request_id)

    def lost(self, request_ids: Sequence[str]) -> None:
        """Requests closed as lost (their worker is gone): they count at their pessimistic cost."""
        self.spent(dict.fromkeys(request_ids, 0))

    def _pessimistic(self, claim: tuple[Any, ...]) -> tuple[float, int]:
        """What a request without a usage report counts as: (cost in its price's currency, tokens)."""
        endpoint, input_tokens, output_limit, input_price, output_price = claim
        output = int(output_limit) or self._largest_output.get(endpoint, 0) or int(input_tokens)
        cost = (int(input_tokens) * float(input_price) + output * float(output_price)) / 1_000_000
        return cost, int(input_tokens) + output

    # ---- reading ---------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any] | None:
        """Where the caps stand, as one cap's snapshot: a reached one first (the application's before a
        session's), else the application's, else the latest session's; None without a cap."""
        caps = self._caps()
        if not caps:
            return None
        reached = [cap for cap in caps if cap.reached is not None]
        chosen = reached[-1] if reached else caps[-1]
        return chosen.snapshot()


def _item(values: Any, index: int) -> Any:
    """One begin's value from a per-begin list, or the one value all share."""
    return values[index] if isinstance(values, list) else values
