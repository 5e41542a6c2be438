"""The two formatters every table and log line of the project uses."""

from __future__ import annotations

import math
from typing import Any


def num(x: Any, spec: str = ".4g", unit: str = "") -> str:
    """`x` formatted with `spec` (and `unit`), or "n/a" when it is missing or not finite."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{format(x, spec)}{unit}"


def plural(count: int, one: str, many: str | None = None) -> str:
    """"1 run", "2 runs"; `many` for irregular plurals ("1 was", "2 were")."""
    return f"{count} {one if count == 1 else (many or one + 's')}"
