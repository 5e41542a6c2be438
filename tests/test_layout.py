"""The house rules (issue 12), checked: one concept per file is kept by keeping files and
functions small, and W&B's private parts stay in one compat module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("mae_gap", "agent", "analysis")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 80


def _sources():
    for folder in PRODUCT:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_no_product_file_or_function_is_too_long():
    too_long = []
    for path in _sources():
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, "\n".join(too_long)


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
