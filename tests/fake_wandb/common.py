"""Small shared pieces of the fake W&B backend (test infrastructure, standard library only).

Ids, timestamps, base64 storage ids, the wire form of parameter values, the GraphQL error the
operations raise, and the record of one received request.
"""

from __future__ import annotations

import base64
import random
import string
import time
from dataclasses import dataclass
from typing import Any

_ID_ALPHABET = string.ascii_lowercase + string.digits
_EPOCH = 1_700_000_000.0  # fixed "creation" clock base: deterministic createdAt


def _new_id(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(n))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


def _wire(value: Any) -> Any:
    """A parameter value as the server sends it to an agent: whole-number floats as ints."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class _GraphQLError(Exception):
    """An error answer to one GraphQL operation (``errors: [{message}]``), with its HTTP status."""

    def __init__(self, message: str, status: int = 200):
        super().__init__(message)
        self.status = status


@dataclass
class FakeRequest:
    """One HTTP request the fake received."""

    op: str  # GraphQL operation name, or "METHOD /path" for other requests
    variables: dict[str, Any]
    status: int  # HTTP status the fake answered with
    path: str
    query: str = ""
    t: float = 0.0
