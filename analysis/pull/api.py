"""Every run of a W&B sweep and its per-epoch history, through `wandb.Api()` (SPEC section 8.1).

    result = pull_sweep("entity/project/sweep_id", out_dir)   # cached under out_dir/cache/<id>/

One `runs` query with the sweep filter (`lazy=False`: config, summary and the history's last step
come in it), then per run one key-less history scan in parallel threads. Key-less because W&B's
scan with `keys=` returns only the rows holding every key, which would drop the epochs where an
optional key (`val/knn_acc`) is absent. `use_cache=False` because wandb-core's own cache names a
parquet export by its index, not its URL, so an export read in part and later whole would be read
stale (wandb 0.31, `Run.scan_history`); `analysis.pull.cache` is the cache.

wandb-core is given the smallest retry budget (one retry per HTTP request) so that failures reach
this module, which retries whole operations with bounded backoff (`analysis.pull.retries`), bounds
every wait (a history scan has no timeout of its own in wandb 0.31) and names what still failed
(`PullIncomplete`; the rest is cached, a re-run resumes). A re-run whose runs all ended with their
histories cached makes no request at all.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from analysis.pull.cache import Cache, cache_root
from analysis.pull.retries import EmptyHistory, RetryPolicy, RetryStats, call_with_retries, one_line
from analysis.pull.runs import ENDED_STATES, NO_HISTORY, UNKNOWN_STEP, PullError, PullIncomplete, PullResult, RunInfo, tidy_state
from analysis.pull.tidy import numeric_rows, tidy_table
from analysis.wandb_io.compat import GRAPHQL_RETRY_MAX, check_graphql_retry_setting
from analysis.wandb_io.sweep_path import SweepPathError, parse_sweep_path
from mae_gap.fmt import plural


# --------------------------------------------------------------------------- the W&B API


_CORE_ENV = {"core_retry_max": GRAPHQL_RETRY_MAX}


def make_api(policy: RetryPolicy, stats: RetryStats):
    """A `wandb.Api` whose wandb-core retry budget is `policy.core_retry_max` (module doc).

    `wandb.Api()` copies the process's W&B settings when it is created and hands that copy to
    wandb-core, so the budget is set on the settings for the duration of the constructor and
    restored after: other W&B use in the process keeps its own settings. The login check the
    constructor makes is retried like any other request.
    """
    import wandb

    settings = wandb.setup().settings
    check_graphql_retry_setting(settings)
    saved = {}
    for attr, (env, name) in _CORE_ENV.items():
        if os.environ.get(env):  # the user's explicit choice wins
            continue
        saved[name] = getattr(settings, name)
        setattr(settings, name, getattr(policy, attr))
    try:
        return call_with_retries(lambda: wandb.Api(timeout=int(policy.timeout_s)), "login", policy, stats)
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


def listed_last_step(run: Any) -> int | None:
    """The last history step the `runs` listing (lazy=False) already returned for `run` (its public
    `history_keys` attribute), None when the listing did not carry it. (`Run.lastHistoryStep` would
    send one more request per run.)"""
    try:
        keys = run.history_keys
    except AttributeError:
        return None
    step = keys.get("lastStep") if isinstance(keys, dict) else None
    return int(step) if isinstance(step, (int, float)) else -1


def _run_info(run: Any, entity: str, project: str) -> RunInfo:
    raw_state = str(getattr(run, "state", "") or "")
    summary = getattr(run, "summary_metrics", None)
    if summary is None:
        summary = dict(getattr(run, "summary", {}) or {})
    summary = {k: v for k, v in dict(summary or {}).items() if not str(k).startswith("_") and _jsonable(v)}
    config = {k: v for k, v in dict(run.config or {}).items() if not str(k).startswith("_")}
    # What the `runs` listing (lazy=False) returned: no request per run, nothing to fail here.
    # A listing without historyKeys leaves it unknown (-2): the history is then always pulled.
    last_step = listed_last_step(run)
    return RunInfo(
        run_id=str(run.id),
        run_name=str(getattr(run, "name", None) or run.id),
        state=tidy_state(raw_state, summary),
        wandb_state=raw_state.lower(),
        config=config,
        summary=summary,
        sweep_id=getattr(run, "sweep_name", None),
        entity=entity,
        project=project,
        created=str(getattr(run, "created_at", "") or ""),
        last_step=UNKNOWN_STEP if last_step is None else last_step,
    )


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))
# --------------------------------------------------------------------------- the pull


def pull_sweep(
    sweep: str,
    out_dir: str | os.PathLike,
    *,
    entity: str | None = None,
    project: str | None = None,
    refresh: bool = False,
    workers: int = 8,
    policy: RetryPolicy | None = None,
    progress: Callable[[str], None] | None = None,
) -> PullResult:
    """Every run of a sweep and its full per-epoch history, through `wandb.Api()`, cached.

    See the module docstring for the queries, the retries and the cache. Raises PullError
    (one-line message) when the sweep does not exist, the project is unknown or W&B cannot
    be reached, and PullIncomplete when some runs' histories failed (the rest is cached).
    """
    policy = policy or RetryPolicy()
    stats = RetryStats()
    t0 = time.monotonic()
    try:
        e, p, sid = parse_sweep_path(sweep, entity, project)
    except SweepPathError as exc:
        raise PullError(str(exc)) from None
    cache = Cache(cache_root(out_dir, sid))
    say = progress or (lambda s: None)

    listing, e, p = (None, e, p) if refresh else _cached_listing(cache, e, p)
    if listing is not None:
        cached = _from_cache(cache, listing, t0)
        if cached is not None:
            return cached
    if not p:
        raise PullError(f"no W&B project for sweep {sid!r}: give ENTITY/PROJECT/{sid}, --project or WANDB_PROJECT")
    api, e = _connect(e, sid, policy, stats)
    path = f"{e}/{p}/{sid}"
    say(f"listing the runs of sweep {path} ...")
    wruns = _list_runs(api, path, policy, stats)
    runs = [_run_info(r, e, p) for r in wruns]

    # Which histories the cache already holds for good.
    cached_state = {} if refresh else {r.run_id: cache.history_state(r.run_id) for r in runs}
    cached_ids = [r.run_id for r in runs if cache.cached_for_good(cached_state.get(r.run_id), r)]
    todo = [r.run_id for r in runs if r.run_id not in cached_ids]
    hist_state = {rid: cached_state[rid] for rid in cached_ids}
    cache.write_listing(path, runs)
    histories: dict[str, list[dict[str, Any]]] = {rid: cache.read_history(rid) for rid in cached_ids}
    if todo:
        say(f"pulling {plural(len(todo), 'run history', 'run histories')} ({len(cached_ids)} cached) "
            f"with {plural(min(workers, len(todo)), 'thread')} ...")
        pull = _HistoryPull(cache, path, runs, dict(zip([r.run_id for r in runs], wruns)), policy, stats,
                            histories, hist_state)
        pull.run(todo, workers)
    table, dups, ignored = tidy_table(runs, histories)
    return PullResult(
        table, runs, path, "api", pulled=list(todo), cached=cached_ids, retries=stats.retries,
        failures=dict(stats.failures), seconds=time.monotonic() - t0, duplicate_epochs=dups,
        ignored_rows=ignored, requests_made=True, cache_dir=cache.root,
    )


def _cached_listing(cache: Cache, e: str | None, p: str | None) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(the cached listing, entity, project): None when there is none, or it is of another
    entity/project's sweep with the same id; entity and project filled in from it."""
    listing = cache.read_listing()
    if listing is None:
        return None, e, p
    ce, cp, _ = listing["sweep"].split("/")
    if (e and e != ce) or (p and p != cp):
        return None, e, p
    return listing, ce, cp


def _from_cache(cache: Cache, listing: Mapping[str, Any], t0: float) -> PullResult | None:
    """The whole pull from the cache (no request at all) when every run ended and its history is
    cached for good; else None."""
    runs = [RunInfo.from_json(r) for r in listing["runs"]]
    if not runs or not all(r.state in ENDED_STATES and cache.cached_for_good(cache.history_state(r.run_id), r)
                           for r in runs):
        return None
    histories = {r.run_id: cache.read_history(r.run_id) for r in runs}
    table, dups, ignored = tidy_table(runs, histories)
    return PullResult(
        table, runs, listing["sweep"], "cache", cached=[r.run_id for r in runs],
        seconds=time.monotonic() - t0, duplicate_epochs=dups, ignored_rows=ignored,
        requests_made=False, cache_dir=cache.root,
        notes=[f"read from the cache {cache.root} (written {listing.get('written', '?')}); --refresh re-pulls"],
    )


def _connect(e: str | None, sid: str, policy: RetryPolicy, stats: RetryStats) -> tuple[Any, str]:
    """(the `wandb.Api`, the entity: `e`, else the user's default entity); PullError."""
    try:
        api = make_api(policy, stats)
    except Exception as exc:  # noqa: BLE001
        raise PullError(f"cannot reach W&B: {one_line(exc)}") from exc
    if e:
        return api, e
    try:
        return api, call_with_retries(lambda: api.default_entity, "default entity", policy, stats)
    except Exception as exc:  # noqa: BLE001
        raise PullError(f"cannot find your default W&B entity ({one_line(exc)}); give ENTITY/PROJECT/{sid}") from exc


def _list_runs(api: Any, path: str, policy: RetryPolicy, stats: RetryStats) -> list[Any]:
    """The one `runs` query of the sweep `path` (entity/project/id); PullError if it has none."""
    e, p, sid = path.split("/")

    def query() -> list[Any]:
        api.flush()  # Api caches Runs objects; a retry must start afresh
        return list(api.runs(f"{e}/{p}", filters={"sweep": sid}, order="+created_at", per_page=500, lazy=False))

    try:
        wruns = call_with_retries(query, "runs query", policy, stats)
    except Exception as exc:  # noqa: BLE001
        raise PullError(f"cannot list the runs of sweep {path}: {one_line(exc)}") from exc
    if not wruns:
        _check_sweep_exists(api, path, policy, stats)
        raise PullError(f"sweep {path} has no runs")
    return wruns


def bounded(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """fn() in a daemon thread, waited for at most `seconds`: wandb sends a history scan to
    wandb-core with no timeout, so a stalled one would hold the pull for ever. Raises TimeoutError
    (retried by `call_with_retries`); the abandoned thread ends when its answer comes."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["error"] = exc

    thread = threading.Thread(target=target, name="bounded-scan", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not finish in {seconds:g} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


class _HistoryPull:
    """The history scans of a pull, in parallel threads, each run cached as soon as it is complete."""

    def __init__(self, cache: Cache, path: str, runs: Sequence[RunInfo], wruns: Mapping[str, Any],
                 policy: RetryPolicy, stats: RetryStats, histories: dict[str, Any], hist_state: dict[str, Any]):
        self.cache, self.path, self.runs, self.wruns = cache, path, runs, wruns
        self.infos = {r.run_id: r for r in runs}
        self.policy, self.stats = policy, stats
        self.histories, self.hist_state = histories, hist_state
        self.lock = threading.Lock()

    def one(self, rid: str) -> None:
        run, info = self.wruns[rid], self.infos[rid]

        def scan() -> list[dict[str, Any]]:
            # use_cache=False: wandb-core's own cache names an export file by its index, not its
            # URL, so a run exported in part and later in full would be read from the stale copy
            # (wandb 0.31, Run.scan_history); this pull's cache is the cache.
            rows = bounded(lambda: list(run.scan_history(page_size=1000, use_cache=False)), self.policy.scan_timeout_s,
                           f"the history scan of {info.label}")
            if not rows and info.last_step >= 0:  # the listing says rows exist: never cache this
                raise EmptyHistory(f"the history of {info.label} came back empty; W&B lists step {info.last_step}")
            return rows

        rows: list[dict[str, Any]] = []
        if info.last_step != NO_HISTORY:  # W&B says the run has rows, or did not say
            rows = call_with_retries(scan, f"history of {info.label}", self.policy, self.stats)
        state = {"state": info.state, "last_step": info.last_step}
        self.cache.write_history(rid, rows, state)  # this run's files only: a pull's writes grow linearly
        with self.lock:
            self.histories[rid] = numeric_rows(rows)
            self.hist_state[rid] = state

    def run(self, todo: Sequence[str], workers: int) -> None:
        """Pull every run of `todo`; PullIncomplete naming those that failed (the rest is cached)."""
        failed: dict[str, str] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo))), thread_name_prefix="pull")
        try:
            futures = {pool.submit(self.one, rid): rid for rid in todo}
            for fut in as_completed(futures):
                exc = fut.exception()
                if exc is not None:
                    failed[futures[fut]] = one_line(exc)
        finally:  # on Ctrl-C: drop the queued runs; finished ones are already cached
            pool.shutdown(wait=False, cancel_futures=True)
        if failed:
            n = len(self.runs)
            names = "; ".join(f"{self.infos[r].label}: {msg}" for r, msg in failed.items())
            raise PullIncomplete(
                f"could not pull {len(failed)} of {n} run histories ({names}); "
                f"the other {n - len(failed)} are cached in {self.cache.root}: re-run to resume",
                failed,
            )


def _check_sweep_exists(api: Any, path: str, policy: RetryPolicy, stats: RetryStats) -> None:
    """Raise PullError("sweep ... not found") unless W&B knows the sweep."""
    try:
        sweep = call_with_retries(lambda: api.sweep(path), "sweep lookup", policy, stats)
    except Exception as exc:  # noqa: BLE001 - W&B says "not found" in several ways
        raise PullError(f"sweep {path} not found ({one_line(exc)})") from exc
    if sweep is None:
        raise PullError(f"sweep {path} not found")
