"""The one parser of a W&B sweep path (`entity/project/id`), for every command of the project.

W&B's own rule (wandb 0.31: `parse_sweep_id` of the launch sweeps utilities, which `wandb agent`
and the CLI's sweep commands go through): the path is split on "/" into 1, 2 or 3 parts, `id`, `project/id` or
`entity/project/id`; more parts are an error; an empty entity or project part falls back to the
entity / project given otherwise. W&B checks no characters; this parser adds only what keeps a
path usable here: no whitespace in a part (a shell would split it), a non-empty id that is not
"." or ".." (it names a cache folder). A W&B sweep URL (`.../<entity>/<project>/sweeps/<id>`) is
read too, unless `url=False` (a path handed on to `wandb agent`, which takes no URL).
"""

from __future__ import annotations

import os
import re

_URL = re.compile(r"([^/\s]+)/([^/\s]+)/sweeps/([^/?#\s]+)")


class SweepPathError(ValueError):
    """A sweep path that is not `entity/project/id` (the message is one line for the user)."""


def parse_sweep_path(
    text: str,
    entity: str | None = None,
    project: str | None = None,
    *,
    use_env: bool = True,
    url: bool = True,
    full: bool = False,
) -> tuple[str | None, str | None, str]:
    """`entity/project/id`, `project/id` or `id` -> (entity or None, project or None, id).

    A part of the path wins over `entity` / `project`, which win over WANDB_ENTITY /
    WANDB_PROJECT (only with `use_env`), as in `wandb agent`. `full=True` wants all three
    parts in the path itself. Raises SweepPathError.
    """
    s = str(text or "").strip()
    if not s:
        raise SweepPathError("no sweep id given")
    m = _URL.search(s) if url else None
    parts = list(m.groups()) if m else s.split("/")
    if full and (len(parts) != 3 or not all(parts) or any(re.search(r"\s", p) for p in parts)):
        hint = (" (add the entity and project)" if len(parts) == 1 else
                " (not the URL: take ENTITY/PROJECT/SWEEP_ID from it)" if s.startswith(("http://", "https://")) else "")
        raise SweepPathError(f"sweep {text!r} is not ENTITY/PROJECT/SWEEP_ID, e.g. my-team/mae-gap-smoke/ab12cd34{hint}")
    if not 1 <= len(parts) <= 3:
        raise SweepPathError(f"sweep {text!r}: expected ENTITY/PROJECT/ID, PROJECT/ID or ID")
    if any(re.search(r"\s", p) for p in parts):
        raise SweepPathError(f"sweep {text!r}: expected ENTITY/PROJECT/ID without spaces")
    sid = parts[-1]
    if sid in ("", ".", ".."):
        raise SweepPathError(f"sweep {text!r}: no sweep id after the last '/'")
    e = (parts[0] if len(parts) == 3 else "") or entity or (os.environ.get("WANDB_ENTITY") if use_env else None)
    p = (parts[-2] if len(parts) >= 2 else "") or project or (os.environ.get("WANDB_PROJECT") if use_env else None)
    return e or None, p or None, sid


# Several sweeps analysed as one study (a study's arms in separate sweep YAMLs): their paths are
# shown joined by JOINED, and their ids joined by "+" name the study (W&B ids hold no "+").
JOINED = " + "


def sweep_ids(sweep: str) -> list[str]:
    """The sweep ids of `entity/project/id`, or of several such paths joined by JOINED."""
    return [part.split("/")[-1] for part in sweep.split(JOINED)]


def study_id(ids: list[str]) -> str:
    """The name of one or more sweeps analysed together (a folder, the analysis run): their ids
    joined by "+"."""
    return "+".join(ids)
