"""The house rules that carry meaning, checked: W&B's private parts stay in one compat module and
the science package imports no wandb. (A file's size is a signal to look at it, not a rule.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("mae_gap", "agent", "analysis")


def _sources():
    for folder in PRODUCT:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_private_wandb_parts_live_in_the_compat_module_only():
    private = re.compile(r"_singleton|\._runs|x_graphql|sdk.lib|sdk.launch|wandb_internal_pb2")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in _sources() if p.name != "wandb_compat.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if private.search(line)]
    assert not hits, hits


def test_mae_gap_imports_no_wandb():
    hits = []
    for path in sorted((REPO / "mae_gap").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            hits += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "wandb"]
    assert not hits, hits
