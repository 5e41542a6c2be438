"""Every row of the README's "Bad input" table, run as the user would run it (SPEC §7).

Each case is a real command in a subprocess: it must exit non-zero with a ONE-line message that
names the problem (the README shows the same message), and must not start any training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import isolated_wandb_env
from fake_wandb import FakeWandb

REPO = Path(__file__).resolve().parents[1]

GOOD_COMMAND = "command:\n  - ${env}\n  - ${interpreter}\n  - -m\n  - agent.train\n  - ${args}\n"
FLOW_COMMAND = "command: [${env}, ${interpreter}, -m, agent.train, ${args}]\n"


def sweep_yaml(command: str, lr: str) -> str:
    return f"program: agent/train.py\nmethod: grid\n{command}parameters:\n  lr:\n    values: [{lr}]\n"


# (case id, argv after `python -m`, files to create {relative path: text}, exit code, message)
CASES = [
    ("mistyped flag", ["agent.train", "--alpah=1"], {}, 2,
     "agent.train: unknown option --alpah; did you mean --alpha?"),
    ("wrong type", ["agent.train", "--epochs=1.5"], {}, 2,
     "agent.train: --epochs='1.5' is not a valid int"),
    ("bad boolean", ["agent.train", "--norm_pix_loss=maybe"], {}, 2,
     "agent.train: --norm_pix_loss='maybe' is not a valid bool"),
    ("flag without value", ["agent.train", "--alpha"], {}, 2,
     "agent.train: --alpha needs a value: --alpha=VALUE"),
    ("image not divisible by patch", ["agent.train", "--img_size=30"], {}, 2,
     "agent.train: img_size=30 is not a positive multiple of patch_size=16"),
    ("mask ratio outside (0, 1)", ["agent.train", "--mask_ratio=1.0"], {}, 2,
     "agent.train: mask_ratio=1.0 must lie strictly between 0 and 1"),
    ("unknown alpha mode", ["agent.train", "--alpha_mode=reversed"], {}, 2,
     "agent.train: alpha_mode='reversed' is not one of grl, weighted, confusion"),
    ("missing data folder", ["agent.train", "--data_dir={tmp}/nope"], {}, 1,
     "agent.train: data folder {tmp}/nope does not exist: pass --data_dir PATH to a folder holding "
     "train/<class>/*.JPEG and val/<class>/*.JPEG (fast.ai layout)"),
    ("folder without class folders", ["agent.train", "--data_dir={tmp}/flat"], {"flat/train/x.txt": "", "flat/val/x.txt": ""}, 1,
     "agent.train: {tmp}/flat/train has no class sub-folders: the data folder {tmp}/flat must hold "
     "train/<class>/*.JPEG and val/<class>/*.JPEG (fast.ai layout)"),
    ("corrupt JPEG", ["agent.train", "--data_dir={tmp}/bad", "--img_size=32", "--patch_size=4"],
     {"bad/train/a/x.JPEG": "not a jpeg", "bad/val/a/y.JPEG": "not a jpeg"}, 1,
     "agent.train: unreadable image {tmp}/bad/train/a/x.JPEG (UnidentifiedImageError: cannot identify image "
     "file '{tmp}/bad/train/a/x.JPEG'); delete or replace the file"),
    ("Imagenette without network", ["agent.train", "--dataset=imagenette"], {}, 1,
     "agent.train: dataset=imagenette needs the network once to download frgfm/imagenette (HF_HUB_OFFLINE is set "
     "and there is no cached copy in {tmp}/hf/hub or {tmp}/hf/datasets); connect and run again, or use "
     "--data_dir PATH with a local train/ val/ folder (e.g. --data_dir ../shared/data/imagenette-224)"),
    ("sweep YAML with a string-typed number", ["agent.local", "{tmp}/s.yaml"], {"s.yaml": sweep_yaml(GOOD_COMMAND, "1e-4")}, 2,
     "agent.local: error: {tmp}/s.yaml: parameter lr value '1e-4' is a string; write 0.0001"),
    ("sweep YAML with a flow-style command", ["agent.local", "{tmp}/s.yaml"], {"s.yaml": sweep_yaml(FLOW_COMMAND, "0.0001")}, 2,
     "agent.local: error: {tmp}/s.yaml: not valid YAML at line 3, column 12: expected ',' or ']', but got '{{'; "
     "write command: as a YAML block list, one `- ${{env}}` item per line (in flow style [${{env}}, ...] YAML "
     "reads `{{` as a mapping)"),
    ("sweep path without entity/project", ["agent.launch", "abc123", "--gpus", "0", "--dry-run"], {}, 2,
     "agent.launch: error: sweep 'abc123' is not ENTITY/PROJECT/SWEEP_ID, e.g. my-team/mae-gap-smoke/ab12cd34 "
     "(add the entity and project)"),
    ("--gpus all without a GPU", ["agent.launch", "e/p/abc123", "--gpus", "all"], {}, 2,
     "agent.launch: error: --gpus all: no GPU visible (nvidia-smi -L and torch.cuda find none); pass --gpus 0,1 "
     "or run `python -m agent.local`"),
    ("sweep id that does not exist", ["analysis.pull_and_plot", "fake-entity/proj/nosuch1", "--out={tmp}/out", "--no-upload"], {}, 1,
     "analysis.pull_and_plot: error: sweep fake-entity/proj/nosuch1 not found"),
    ("missing --offline folder", ["analysis.pull_and_plot", "--offline", "{tmp}/nope"], {}, 1,
     "analysis.pull_and_plot: error: --offline folder {tmp}/nope does not exist"),
]


@pytest.fixture(scope="module")
def fake():
    with FakeWandb() as server:
        yield server


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line(case, tmp_path, fake):
    _, argv, files, code, message = case
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = isolated_wandb_env(  # W&B offline with WANDB_DIR = tmp_path; no network, no GPU
        tmp_path, wandb_dir=tmp_path, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), CUDA_VISIBLE_DEVICES="",
        PATH=os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not Path(p, "nvidia-smi").exists()),
        PYTHONPATH=str(REPO), **fake.env())
    if argv[0] == "analysis.pull_and_plot" and "--offline" not in argv:
        env.pop("WANDB_MODE")  # the W&B API, against the fake backend
    args = [a.format(tmp=tmp_path) for a in argv]
    out = subprocess.run([sys.executable, "-m", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    expected = message.format(tmp=tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("wandb:")]
    assert out.returncode == code, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not (tmp_path / "checkpoints").exists(), "no training may start"


def test_readme_table_lists_every_case():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Bad input"):]
    for case_id, argv, _, code, message in CASES:
        assert f"| {case_id} |" in table, f"README's bad-input table lacks the row {case_id!r}"
        shown = message.format(tmp="DIR").split(":", 1)[1].strip()[:40]
        assert shown in table.replace("\\|", "|"), f"README row {case_id!r} does not show its message"
