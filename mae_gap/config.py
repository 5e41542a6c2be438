"""One typed config for a training run, and the argv parser generated from it.

argv is the single source of truth (W&B sweeps pass `--alpha=-0.5`, every DDP rank sees the
same argv): `parse_args(sys.argv[1:])` -> TrainConfig -> Lightning. Each field's help text is
its `metadata["help"]`; `--help` lists every field with its type and default.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, get_args, get_origin, get_type_hints

from .alpha import AlphaMode, AlphaPolicy

DATASETS = ("imagenette", "folder", "digits", "synthetic")
PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")


def _f(default: Any, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Defaults are the original quick sweep's: ViT-Tiny MAE on Imagenette, 224 px, 10 epochs."""

    # --- the experiment's independent variables
    alpha: float = _f(0.0, "signed weight of the supervised head (negative = anti-regularization)")
    alpha_mode: AlphaMode = _f(
        "grl", "grl: encoder gets alpha*dCE/dz via gradient scaling; weighted: loss = rec + alpha*CE; "
        "confusion: as grl for alpha >= 0, for alpha < 0 the encoder gets |alpha|*dCE(head(z), uniform)/dz"
    )
    lr: float = _f(1.5e-4, "peak AdamW learning rate (after warmup); ignored when blr > 0")
    blr: float = _f(0.0, "MAE's base lr: when > 0, lr = blr * batch_size * devices / 256 (0 = use lr)")
    seed: int = _f(0, "seed for init, shuffle, crops and training masks (never the val masks or subsets)")

    # --- model (SPEC section 2); every size is a field so tests run a tiny model through the same code
    img_size: int = _f(224, "image side in pixels (must be divisible by patch_size)")
    patch_size: int = _f(16, "ViT patch side in pixels")
    embed_dim: int = _f(192, "encoder width (ViT-Tiny: 192)")
    depth: int = _f(12, "encoder blocks (ViT-Tiny: 12)")
    num_heads: int = _f(3, "encoder attention heads (ViT-Tiny: 3)")
    decoder_embed_dim: int = _f(512, "decoder width")
    decoder_depth: int = _f(8, "decoder blocks")
    decoder_num_heads: int = _f(8, "decoder attention heads")
    mlp_ratio: float = _f(4.0, "MLP hidden size / width, encoder and decoder")
    mask_ratio: float = _f(0.75, "fraction of patch tokens masked, in (0, 1)")
    norm_pix_loss: bool = _f(True, "reconstruct per-patch normalized pixels (MAE's recommended target)")
    num_classes: int = _f(10, "classes of the supervised head and the probe")

    # --- optimization (SPEC section 3)
    epochs: int = _f(10, "training epochs")
    batch_size: int = _f(64, "training batch size (per device)")
    weight_decay: float = _f(0.05, "AdamW weight decay (not on norms, biases, tokens, pos-embeds, heads)")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.95, "AdamW beta2")
    warmup_epochs: float = _f(1.0, "linear warmup length in epochs, then cosine to min_lr")
    min_lr: float = _f(0.0, "learning rate at the end of the cosine schedule")
    head_lr_scale: float = _f(10.0, "lr multiplier of the head and the probe (own group of the one AdamW): linear heads need a larger lr to keep up")

    # --- data (SPEC section 5)
    dataset: Literal["imagenette", "folder", "digits", "synthetic"] = _f(
        "imagenette", "imagenette (HF hub) | folder (needs data_dir) | digits (sklearn) | synthetic"
    )
    data_dir: str = _f("", "fast.ai-layout folder train/<class>/*.JPEG, val/<class>/*.JPEG (implies dataset=folder)")
    hf_dataset: str = _f("frgfm/imagenette", "Hugging Face dataset id for dataset=imagenette")
    hf_config: str = _f("320px", "Hugging Face dataset config for dataset=imagenette")
    cache_dir: str = _f("", "decoded-dataset cache folder (default: $MAE_GAP_CACHE or ~/.cache/mae-gap)")
    train_limit: int = _f(0, "use only this many training images (0 = all; class-balanced, seeded)")
    val_limit: int = _f(0, "use only this many validation images (0 = all; class-balanced, seeded)")
    synthetic_size: int = _f(1024, "training images of dataset=synthetic (val gets a quarter)")

    # --- evaluation (SPEC section 4)
    mask_seed: int = _f(0, "seed of the fixed validation masks (same masks every epoch, run, batch size)")
    eval_batch_size: int = _f(256, "batch size of validation and k-NN feature passes")
    knn_every: int = _f(1, "run the k-NN evaluation every N epochs (0 = off)")
    knn_k: int = _f(20, "neighbours of the k-NN evaluation")
    knn_temperature: float = _f(0.07, "temperature of the k-NN vote weights")
    recon_every: int = _f(5, "log a reconstruction panel (8 fixed val images, original | masked | reconstruction) every N epochs and at the last (0 = off)")
    online_probe: bool = _f(True, "train the online probe on a no-grad unmasked pass (+~7% FLOPs); False logs NaN for it")

    # --- runtime
    accelerator: str = _f("auto", "Lightning accelerator: auto | cpu | gpu")
    devices: int = _f(1, "devices for this run (DDP when > 1)")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = _f(
        "auto", "auto = bf16-mixed on GPU, 32 on CPU; 16-mixed uses a GradScaler"
    )
    compile: bool = _f(False, "torch.compile the model (compiled once per process)")
    ckpt_dir: str = _f("", "where the latest epoch checkpoint is kept (empty = no checkpoints)")
    progress: bool = _f(True, "show Lightning's progress bar when stdout is a terminal (a log always gets one line per epoch)")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def alpha_policy(self) -> AlphaPolicy:
        return AlphaPolicy(self.alpha, self.alpha_mode)

    @property
    def effective_lr(self) -> float:
        """The peak lr actually used: blr * global batch / 256 (MAE's rule) when blr is set, else lr."""
        return self.blr * self.batch_size * self.devices / 256 if self.blr > 0 else self.lr

    @property
    def source(self) -> str:
        """The data source actually used: a data_dir means a local folder."""
        return "folder" if self.data_dir else self.dataset

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A bad config value or CLI key; the message names the problem and the fix."""


def validate(cfg: TrainConfig) -> None:
    """Checks that cost nothing, run before any data loading or device work."""
    problems = []
    for f in dataclasses.fields(cfg):
        allowed = choices(f.name)
        if allowed and getattr(cfg, f.name) not in allowed:
            problems.append(f"{f.name}={getattr(cfg, f.name)!r} is not one of {', '.join(map(str, allowed))}")
    sizes_ok = cfg.patch_size > 0 and cfg.img_size > 0 and cfg.img_size % cfg.patch_size == 0
    if not sizes_ok:
        problems.append(f"img_size={cfg.img_size} is not a positive multiple of patch_size={cfg.patch_size}")
    if not 0.0 < cfg.mask_ratio < 1.0:
        problems.append(f"mask_ratio={cfg.mask_ratio} must lie strictly between 0 and 1")
    elif sizes_ok and int(cfg.num_patches * (1 - cfg.mask_ratio)) < 1:
        problems.append(f"mask_ratio={cfg.mask_ratio} leaves no visible patch of {cfg.num_patches}")
    for name, heads in (("embed_dim", "num_heads"), ("decoder_embed_dim", "decoder_num_heads")):
        dim, n = getattr(cfg, name), getattr(cfg, heads)
        if n <= 0 or dim % n:
            problems.append(f"{name}={dim} is not divisible by {heads}={n}")
    for name in ("epochs", "batch_size", "eval_batch_size", "depth", "decoder_depth", "num_classes", "devices"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name}={getattr(cfg, name)} must be at least 1")
    for name in ("lr", "knn_temperature", "head_lr_scale"):
        if not getattr(cfg, name) > 0:
            problems.append(f"{name}={getattr(cfg, name)} must be positive")
    if cfg.blr < 0:
        problems.append(f"blr={cfg.blr} must be positive (or 0 to use lr)")
    if cfg.recon_every < 0:
        problems.append(f"recon_every={cfg.recon_every} must be 0 (off) or positive")
    if cfg.knn_k < 1:
        problems.append(f"knn_k={cfg.knn_k} must be at least 1")
    if cfg.dataset == "folder" and not cfg.data_dir:
        problems.append("dataset=folder needs --data_dir PATH")
    if problems:
        raise ConfigError("; ".join(problems))


# ----------------------------------------------------------------------------- argv parsing


def field_type(name: str, cls: type = TrainConfig) -> Any:
    """The annotated type of field `name` of `cls` (e.g. float, Literal["grl", "confusion"])."""
    return get_type_hints(cls)[name]


def choices(name: str, cls: type = TrainConfig) -> tuple | None:
    """The allowed values of a Literal field, or None for a free one."""
    tp = field_type(name, cls)
    return get_args(tp) if get_origin(tp) is Literal else None


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "|".join(map(str, get_args(tp)))
    return getattr(tp, "__name__", str(tp))


def closest_hint(name: str, known: Sequence[str], prefix: str = "--") -> str:
    """"; did you mean --epochs?" for a misspelt name, else where to look."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5)
    return f"; did you mean {prefix}{close[0]}?" if close else "; see `python -m agent.train --help`"


def parse_bool(text: str) -> bool:
    """Strict booleans: W&B passes `--flag=False`, and bool('False') would be True."""
    low = text.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValueError(text)


def parse_value(name: str, text: str, cls: type = TrainConfig) -> Any:
    """The one conversion of a field's text to its type (argv, `--set`, sweep overrides): strict
    booleans, whole numbers for ints ("1e3" is fine, "1.5" is not), a Literal's choices checked.
    Raises ConfigError "--name='text' is not a valid <type>"."""
    tp = field_type(name, cls)
    base = type(get_args(tp)[0]) if get_origin(tp) is Literal else expected_type(name, cls)
    try:
        if base is bool:
            value: Any = parse_bool(text)
        elif base is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError(text)
            value = int(number)
        elif base is float:
            value = float(text)
        else:
            value = base(text.strip()) if base is str else base(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name}={text!r} is not a valid {_type_name(tp)}") from None
    allowed = choices(name, cls)
    if allowed and value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}")
    return value


def parse_key_value(text: str, cls: type = TrainConfig) -> tuple[str, Any]:
    """`key=value` (a `--set` override) -> (field name, typed value); raises ConfigError."""
    key, eq, raw = text.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not eq or not key:
        raise ConfigError(f"{text!r}: write key=value, e.g. epochs=2")
    known = [f.name for f in dataclasses.fields(cls)]
    if key not in known:
        raise ConfigError(f"{key} is not a {cls.__name__} field{closest_hint(key, known, prefix='')}")
    return key, parse_value(key, raw.strip(), cls)


def split_argv(argv: Sequence[str], known: set[str]) -> dict[str, str]:
    """`--key=value` and `--key value` pairs -> {key: text}; unknown keys get the closest name."""
    pairs: dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: every option is --key=value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in known:
            raise ConfigError(f"unknown option --{key}{closest_hint(key, sorted(known))}")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--") and not _is_number(args[i + 1]):
                raise ConfigError(f"--{key} needs a value: --{key}=VALUE")
            i += 1
            value = args[i]
        pairs[key] = value
        i += 1
    return pairs


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def help_text(*classes: type, prog: str = "python -m agent.train") -> str:
    lines = [f"usage: {prog} [--key=value ...]"]
    for cls in classes:
        hints = get_type_hints(cls)
        lines += ["", f"{cls.__name__}: {(cls.__doc__ or '').strip()}"]
        for f in dataclasses.fields(cls):
            default = f"--{f.name}={f.default!r}"
            lines.append(f"  {default:<32} ({_type_name(hints[f.name])}) {f.metadata.get('help', '')}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None, *classes: type, prog: str = "python -m agent.train"):
    """argv -> one instance of each dataclass in `classes` (default: TrainConfig alone).

    Every key must belong to exactly one class. Raises ConfigError (one line) on any bad key or
    value; `--help` prints every field with its type and default and exits 0. With one class the
    instance itself is returned, with several a tuple.
    """
    classes = classes or (TrainConfig,)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(help_text(*classes, prog=prog))
        raise SystemExit(0)
    owner = {f.name: cls for cls in classes for f in dataclasses.fields(cls)}
    pairs = split_argv(argv, set(owner))
    instances = []
    for cls in classes:
        instances.append(cls(**{k: parse_value(k, v, cls) for k, v in pairs.items() if owner[k] is cls}))
    return instances[0] if len(instances) == 1 else tuple(instances)


def expected_type(name: str, cls: type = TrainConfig) -> Any:
    """The Python type a config field takes (bool, int, float, str), for checking sweep YAMLs."""
    tp = get_type_hints(cls)[name]
    if get_origin(tp) is Literal:
        return type(get_args(tp)[0])
    if isinstance(tp, types.UnionType) or get_origin(tp) is typing.Union:
        return get_args(tp)[0]
    return tp


# Named model sizes. `tiny` runs the same code paths in seconds on a CPU (tests, the smoke sweep,
# `python -m mae_gap.bench --config tiny`); `full` is SPEC §2's ViT-Tiny MAE (the defaults).
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "tiny": dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4,
                 decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """TrainConfig of a named size, with any other fields overridden."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **overrides})
