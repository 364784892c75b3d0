"""When the gateway client tries again, and how long it waits: the retry policy, as values.

What is retried (``deoss.client.gateway`` applies it):

* a request that never reached the gateway (connection refused, connect timeout), and 429:
  always (after at least the ``Retry-After`` the gateway sent);
* a connection reset or dropped before the answer, 502, 503 and 504: only requests that are
  safe to repeat (GET, HEAD) and uploads, which look for the deal a lost try may have declared
  (see ``GatewayClient.put_object``); a bucket change or a DELETE may have been done;
* never a refusal (4xx other than 429): sending the same request again gets the same answer.

Between tries the client waits an exponential backoff with jitter (``backoff_s``); a call gives
up once its ``deadline_s`` has passed, with the last error. No I/O here.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass

__all__ = ["NO_RETRY", "RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    """How one call of the gateway client rides out a gateway that is restarting or busy."""

    # Give up trying again (and waiting for a deal) this long after the call started.
    deadline_s: float = 300.0
    # At most this many tries after the first; None: as many as the deadline allows.
    max_retries: int | None = None
    # The backoff doubles from first_backoff_s up to max_backoff_s.
    first_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    # A deal is polled first after deal_poll_first_s, the interval doubling up to deal_poll_max_s.
    deal_poll_first_s: float = 0.05
    deal_poll_max_s: float = 0.5

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """The pause before try ``retry + 1``: half to all of the doubled backoff, at random,
        so that clients cut off together do not come back together."""
        ceiling = min(self.max_backoff_s, self.first_backoff_s * 2.0 ** min(retry, 32))
        return ceiling * (0.5 + rng.random() / 2)

    def deal_poll_s(self, poll: int) -> float:
        return min(self.deal_poll_max_s, self.deal_poll_first_s * 2.0 ** min(poll, 32))

    def may_retry(self, retries: int) -> bool:
        return self.max_retries is None or retries < self.max_retries


# For tests of the gateway itself: every failure is reported at once (deals are still polled).
NO_RETRY = RetryPolicy(max_retries=0)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date; ``now_s`` is
    the wall clock), or None when absent or malformed."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)
