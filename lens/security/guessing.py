"""Budgets for guessing a PIN or a join link, counted atomically in the limiter's storage.

A wrong PIN names no session, so a session cannot count the guesses made at it; every
wrong guess is a guess at every live PIN. Three counts, each a moving window whose every
hit is one atomic step in the storage (a Lua script in Redis, a lock in memory), taken
*before* the PIN is looked up, so concurrent requests cannot all slip under a limit:

- the site's budget: PIN look-ups on the whole site per PIN validity (LENS_PIN_GUESS_BUDGET
  per LENS_PIN_VALIDITY_MINUTES). A PIN lives at most that long and is used once, so no
  PIN ever meets more than this many guesses: the bound SECURITY.md computes. Spent, no PIN
  is looked up (a right one neither) until the window moves on; join links still work.
- an address's ceiling: look-ups from one address (IPv4, or an IPv6 /64) per PIN validity
  (LENS_PIN_ADDRESS_CEILING), so one address cannot spend the site's budget alone.
- an address's limit (LENS_PIN_RATE_LIMIT, "10 per minute;50 per hour"): past it a wrong
  PIN is answered "too many" (429), but a right PIN still joins: customers behind one
  carrier-grade NAT do not lock each other out. This limit slows nobody's guessing (a
  guess past it is still looked up); the ceiling and the budget do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute, parse_many
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

PIN = "pin"
LINK = "link"


@dataclass(frozen=True)
class Allowance:
    """What one attempt may do: be looked up at all, and how a wrong one is answered."""

    looked_up: bool
    refused_by: str | None = None  # "site" or "address" when not looked up
    over_address_limit: bool = False  # looked up, but a wrong one is answered 429
    retry_after: int = 0  # seconds, for a refusal


@dataclass(frozen=True)
class GuessSettings:
    """The numbers, from the settings (lens.config) and the PIN validity (Admin Center)."""

    address_limits: Sequence[RateLimitItem]
    ceiling: int
    budget: int | None  # None: no site budget (join links: 256-bit tokens)
    window_minutes: int

    @classmethod
    def parse(
        cls, address_limits: str, ceiling: int, budget: int | None, window_minutes: int
    ) -> GuessSettings:
        items = parse_many(address_limits) if address_limits.strip() else []
        return cls(items, ceiling, budget, max(1, window_minutes))


class GuessLimits:
    """Counts attempts at PINs and links in the limiter's storage (shared by every process)."""

    def __init__(self, storage: Storage, prefix: str = "") -> None:
        self.window = MovingWindowRateLimiter(storage)
        self.prefix = prefix

    def attempt(self, kind: str, address: str, settings: GuessSettings) -> Allowance:
        """Count one attempt from `address` (its limit key) before it is looked up."""
        per_window = RateLimitItemPerMinute
        ceiling = per_window(settings.ceiling, settings.window_minutes)
        if not self.window.hit(ceiling, self.prefix, kind, "ceiling", address):
            retry = self._retry(ceiling, kind, "ceiling", address)
            return Allowance(False, "address", retry_after=retry)
        if settings.budget is not None:
            budget = per_window(settings.budget, settings.window_minutes)
            if not self.window.hit(budget, self.prefix, kind, "site"):
                return Allowance(False, "site", retry_after=self._retry(budget, kind, "site"))
        over = False
        for item in settings.address_limits:  # every window counts the attempt
            if not self.window.hit(item, self.prefix, kind, "address", address):
                over = True
        return Allowance(True, over_address_limit=over)

    def _retry(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = self.window.get_window_stats(item, self.prefix, *identifiers)
        return max(1, int(stats.reset_time - time.time()) + 1)
