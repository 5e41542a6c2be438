"""`python -m mae_gap.bench`: fixed_cost is imported first, so that a fixed-cost child stamps the
moment its interpreter is ready before anything heavy (torch, Lightning) loads."""

import sys

from . import fixed_cost  # noqa: F401  (first: the import-time stamp)
from .cli import main

if __name__ == "__main__":
    sys.exit(main())
