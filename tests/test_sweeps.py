"""The sweep YAMLs: valid W&B sweep configs, SPEC section 6's grids, TrainConfig's types."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agent.sweep_config import SweepConfigError, grid, load, sweep_args, validate
from mae_gap.config import TrainConfig, expected_type, parse_args

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"
NAMES = ["smoke", "quick", "lr_alpha", "full_alpha", "quick_seeds", "noise_floor", "imagenette_cpu",
         "imagenette_cpu_confusion"]
COMMAND = ["${env}", "${interpreter}", "-m", "agent.train", "${args}"]

# SPEC section 6: the original's listed alphas (it says "26 alphas" but lists 25)
FULL_ALPHAS = [-10, -5, -2, -1, -0.5, -0.1, -0.05, -0.01, -0.005, -0.001, -0.0001, -0.00001, 0,
               0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10]
TABLE = {  # file: (epochs, batch, project)
    "smoke": (8, 64, "mae-gap-smoke"),
    "quick": (10, 64, "mae-reconstruction-gap-manual-probes"),
    "lr_alpha": (10, 64, "mae-reconstruction-gap-lr-sweep"),
    "full_alpha": (50, 512, "mae-reconstruction-gap-full-sweep"),
    "quick_seeds": (10, 64, "mae-reconstruction-gap-manual-probes"),
    "noise_floor": (10, 64, "mae-reconstruction-gap-noise-floor"),
    "imagenette_cpu": (6, 128, "mae-gap-imagenette-cpu"),
    "imagenette_cpu_confusion": (6, 128, "mae-gap-imagenette-cpu"),
}


def raw(name: str) -> dict:
    return yaml.safe_load((SWEEPS / f"{name}.yaml").read_text())


def type_ok(value, want) -> bool:
    """The project's rule: exactly TrainConfig's type, except that an int may fill a float."""
    if want is bool:
        return isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, want)


def all_values(config: dict):
    for name, spec in config["parameters"].items():
        for value in spec["values"] if "values" in spec else [spec["value"]]:
            yield name, value


def test_the_sweeps_exist():
    assert sorted(p.stem for p in SWEEPS.glob("*.yaml")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_valid_wandb_sweep_config(name):
    sweeps = pytest.importorskip(
        "sweeps", reason="W&B's sweep engine: pip download --no-deps sweeps && pip install --no-deps sweeps-*.whl jsonschema jsonref"
    )
    from sweeps.config import schema

    config = raw(name)
    assert sweeps.schema_violations_from_proposed_config(config) == []
    filled = schema.fill_validate_schema(config)  # raises jsonschema.ValidationError when invalid
    assert filled["method"] == "grid"
    sweeps.SweepConfig(config)  # the engine's own validating constructor


@pytest.mark.parametrize("name", NAMES)
def test_grid_program_command_metric(name):
    config = raw(name)
    assert config["method"] == "grid"
    assert config["program"] == "agent/train.py"  # kept: wandb agent reads it
    assert config["command"] == COMMAND
    assert config["metric"] == {"name": "val/linear_acc", "goal": "maximize"}
    text = (SWEEPS / f"{name}.yaml").read_text()
    block = re.search(r"^command:\n((?:  - .*\n)+)", text, re.M)
    assert block, "command: must be a YAML block list (one `- ${env}` per line)"
    assert [ln.strip()[2:] for ln in block.group(1).splitlines()] == COMMAND
    assert "[${" not in text  # flow style does not even parse


@pytest.mark.parametrize("name", NAMES)
def test_every_value_has_trainconfig_type(name):
    config = raw(name)
    fields = set(TrainConfig.__dataclass_fields__)
    checked = 0
    for param, value in all_values(config):
        assert param in fields, f"{name}.yaml: {param} is not a TrainConfig field"
        want = expected_type(param)
        assert type_ok(value, want), f"{name}.yaml: {param}={value!r} is {type(value).__name__}, not {want.__name__}"
        checked += 1
    assert checked >= 4
    validate(load(SWEEPS / f"{name}.yaml"), f"sweeps/{name}.yaml")  # the controller's check agrees


@pytest.mark.parametrize("name", NAMES)
def test_every_run_parses_as_agent_train_parses_it(name):
    config = load(SWEEPS / f"{name}.yaml")
    for params in grid(validate(config, name)):
        cfg = parse_args(sweep_args(params)["args"])  # the argv wandb agent passes
        for key, value in params.items():
            assert getattr(cfg, key) == value


def test_scientific_notation_is_a_string_and_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (SWEEPS / "quick.yaml").read_text().replace("value: 0.00015", "values: [1e-4]")
    bad.write_text(text)
    config = yaml.safe_load(text)
    assert config["parameters"]["lr"] == {"values": ["1e-4"]}  # PyYAML: a string
    assert not type_ok("1e-4", expected_type("lr"))
    with pytest.raises(SweepConfigError) as err:
        validate(load(bad), str(bad))
    assert str(err.value) == f"{bad}: parameter lr value '1e-4' is a string; write 0.0001"


@pytest.mark.parametrize(
    "param, value, message",
    [
        ("epochs", "3.0", "parameter epochs value 3.0 is a float; write 3"),
        ("norm_pix_loss", "'False'", "value 'False' is a string; expected a boolean"),
        ("precision", "32", "value 32 is an int; expected a string"),
        ("alpha_mode", "sideways", "value 'sideways' is not one of grl, weighted"),
        ("alpah", "0.5", "alpah is not a TrainConfig field; did you mean alpha?"),
        ("alpha", "1.0e-4", None),  # PyYAML float spelling: fine
        ("alpha", "1", None),  # an int for a float field: fine, argv formats it
    ],
)
def test_type_check_messages(tmp_path, param, value, message):
    path = tmp_path / "x.yaml"
    path.write_text(f"method: grid\nprogram: agent/train.py\nparameters:\n  {param}:\n    values: [{value}]\n")
    if message is None:
        validate(load(path), str(path))
        return
    with pytest.raises(SweepConfigError) as err:
        validate(load(path), str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_full_alpha_has_exactly_the_25_listed_alphas():
    alphas = raw("full_alpha")["parameters"]["alpha"]["values"]
    assert len(alphas) == 25 == len(set(alphas))
    assert alphas == [float(a) for a in FULL_ALPHAS]
    assert all(isinstance(a, float) for a in alphas)
    assert sum(a < 0 for a in alphas) == 12 and alphas.count(0.0) == 1 and sum(a > 0 for a in alphas) == 12


@pytest.mark.parametrize("name", NAMES)
def test_spec_table(name):
    config = raw(name)
    params = config["parameters"]
    epochs, batch, project = TABLE[name]
    assert params["epochs"] == {"value": epochs}
    assert params["batch_size"] == {"value": batch}
    assert config["project"] == project


def test_spec_grids():
    assert raw("smoke")["parameters"]["alpha"]["values"] == [-1.0, 0.0, 1.0]
    assert raw("quick")["parameters"]["alpha"]["values"] == [-0.5, 0.0, 0.5]
    assert raw("quick")["parameters"]["lr"] == {"value": 1.5e-4}
    lr_alpha = raw("lr_alpha")["parameters"]
    assert lr_alpha["lr"]["values"] == [1e-3, 1e-4] and lr_alpha["alpha"]["values"] == [-0.5, 0.0, 0.5]
    sizes = {n: len(grid(validate(load(SWEEPS / f"{n}.yaml"), n))) for n in NAMES}
    assert sizes == {"smoke": 3, "quick": 3, "lr_alpha": 6, "full_alpha": 25, "quick_seeds": 9, "noise_floor": 5,
                     "imagenette_cpu": 15, "imagenette_cpu_confusion": 5}


def test_replicate_sweeps_differ_from_their_base_only_in_the_seed():
    quick = raw("quick")["parameters"]
    seeds = raw("quick_seeds")["parameters"]
    assert seeds.pop("seed") == {"values": [0, 1, 2]} and seeds == quick
    floor = raw("noise_floor")["parameters"]
    assert floor.pop("seed") == {"values": [0, 1, 2, 3, 4]} and floor.pop("alpha") == {"value": 0.0}
    assert floor == {k: v for k, v in quick.items() if k != "alpha"}


def test_every_sweep_optimizes_the_feature_only_accuracy():
    assert {raw(n)["metric"]["name"] for n in NAMES} == {"val/linear_acc"}


def test_imagenette_cpu_is_the_real_data_demonstration():
    """Two sweeps, one study: grl alpha in {-1, 0, 1} and the confusion arm at alpha = -1."""
    points = [p for n in ("imagenette_cpu", "imagenette_cpu_confusion") for p in grid(validate(load(SWEEPS / f"{n}.yaml"), n))]
    cfgs = [parse_args(sweep_args(p)["args"]) for p in points]
    assert {(c.alpha, c.alpha_policy.runs) for c in cfgs} == {(-1.0, "grl"), (0.0, "grl"), (1.0, "grl"),
                                                                   (-1.0, "confusion")}
    assert {c.seed for c in cfgs} == {0, 1, 2, 3, 4} and len(cfgs) == 20
    c = cfgs[0]
    assert (c.data_dir, c.img_size, c.patch_size, c.embed_dim, c.depth, c.decoder_embed_dim, c.decoder_depth) == (
        "../shared/data/imagenette-224", 64, 8, 96, 6, 96, 2)
    assert (c.batch_size, c.lr, c.epochs, c.accelerator) == (128, 1e-3, 6, "cpu")


def test_smoke_is_a_tiny_cpu_model_on_digits():
    cfg = parse_args(sweep_args(grid(validate(load(SWEEPS / "smoke.yaml"), "smoke"))[0])["args"])
    assert cfg.dataset == "digits" and cfg.accelerator == "cpu" and cfg.knn_every >= 1
    assert cfg.img_size <= 64 and cfg.embed_dim <= 128 and cfg.depth <= 4 and cfg.decoder_depth <= 2
    assert 6 <= cfg.epochs <= 10
