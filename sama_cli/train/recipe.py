"""Training recipes: typed dataclasses loaded from YAML, with `key.sub=value` overrides.

Every section is a dataclass; an unknown or misspelt key, or a value of the wrong type, is an error
that names the key and the file. Defaults live here and nowhere else. The resolved recipe is written
beside every checkpoint (`recipe.yaml`), so a run can always be repeated.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sama_cli.core.errors import ConfigError
from sama_cli.model.lora import DEFAULT_TARGETS


@dataclass
class ModelSection:
    preset: str = "tiny"  # a name in sama_cli.model.config.PRESETS
    init: str | None = None  # a sama checkpoint, SAMA release weights, or None for random init
    base: str | None = None  # a Wan2.1-T2V folder (diffusers or original files)
    overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields (in_channels, semantic_rope, ...)
    gradient_checkpointing: bool = False


@dataclass
class DataSection:
    manifests: list[str] = field(default_factory=list)  # JSONL manifests with cached artifacts
    splits: list[str] = field(default_factory=list)  # keep rows whose `split` is listed (empty: all rows)
    kinds: list[str] = field(default_factory=list)  # keep rows of these kinds (video_edit, image_edit, t2v; empty: all)
    weights: list[float] = field(default_factory=list)  # sampling weight per manifest (default equal)
    video_batch: int = 4  # release: 4 videos per batch
    image_batch: int = 16  # release: 16 images per batch
    image_ratio: float = 0.0  # by_rows only: probability that a step draws an image batch (0: by mass alone)
    # interleave: image and video batches take turns, image first (release `--train_mode mix`, "image+video
    # interleave", diffsynth/trainers/utils.py wan_parser); by_rows: a step's bucket drawn by its rows' mass
    batch_order: str = "interleave"
    task_ratio: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0])  # none:inpaint:speed:shuffle
    drop_text: float = 0.0  # probability of an empty prompt (for classifier-free guidance)
    pretext_on_the_fly: bool = False  # perturb plain t2v batches in latent space (cube-inpaint, tube-shuffle)
    lazy: bool = False  # keep only paths and shapes in memory; read a sample's files when a batch draws it
    workers: int = 0


@dataclass
class OptimSection:
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int = 100  # -1: 10% of train.steps (release `--lr_warmup_steps -1`)
    schedule: str = "constant"  # constant | cosine (after warm-up)
    min_lr_ratio: float = 0.0  # cosine floor
    grad_clip: float | None = 1.0  # null: no clipping (the release's launch_training_task clips nothing)
    accumulate: int = 1
    skip_grad_norm: float = 100.0  # skip steps whose grad norm exceeds this (or is not finite)
    skip_loss_spike: float = 5.0  # skip steps whose loss exceeds this multiple of the running mean


@dataclass
class TrainSection:
    steps: int = 1000
    seed: int = 0
    semantic_weight: float = 0.1  # lambda (docs/sama.md §3)
    semantic: bool = True  # Semantic Anchoring on
    shift: float = 5.0  # training sigma shift (docs/sama.md §4)
    # release: the flow loss times DiffSynth's timestep weight (flow.release_training_weights); none: unweighted
    loss_weighting: str = "release"
    # ours, 0 = off (paper, release): the flow loss of an edit pair weighs the latent positions its edit
    # changes (target differs from source by more than change_threshold in some channel) 1 + change_weight
    # times the others, normalised per sample (flow.change_weights). An object edit changes a few % of the
    # positions, a whole-frame edit nearly all: unweighted, object edits are learned last (issue 19)
    change_weight: float = 0.0
    change_threshold: float = 0.1  # latent units
    # model: the DiT sees the timestep rounded to its compute dtype (bf16), as the release; fp32: unrounded
    timestep_dtype: str = "model"
    ema_decay: float = 0.9998
    ema_start: int = 0
    precision: str = "auto"  # auto | fp32 | bf16
    device: str = "auto"
    log_every: int = 10
    save_every: int = 500
    keep_last: int = 2
    out_dir: str = "out/train"
    parallel: str = "auto"  # auto | none | ddp | fsdp
    resume: bool = True  # continue from the newest checkpoint in out_dir
    tensorboard: bool = True  # also log to OUT/tensorboard when the tensorboard package is installed
    export_release: bool = False  # also write OUT/export/ema_release.safetensors (the authors' layout)


@dataclass
class LoraSection:
    """`lora:` train adapters instead of the whole model (model/lora.py; peft)."""

    rank: int = 16
    alpha: float | None = None  # None: the rank (the adapters' scale alpha / rank is 1)
    dropout: float = 0.0
    # Wan blocks' attention q/k/v/out (self and cross) and feed-forward linears
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    train_sama_modules: bool = True  # the type embedding, semantic projector and head train fully beside
    base_dtype: str = "compute"  # compute | bf16 | fp8: storage of the frozen base (diffusers layerwise casting)
    merge: bool = False  # also export the EMA adapters merged into full weights (and the release layout with
    # train.export_release)

    def validate(self, where: str) -> None:
        if self.rank < 1:
            raise ConfigError(f"{where}: lora.rank must be at least 1, not {self.rank}")
        if self.alpha is not None and self.alpha <= 0:
            raise ConfigError(f"{where}: lora.alpha must be positive (or null: the rank)")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}: lora.dropout must be in [0, 1), not {self.dropout}")
        if not self.targets:
            raise ConfigError(f"{where}: lora.targets is empty: name the layers to adapt (e.g. attn1.to_q)")
        if self.base_dtype not in ("compute", "bf16", "fp8"):
            raise ConfigError(f"{where}: lora.base_dtype must be compute or bf16 or fp8, not {self.base_dtype!r}")

    def spec(self):
        from sama_cli.model.lora import LoraSpec

        return LoraSpec(rank=self.rank, alpha=self.alpha, dropout=self.dropout, targets=tuple(self.targets),
                        train_sama_modules=self.train_sama_modules, base_dtype=self.base_dtype)


# keys with a fixed set of values (the first is the field's default where the release fixes it)
CHOICES = {
    "optim.schedule": ("constant", "cosine"),
    "train.parallel": ("auto", "none", "ddp", "fsdp"),
    "train.loss_weighting": ("release", "none"),
    "train.timestep_dtype": ("model", "fp32"),
    "data.batch_order": ("interleave", "by_rows"),
}


@dataclass
class Recipe:
    name: str = "recipe"
    stage: int = 1  # 0: motion-alignment pre-training, 1: edit fine-tuning
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    lora: LoraSection | None = None  # set: LoRA fine-tuning (only adapters, and the SAMA modules, train)

    def validate(self, where: str = "recipe") -> None:
        if self.stage not in (0, 1):
            raise ConfigError(f"{where}: stage must be 0 or 1, not {self.stage}")
        for key, allowed in CHOICES.items():
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if value not in allowed:
                raise ConfigError(f"{where}: {key} must be {' or '.join(allowed)}, not {value!r}")
        if self.data.batch_order == "interleave" and self.data.image_ratio > 0:
            raise ConfigError(f"{where}: data.image_ratio applies to data.batch_order by_rows (interleave alternates "
                              "image and video batches): set one of them")
        if self.optim.warmup_steps < -1:
            raise ConfigError(f"{where}: optim.warmup_steps must be -1 (10% of train.steps) or more")
        if self.optim.grad_clip is not None and self.optim.grad_clip <= 0:
            raise ConfigError(f"{where}: optim.grad_clip must be positive, or null for no clipping")
        if len(self.data.task_ratio) != 4 or any(r < 0 for r in self.data.task_ratio):
            raise ConfigError(f"{where}: data.task_ratio needs 4 non-negative numbers (none, inpaint, speed, shuffle)")
        if self.data.weights and len(self.data.weights) != len(self.data.manifests):
            raise ConfigError(f"{where}: data.weights has {len(self.data.weights)} entries for "
                              f"{len(self.data.manifests)} manifests")
        for key in ("steps", "log_every", "save_every", "keep_last"):
            if getattr(self.train, key) < 1:
                raise ConfigError(f"{where}: train.{key} must be at least 1")
        if self.train.change_weight < 0 or self.train.change_threshold < 0:
            raise ConfigError(f"{where}: train.change_weight and train.change_threshold must be >= 0")
        if self.optim.accumulate < 1:
            raise ConfigError(f"{where}: optim.accumulate must be at least 1")
        if self.lora is not None:
            self.lora.validate(where)
            if self.model.init is None and self.model.base is None:
                raise ConfigError(f"{where}: lora needs a model to adapt: set model.init (a checkpoint or release "
                                  "weights) or model.base (a Wan folder)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(self.to_dict()), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---- typed construction --------------------------------------------------------------------------
def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check/convert a YAML value against a type hint; errors name the key."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(hint), key, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, not {type(value).__name__}")
        return _build(hint, value, where, prefix=f"{key}.")
    if origin in (list, tuple):
        return _coerce_sequence(value, origin, typing.get_args(hint), key, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping")
        return dict(value)
    scalar = _SCALARS.get(hint) if isinstance(hint, type) else None
    return value if scalar is None else scalar(value, key, where)


def _coerce_union(value: Any, args: tuple, key: str, where: str) -> Any:
    """`X | None` and other unions: None where allowed, else the first arm that accepts the value (the
    first arm's error when none does)."""
    if value is None and type(None) in args:
        return None
    errors = []
    for arm in (a for a in args if a is not type(None)):
        try:
            return _coerce(value, arm, key, where)
        except ConfigError as e:
            errors.append(e)
    raise errors[0]


def _coerce_sequence(value: Any, origin: type, args: tuple, key: str, where: str) -> Any:
    """`list[X]`, `tuple[X, ...]` and fixed-length `tuple[X, Y]`, element by element."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: {key} must be a list, not {type(value).__name__}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{where}: {key} must have {len(args)} entries")
        return tuple(_coerce(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    inner = args[0] if args else Any
    items = (_coerce(v, inner, f"{key}[{i}]", where) for i, v in enumerate(value))
    return type(value)(items) if origin is list else tuple(items)


def _coerce_bool(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _coerce_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {key} must be an integer, not {value!r}")
    return value


def _coerce_float(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, not {value!r}")
    return float(value)


def _coerce_str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string, not {value!r}")
    return value


_SCALARS = {bool: _coerce_bool, int: _coerce_int, float: _coerce_float, str: _coerce_str}


def _build(cls: type, data: dict[str, Any], where: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: unknown key {prefix}{key} (known in {prefix or 'top level'}: "
                              f"{', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}", where) for k, v in data.items()}
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`optim.lr=3e-4` -> (["optim", "lr"], 3e-4); the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    return data


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe (or start from the defaults when `path` is None), apply overrides, validate.
    Relative paths inside a recipe are relative to the working directory (recipes run from the repo
    root, as `make` does)."""
    data: dict[str, Any] = {}
    where = "recipe"
    if path is not None:
        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise ConfigError("recipe file does not exist", path=p)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a recipe must be a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    recipe = _build(Recipe, data, where)
    recipe.validate(where)
    return recipe


def check_files(recipe: Recipe, where: str = "recipe") -> None:
    """Missing input files are errors that name the key."""
    for i, m in enumerate(recipe.data.manifests):
        if not Path(m).is_file():
            raise ConfigError(f"{where}: data.manifests[{i}] does not exist: {m}")
    for key in ("init", "base"):
        value = getattr(recipe.model, key)
        if value is not None and not Path(value).exists():
            raise ConfigError(f"{where}: model.{key} does not exist: {value}")
