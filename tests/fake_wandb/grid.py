"""Grid sweeps, expanded by W&B's own sweep engine, the ``sweeps`` package (test infrastructure).

The rest of the fake is standard library only; this module imports ``sweeps`` (the engine W&B's
server and ``wandb.controller`` run, a test dependency here) when a grid is first expanded, so
the points and their order are W&B's by construction (sweeps/grid_search.py):

* ``grid_points``: every point in W&B's order (parameter names sorted, values in listed order,
  the last name varying fastest; constants part of every point; ``int_uniform`` min/max and
  ``q_uniform`` expanded to their ranges, ``sweeps.grid_search.grid_search_next_runs``).
* ``next_grid_point``: what the service hands the next asking agent: ``sweeps.next_run(config,
  runs)`` with the runs the sweep already has *with their config*. The engine skips the points
  those runs' configs hold (``grid_search_next_runs``, compared by ``sweeps.grid_search.yaml_hash``,
  in which a whole-number float equals its int) and suggests the first point
  left, or None when the grid is used up. A handed-out run whose config the service has not
  heard of yet is left out of ``runs`` by the caller, which is how two agents asking at once can
  be handed the same point (see ``FakeWandb``'s ``run_reported_from``).

Points are plain ``{name: value}`` (the engine's ``{name: {"value": v}}`` unwrapped), values as
written in the sweep config (``-10.0`` stays a float here; the wire form is ``common._wire``).
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any


def _engine() -> Any:
    """The ``sweeps`` package, imported on first use (its import warns about pydantic v2 config
    keys and class-based ``config``, which is the engine's business, not the tests')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import sweeps
    return sweeps


def _engine_config(sweep_config: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy of the sweep config for the engine (``method`` defaults to grid, as the
    fake's sweeps do)."""
    config = copy.deepcopy(dict(sweep_config))
    config.setdefault("method", "grid")
    return config


def _unwrap(run: Any) -> dict[str, Any]:
    """An engine suggestion's config, ``{name: {"value": v}}``, as ``{name: v}``."""
    return {name: spec["value"] for name, spec in run.config.items()}


def _engine_run(sweeps: Any, i: int, config: Mapping[str, Any]) -> Any:
    """A run the sweep has, as the engine reads runs (sweeps/run.py ``SweepRun``): its config in
    the server's ``{name: {"value": v}}`` form."""
    wrapped = {
        k: dict(v) if isinstance(v, Mapping) and "value" in v else {"value": v}
        for k, v in config.items()
    }
    return sweeps.SweepRun(name=f"run{i}", state=sweeps.RunState.finished, config=wrapped)


def grid_points(sweep_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All points of a ``method: grid`` sweep, in W&B's order (each ``{name: value}``).

    The engine's suggestions for a sweep without runs, asked for all at once:
    ``grid_search_next_runs`` stops at the first ``None`` (the grid used up), so ``n`` is only an
    upper bound. Raises ValueError (from the engine) for a config grid search cannot run.
    """
    config = _engine_config(sweep_config)
    if not config.get("parameters"):
        return [{}]  # nothing to vary: one point (the engine refuses such a config)
    sweeps = _engine()
    return [_unwrap(r) for r in sweeps.next_runs(config, [], n=sys.maxsize) if r is not None]


def next_grid_point(
    sweep_config: Mapping[str, Any], configs: Iterable[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The point the service hands out next: the first one in W&B's order that none of
    ``configs`` (the plain configs of the runs the sweep has with their config) holds; None when
    every point is taken."""
    config = _engine_config(sweep_config)
    if not config.get("parameters"):
        return None if any(True for _ in configs) else {}
    sweeps = _engine()
    runs = [_engine_run(sweeps, i, c) for i, c in enumerate(configs)]
    nxt = sweeps.next_run(config, runs)
    return None if nxt is None else _unwrap(nxt)
