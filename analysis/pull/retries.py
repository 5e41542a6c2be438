"""The retry policy of the W&B pull: which errors are transient (HTTP 429, 5xx, timeouts,
connection errors), bounded exponential backoff with jitter, and the shared pause of every
thread when W&B rate-limits the pull (HTTP 429). See `analysis.pull.api` for how wandb-core's own
retries are bounded underneath it.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff of the pull (analysis.pull.api), and the budget it gives wandb-core.

    A failed operation (runs query, one run's history scan, the login check) is tried
    `attempts` times in all; before retry k (1-based) it waits
    min(cap_s, base_s * 2**(k-1)) times a random factor in [0.5, 1] (jitter).

    HTTP 429 is different: the service says "later", so the operation is retried for as long as
    `rate_limit_patience_s` of waiting allows (a reset of a few minutes still finishes), with the
    same backoff capped at `rate_cap_s`, and every thread of the pull pauses with it (`RetryStats`
    holds the shared pause): a rate limit slows the whole pull, not one thread. wandb-core (0.31)
    passes neither `RateLimit-Reset` nor `Retry-After` on to Python, so the wait cannot be read
    from the answer; wandb-core's own one retry honours Retry-After but not RateLimit-Reset
    (measured against tests/fake_wandb.py).
    """

    attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 30.0
    rate_limit_patience_s: float = 600.0
    rate_cap_s: float = 60.0
    timeout_s: float = 60.0  # Python's wait for one GraphQL answer from wandb-core
    scan_timeout_s: float = 300.0  # one run's whole history scan (wandb sends it with no timeout)
    core_retry_max: int = 1  # wandb-core's own retries per HTTP request (1 = the fewest it allows)

    def delay(self, retry: int, rng: random.Random | None = None, cap: float | None = None) -> float:
        r = (rng or random).uniform(0.5, 1.0)
        return min(self.cap_s if cap is None else cap, self.base_s * 2 ** (retry - 1)) * r


class RetryStats:
    """Thread-safe counters of retries and failed HTTP attempts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0
        self.failures: dict[str, int] = {}
        self.log: list[str] = []
        self.paused_until = 0.0  # monotonic time before which no thread sends (a rate limit)

    def pause_all(self, seconds: float) -> None:
        with self._lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def wait_for_pause(self, sleep: Callable[[float], None]) -> None:
        left = self.paused_until - time.monotonic()
        if left > 0:
            sleep(left)

    def failed(self, kind: str, attempts: int, what: str, retried: bool) -> None:
        with self._lock:
            self.failures[kind] = self.failures.get(kind, 0) + max(int(attempts), 1)
            if retried:
                self.retries += 1
            self.log.append(f"{what}: {kind} x{attempts}{' (retrying)' if retried else ''}")


_HTTP_RE = re.compile(r"HTTP (\d{3})")
_ATTEMPTS_RE = re.compile(r"after (\d+) attempt")
_TRANSIENT_RE = re.compile(
    r"timed? ?out|timeout|deadline exceeded|connection (refused|reset|aborted)|broken pipe|"
    r"\bEOF\b|temporarily unavailable|server closed|remote end closed|did not respond in time",
    re.IGNORECASE,
)


class EmptyHistory(ConnectionError):
    """A history came back empty although the listing names a last step: a failed request (retried)."""


def http_status(exc: BaseException) -> int | None:
    """The HTTP status wandb attached to an error, if any: `ApiErrorResponse.http_status` on the
    `WandbApiFailedError` of wandb-core's answer (wandb 0.31), or `response.status_code` of a
    requests error, looked up along the error's chain (wandb's `CommError.exc`, causes, contexts)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        response = getattr(e, "response", None)
        for attr in ("http_status", "status_code"):
            code = getattr(response, attr, None)
            if isinstance(code, int) and 100 <= code <= 599:
                return code
        stack.extend(x for x in (getattr(e, "exc", None), e.__cause__, e.__context__) if isinstance(x, BaseException))
    return None


def classify_error(exc: BaseException) -> tuple[bool, str, int]:
    """(retryable, kind, failed HTTP attempts) of an error from the W&B client.

    Retryable: HTTP 408, 429 and 5xx, timeouts (Python's wait for wandb-core included: "the service
    process is busy and did not respond in time"), connection errors. The status comes from the
    error's fields (`http_status`), from its message only when wandb attached none; wandb-core
    reports its own attempts ("giving up after N attempt(s) ... HTTP 429: ..."), which are counted.
    """
    msg = f"{type(exc).__name__}: {exc}"
    m = _ATTEMPTS_RE.search(msg)
    attempts = int(m.group(1)) if m else 1
    codes = _HTTP_RE.findall(msg)
    code = http_status(exc) or (int(codes[-1]) if codes else None)
    if code is not None:
        return (code in (408, 429) or 500 <= code <= 599), f"HTTP {code}", attempts
    if isinstance(exc, (TimeoutError, ConnectionError)) or _TRANSIENT_RE.search(msg):
        return True, "timeout/connection", attempts
    return False, type(exc).__name__, attempts


def call_with_retries(
    fn: Callable[[], Any],
    what: str,
    policy: RetryPolicy,
    stats: RetryStats,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Any:
    """fn(), retried on transient errors per `policy` (HTTP 429: for `rate_limit_patience_s`, all
    threads pausing together); counts into `stats`; re-raises the last error (or the first
    non-transient one)."""
    attempt = limited = 0
    waited_for_limits = 0.0
    while True:
        attempt += 1
        stats.wait_for_pause(sleep)
        try:
            return fn()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            retryable, kind, n = classify_error(exc)
            if kind == "HTTP 429":
                limited += 1
                delay = policy.delay(limited, rng, cap=policy.rate_cap_s)
                again = waited_for_limits + delay <= policy.rate_limit_patience_s
            else:
                delay = policy.delay(attempt - limited, rng)
                again = retryable and attempt - limited < policy.attempts
            if retryable or kind.startswith("HTTP"):
                stats.failed(kind, n, what, again)
            if not again:
                raise
            if kind == "HTTP 429":
                waited_for_limits += delay
                stats.pause_all(delay)
                continue
            sleep(delay)



def one_line(exc: BaseException) -> str:
    """An error as one line of at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."

