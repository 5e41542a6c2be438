"""The house rules that carry meaning, checked on the sources: the import arrows the README draws
(mae_gap <- analysis.wandb_io <- agent, analysis), W&B's private parts in one compat module, the
science package without wandb, and no re-export facades. (A file's size is a signal to look at it,
not a rule.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("mae_gap", "agent", "analysis")
SHARED = "analysis.wandb_io"  # the W&B layer agent and analysis both stand on


def _sources(*folders: str):
    for folder in folders or PRODUCT:
        yield from sorted((REPO / folder).rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the file, at any depth (lazy imports inside functions too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.ImportFrom):  # relative: resolve against the file's package
            base = _module(path).split(".")
            base = base[: len(base) - node.level + (path.name == "__init__.py")]
            out.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
    return out


def _top(module: str, depth: int = 1) -> str:
    return ".".join(module.split(".")[:depth])


def test_the_import_arrows_are_the_readmes():
    """mae_gap imports neither agent nor analysis; agent imports analysis only through the shared W&B
    layer; analysis imports no agent; the shared layer imports nothing of agent or of the rest of
    analysis (so that agent can stand on it without the statistics, figures or pandas)."""
    wrong = []
    for path in _sources():
        me = _module(path)
        for line, mod in _imports(path):
            where = f"{path.relative_to(REPO)}:{line} imports {mod}"
            if me.startswith("mae_gap") and _top(mod) in ("agent", "analysis"):
                wrong.append(where)
            elif me.startswith("agent") and _top(mod) == "analysis" and not mod.startswith(SHARED):
                wrong.append(where)
            elif me.startswith("analysis") and _top(mod) == "agent":
                wrong.append(where)
            elif me.startswith(SHARED) and _top(mod) == "analysis" and not mod.startswith(SHARED):
                wrong.append(where)
    assert not wrong, "\n".join(wrong)


def test_private_wandb_parts_live_in_the_compat_module_only():
    private = re.compile(r"_singleton|\._runs|x_graphql|sdk.lib|sdk.launch|wandb_internal_pb2")
    compat = REPO / "analysis" / "wandb_io" / "compat.py"
    assert compat.is_file()
    hits = [f"{p.relative_to(REPO)}:{i}" for p in _sources() if p != compat
            for i, line in enumerate(p.read_text().splitlines(), 1) if private.search(line)]
    assert not hits, hits


def test_mae_gap_imports_no_wandb():
    hits = [f"{p.relative_to(REPO)}:{line}" for p in _sources("mae_gap") for line, mod in _imports(p)
            if _top(mod) == "wandb"]
    assert not hits, hits


def test_no_reexport_facades():
    """No module `__getattr__`, no `__all__` naming what the module does not define, no import kept
    only to be re-exported: a name is imported from its home."""
    wrong = []
    for path in _sources():
        text = path.read_text()
        tree = ast.parse(text)
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
        defined |= {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno} module __getattr__")
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                try:
                    names = ast.literal_eval(node.value)
                except ValueError:
                    wrong.append(f"{path.relative_to(REPO)}:{node.lineno} __all__ is computed, not a list of names")
                    continue
                wrong += [f"{path.relative_to(REPO)}: __all__ lists {n}, defined elsewhere" for n in names if n not in defined]
        wrong += [f"{path.relative_to(REPO)}:{i} {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
                  if re.search(r"noqa: F401.*re-?export", line)]
    assert not wrong, "\n".join(wrong)
