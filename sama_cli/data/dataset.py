"""Training data: manifests with cached artifacts, shape buckets, a sampler that is a pure function of
(seed, step, rank), and collation into one-shape batches.

A row contributes
    target   `artifacts.target_latents`  (C, T, H, W) normalized latents        [required]
    source   `artifacts.source_latents`  (C, T', H, W)                           [edit rows, perturbed stage-0 rows]
    text     `artifacts.text`            (L, D) text embeddings, trimmed         [required]
    anchors  `artifacts.anchors`         (65 N, S) pooled SigLIP tokens          [required when SA is on]
Rows are grouped into buckets by (target shape, source shape): a batch is drawn from one bucket, so it
has one shape. One-frame rows (images) use the image batch size, the rest the video batch size.

Batch order (`data.batch_order`): `interleave` alternates image and video batches, image first (step 0
images, step 1 videos, ...), as the release's `--train_mode mix` ("image+video interleave",
diffsynth/trainers/utils.py wan_parser); within a kind the bucket is drawn by its rows' sampling mass.
`by_rows` draws every step's bucket by mass over all buckets (`image_ratio` > 0 fixes the image share).
Data of one kind only is that kind at every step either way.

The sampler keeps no state: the batch of step `s` is drawn from a generator seeded by (seed, s), and
rank r of W takes slice r of a global batch of W per-rank batches. Resuming at step s on the same number
of processes therefore continues exactly; on another number the global batch (and the per-rank noise
streams of the loop) change, and `train` warns.

Pretexts on the fly (`data.pretext_on_the_fly`): a batch of plain t2v rows draws one latent pretext
task (cube-inpaint or tube-shuffle, by `data.task_ratio`) from the step's generator, perturbs the target
latents into a source and switches to the task-prefixed caption embedding that `encode` stored beside
the plain one. Speed perturbation needs pixels: it comes from rows pre-perturbed by `sama perturb --mix`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sama_cli.core.errors import InputError
from sama_cli.data.pretext import LATENT_TASKS, TASKS, black_fill, perturb_latents
from sama_cli.io.artifacts import load_artifact, read_shapes
from sama_cli.io.manifest import read_manifest

# artifact meta key -> provenance key recorded with exported checkpoints (so `edit` finds the codec)
PROVENANCE_KEYS = {"latents": {"codec": "codec"}, "text-embeds": {"encoder": "text_encoder"},
                   "anchors": {"encoder": "semantic_encoder"}}
ARTIFACT_KEYS = {"target": "target_latents", "source": "source_latents", "text": "text", "anchors": "anchors"}


@dataclass
class Sample:
    id: str
    kind: str
    target: torch.Tensor  # (C, T, H, W)
    text: torch.Tensor  # (L, D)
    source: torch.Tensor | None = None  # (C, T', H, W)
    anchors: torch.Tensor | None = None  # (N_sem, S)
    task: str = "none"  # stage-0 pretext task, "none" for plain t2v / edit rows
    text_variants: dict[str, torch.Tensor] = field(default_factory=dict)  # task -> prefixed-caption embedding
    fill: float = 0.0  # the normalized latent value of black (cube-inpaint's fill)

    @property
    def bucket(self) -> tuple:
        return (tuple(self.target.shape), None if self.source is None else tuple(self.source.shape),
                None if self.anchors is None else tuple(self.anchors.shape))


@dataclass
class Batch:
    target: torch.Tensor  # (B, C, T, H, W)
    text: torch.Tensor  # (B, text_len, D), zero-padded
    source: torch.Tensor | None  # (B, C, T', H, W)
    anchors: torch.Tensor | None  # (B, N_sem, S)
    ids: list[str]
    tasks: list[str]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Batch:
        mv = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        return Batch(mv(self.target), mv(self.text), mv(self.source), mv(self.anchors), self.ids, self.tasks)

    def __len__(self) -> int:
        return self.target.shape[0]


class LazySamples(Sequence):
    """The dataset's samples read on access: only each row's artifact paths stay in memory; a batch
    reads its rows' files when the sampler draws them (data sets larger than RAM)."""

    def __init__(self, rows: list[tuple[dict[str, Any], str]], need_anchors: bool):
        self.rows, self.need_anchors = rows, need_anchors

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row, where = self.rows[i]
        return ArtifactDataset._load_row(row, where, self.need_anchors, {})


class ArtifactDataset:
    """All rows of the given manifests. Eager (default): every artifact read once into memory (toy and
    cached-latent scale). `lazy`: only paths and the tensor shapes from the safetensors headers are
    kept, and a sample is read when a batch draws it; the buckets, the sampler and so the batches are
    the same either way."""

    def __init__(self, manifests: list[str | Path], *, need_anchors: bool, weights: list[float] | None = None,
                 splits: list[str] | None = None, kinds: list[str] | None = None, lazy: bool = False):
        self.samples: Sequence[Sample] = []
        keys: list[tuple] = []
        lazy_rows: list[tuple[dict[str, Any], str]] = []
        self.weights: list[float] = []
        self.provenance: dict[str, Any] = {}  # codec / text encoder the artifacts were made with
        for m_index, path in enumerate(manifests):
            manifest = read_manifest(path)
            for line, row in enumerate(manifest.rows, start=1):
                if splits and row.get("split", "train") not in splits:
                    continue  # e.g. held-out rows stay out of training
                if kinds and row["kind"] not in kinds:
                    continue  # e.g. stage 0 leaves the video edits out
                where = f"{path}:{line}"
                if lazy:
                    keys.append(self._row_bucket(row, where, need_anchors, self.provenance))
                    lazy_rows.append((row, where))
                else:
                    sample = self._load_row(row, where, need_anchors, self.provenance)
                    self.samples.append(sample)  # type: ignore[attr-defined]
                    keys.append(sample.bucket)
                self.weights.append(weights[m_index] if weights else 1.0)
        if lazy:
            self.samples = LazySamples(lazy_rows, need_anchors)
        if not self.samples:
            raise InputError(f"no training rows in {', '.join(map(str, manifests))}")
        # a model trained at one pixel size (the toy world: 32x32) records it, so `sama edit` works at that
        # size instead of the release's ~480x832 bucket; data of several buckets records none
        sizes = self.provenance.pop("_sizes", set())
        if len(sizes) == 1:
            self.provenance["working_size"] = list(next(iter(sizes)))
        self.buckets: dict[tuple, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            self.buckets[key].append(i)
        self.bucket_keys = sorted(self.buckets, key=repr)  # a fixed order, independent of dict history

    @staticmethod
    def _row_bucket(row: dict[str, Any], where: str, need_anchors: bool, provenance: dict[str, Any]) -> tuple:
        """A row's `Sample.bucket` and provenance from its artifacts' headers alone (lazy mode)."""
        shapes: dict[str, tuple | None] = {}
        for name, kind, tensor, required in (("target", "latents", "latents", True), ("text", "text-embeds", "embeds", True),
                                             ("source", "latents", "latents", False),
                                             ("anchors", "anchors", "tokens", need_anchors)):
            path = _artifact_path(row, where, name, required)
            if path is None:
                shapes[name] = None
                continue
            meta, found = read_shapes(path, kind)
            _note_provenance(name, kind, meta, provenance)
            shapes[name] = found.get(tensor)
        return shapes["target"], shapes["source"], shapes["anchors"]

    @staticmethod
    def _load_row(row: dict[str, Any], where: str, need_anchors: bool, provenance: dict[str, Any]) -> Sample:

        loaded: dict[str, Any] = {}

        def get(name: str, kind: str, tensor: str, required: bool) -> torch.Tensor | None:
            path = _artifact_path(row, where, name, required)
            if path is None:
                return None
            art = loaded[name] = load_artifact(path, kind)
            _note_provenance(name, kind, art.meta, provenance)
            return art[tensor].float()

        sample = Sample(
            id=row["id"], kind=row["kind"],
            target=get("target", "latents", "latents", True),
            text=get("text", "text-embeds", "embeds", True),
            source=get("source", "latents", "latents", False),
            anchors=get("anchors", "anchors", "tokens", need_anchors),
            task=(row.get("pretext") or {}).get("task", "none") if isinstance(row.get("pretext"), dict) else "none",
        )
        # prefixed-caption embeddings written by `encode` for plain t2v rows: on-the-fly latent pretexts
        sample.text_variants = {k.split("@", 1)[1]: v.float() for k, v in loaded["text"].tensors.items() if "@" in k}
        sample.fill = black_fill(loaded["target"].meta.get("codec"))
        return sample

    def __len__(self) -> int:
        return len(self.samples)


def _artifact_path(row: dict[str, Any], where: str, name: str, required: bool) -> str | None:
    """The row's artifact file for `name` (target, text, source, anchors); a missing required one is an
    error naming the manifest line and the command that makes it."""
    path = (row.get("artifacts") or {}).get(ARTIFACT_KEYS[name])
    if path is None and required:
        raise InputError(f"{where}: row {row['id']!r} has no artifacts.{ARTIFACT_KEYS[name]} "
                         f"(run `sama encode`{' and `sama anchor`' if name == 'anchors' else ''} first)")
    return path


def _note_provenance(name: str, kind: str, meta: dict[str, Any], provenance: dict[str, Any]) -> None:
    """What exported checkpoints record about the data: codec, encoders, and the targets' pixel sizes."""
    for key in PROVENANCE_KEYS.get(kind, ()):
        if key in meta:
            provenance.setdefault(PROVENANCE_KEYS[kind][key], meta[key])
    if name == "target" and meta.get("size"):
        provenance.setdefault("_sizes", set()).add(tuple(meta["size"]))


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, step, stream): the basis of exact resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + stream * 104_729) % (2**63 - 1))


BATCH_ORDERS = ("interleave", "by_rows")


class BucketSampler:
    """Step -> the indices of this rank's share of that step's global batch. Every rank draws the same
    bucket at a step (one global batch of one shape) and takes its slice."""

    def __init__(self, dataset: ArtifactDataset, *, video_batch: int, image_batch: int, seed: int,
                 rank: int = 0, world: int = 1, image_ratio: float = 0.0, order: str = "by_rows"):
        if order not in BATCH_ORDERS:
            raise ValueError(f"batch order must be one of {BATCH_ORDERS}, not {order!r}")
        self.dataset, self.seed, self.rank, self.world = dataset, seed, rank, world
        self.video_batch, self.image_batch, self.order = video_batch, image_batch, order
        mass = torch.tensor([sum(dataset.weights[i] for i in dataset.buckets[k]) for k in dataset.bucket_keys],
                            dtype=torch.float64)
        is_image = torch.tensor([self.is_image(k) for k in dataset.bucket_keys])
        self.mixed = bool(is_image.any() and (~is_image).any())  # both images and videos in the data
        # interleave: per kind, its buckets by their mass (the other kind's at 0)
        self.kind_probs = {kind: torch.where(is_image == kind, mass, 0.0) / mass[is_image == kind].sum()
                           for kind in (True, False) if (is_image == kind).any()}
        # by_rows with image_ratio > 0: a step is an image step with that probability; 0: buckets are drawn
        # by their sampling mass alone
        if 0 < image_ratio < 1 and self.mixed:
            mass = torch.where(is_image, mass / mass[is_image].sum() * image_ratio,
                               mass / mass[~is_image].sum() * (1 - image_ratio))
        self.bucket_probs = mass / mass.sum()

    def kind_at(self, step: int) -> str | None:
        """`image` or `video` when the batch order fixes the kind of step `step` (interleave over data of
        both kinds: images at even steps), None when the draw decides."""
        if self.order != "interleave" or not self.mixed:
            return None
        return "image" if step % 2 == 0 else "video"

    @staticmethod
    def is_image(key: tuple) -> bool:
        return key[0][1] == 1  # one latent frame

    def batch_size(self, key: tuple) -> int:
        return self.image_batch if self.is_image(key) else self.video_batch

    def indices(self, step: int) -> list[int]:
        g = step_generator(self.seed, step, stream=1)
        kind = self.kind_at(step)
        probs = self.bucket_probs if kind is None else self.kind_probs[kind == "image"]
        key = self.dataset.bucket_keys[int(torch.multinomial(probs, 1, generator=g))]
        members = self.dataset.buckets[key]
        per_rank = self.batch_size(key)
        total = per_rank * self.world
        weights = torch.tensor([self.dataset.weights[i] for i in members], dtype=torch.float64)
        picks = torch.multinomial(weights, total, replacement=len(members) < total, generator=g)
        chosen = [members[int(p)] for p in picks]
        return chosen[self.rank * per_rank : (self.rank + 1) * per_rank]


def collate(samples: list[Sample], text_len: int) -> Batch:
    """Stack one bucket's samples; text embeddings are zero-padded (or cut) to `text_len` tokens."""
    def pad(t: torch.Tensor) -> torch.Tensor:
        out = t.new_zeros(text_len, t.shape[-1])
        n = min(text_len, t.shape[0])
        out[:n] = t[:n]
        return out

    stack = lambda xs: None if xs[0] is None else torch.stack(xs)  # noqa: E731
    return Batch(
        target=torch.stack([s.target for s in samples]),
        text=torch.stack([pad(s.text) for s in samples]),
        source=stack([s.source for s in samples]),
        anchors=stack([s.anchors for s in samples]),
        ids=[s.id for s in samples],
        tasks=[s.task for s in samples],
    )


def pretext_on_the_fly(samples: list[Sample], task_ratio: list[float], g: torch.Generator,
                       options: dict[str, dict[str, Any]] | None = None) -> tuple[list[Sample], str]:
    """One latent pretext task for a whole batch of plain t2v rows (a batch keeps one shape): drawn with
    `task_ratio` (none : inpaint : speed : shuffle) over the tasks that have a latent fast path: speed
    changes the frame count through the codec, so its share comes from pre-perturbed rows made by
    `sama perturb --mix` and is left out of the draw here. Other batches pass through unchanged."""
    if not samples or any(s.kind != "t2v" or s.source is not None or not s.text_variants for s in samples):
        return samples, "none"
    names = ("none", *LATENT_TASKS)
    weights = [task_ratio[TASKS.index(n)] for n in names]
    if sum(weights) <= 0:
        return samples, "none"
    task = names[int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1, generator=g))]
    if task == "none":
        return samples, task
    out = []
    for s in samples:
        source, _ = perturb_latents(s.target, task, g, fill=s.fill, **(options or {}).get(task, {}))
        out.append(dataclasses.replace(s, source=source, text=s.text_variants[task], task=task))
    return out, task
