"""The toy world (docs/sama.md §8): small synthetic videos with exact ground truth.

A scene is a background (flat, or a two-colour gradient) and 1-3 shapes (circle, square, triangle) in
named colours moving at constant velocity and bouncing off the frame edges. Rendering has hard edges,
so masks are exact. An edit makes a target scene from the source scene with one change (recolour,
replace shape, remove, add, background, global style) and knows which pixels may change.

Held-out split: a fixed fifth of the colour x shape combinations (`HELDOUT_COMBOS`) never appears as
the edited object *after* the edit in train rows; held-out rows are the edits that produce one. That
tests whether edits generalise to combinations never seen as targets.

The oracle (`oracle_scores`) scores any edited video against the scene's truth: edit accuracy in the
edit mask, preservation PSNR outside it, trajectory error of the edited object, PSNR to the target.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from sama_cli.core.errors import InputError

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (240, 220, 40),
    "magenta": (220, 50, 220), "cyan": (40, 220, 230), "white": (245, 245, 245), "orange": (250, 140, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (10, 10, 10), "gray": (120, 120, 120), "navy": (20, 30, 80), "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle")
EDIT_KINDS = ("recolour", "replace", "remove", "add", "background", "style")
# A colour no default scene or edit uses, and the edit kind that paints an object in it: what the embedded model
# never saw, for a LoRA to learn (issue 18, `make toy-lora`). `sama synth` makes these edits only when asked
# (--kind-weights recolour_new=N): the default data are unchanged.
NEW_COLOURS: dict[str, tuple[int, int, int]] = {"purple": (130, 40, 190)}
COLOURS = {**PALETTE, **NEW_COLOURS}
EXTRA_KINDS = ("recolour_new",)
ALL_KINDS = EDIT_KINDS + EXTRA_KINDS
STYLES = ("invert", "grayscale")
# "add" puts a small object on one that is there ("put a small blue circle on the red square"): it sits on it,
# centred, ADD_SCALE x its radius, and moves with it. Source and words determine the target, and the place is
# one a DiT can find: Wan's blocks know positions only relative to content (RoPE, no absolute embedding), so a
# place named by the frame ("at the top left") cannot be found on a flat background.
ADD_SCALE = 0.7
# A fixed fifth of the 24 colour x shape combinations: held out as post-edit objects.
HELDOUT_COMBOS = frozenset({("red", "triangle"), ("blue", "square"), ("yellow", "circle"),
                            ("cyan", "triangle"), ("magenta", "square")})
TOLERANCE = 48  # L_inf distance (0-255) under which a pixel counts as the right colour


@dataclass
class Obj:
    shape: str
    colour: str
    radius: float
    x: float  # centre at frame 0, pixels
    y: float
    vx: float  # pixels per frame
    vy: float
    on: int | None = None  # sits on this object of the scene (index): its centre is that object's, always


    def centre(self, t: int, width: int, height: int) -> tuple[float, float]:
        """Centre at frame t with elastic bounces inside [r, size - r] (a triangle-wave fold)."""
        def fold(p0: float, v: float, lo: float, hi: float) -> float:
            span = hi - lo
            if span <= 0:
                return lo
            u = (p0 - lo + v * t) % (2 * span)
            return lo + (u if u <= span else 2 * span - u)

        return (fold(self.x, self.vx, self.radius, width - self.radius),
                fold(self.y, self.vy, self.radius, height - self.radius))


def centre_of(scene: Scene, i: int, t: int) -> tuple[float, float]:
    """Centre of object i at frame t: its own bouncing path, or the path of the object it sits on."""
    obj = scene.objects[i]
    if obj.on is not None:
        return centre_of(scene, obj.on, t)
    return obj.centre(t, scene.width, scene.height)


@dataclass
class Scene:
    height: int
    width: int
    frames: int
    background: str
    gradient: str | None = None  # a second background colour for a vertical gradient
    objects: list[Obj] = field(default_factory=list)
    style: str | None = None  # global style applied after rendering

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        return cls(**{**d, "objects": [Obj(**o) for o in d["objects"]]})


# ---- rendering ------------------------------------------------------------------------------------
def _shape_mask(obj: Obj, cx: float, cy: float, yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
    r = obj.radius
    dx, dy = xx - cx, yy - cy
    if obj.shape == "circle":
        return dx * dx + dy * dy <= r * r
    if obj.shape == "square":
        return (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85)
    # upward triangle inscribed in the circle of radius r
    top, base = -r, r * 0.6
    inside_y = (dy >= top) & (dy <= base)
    half = (dy - top) / (base - top) * r * 0.95
    return inside_y & (dx.abs() <= half)


def _grid(scene: Scene) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(scene.height, dtype=torch.float32) + 0.5,
                            torch.arange(scene.width, dtype=torch.float32) + 0.5, indexing="ij")
    return yy, xx


def object_masks(scene: Scene) -> torch.Tensor:
    """(F, H, W) int64: index of the topmost object at each pixel, -1 for background."""
    yy, xx = _grid(scene)
    out = torch.full((scene.frames, scene.height, scene.width), -1, dtype=torch.long)
    for t in range(scene.frames):
        for i, obj in enumerate(scene.objects):
            cx, cy = centre_of(scene, i, t)
            out[t][_shape_mask(obj, cx, cy, yy, xx)] = i
    return out


def _background(scene: Scene) -> torch.Tensor:
    top = torch.tensor(BACKGROUNDS[scene.background], dtype=torch.float32)
    if scene.gradient is None:
        return top.expand(scene.height, scene.width, 3)
    bottom = torch.tensor(BACKGROUNDS[scene.gradient], dtype=torch.float32)
    w = torch.linspace(0, 1, scene.height)[:, None, None]
    return (top * (1 - w) + bottom * w).round().expand(scene.height, scene.width, 3)


def apply_style(frames: torch.Tensor, style: str | None) -> torch.Tensor:
    if style is None:
        return frames
    if style == "invert":
        return 255 - frames
    if style == "grayscale":
        g = (frames.float() * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True).round()
        return g.clamp(0, 255).to(torch.uint8).expand_as(frames).contiguous()
    raise ValueError(f"unknown style {style!r}")


def render(scene: Scene) -> torch.Tensor:
    """(F, H, W, 3) uint8, exact and deterministic."""
    masks = object_masks(scene)
    frames = _background(scene).round().to(torch.uint8).expand(scene.frames, -1, -1, -1).clone()
    for i, obj in enumerate(scene.objects):
        frames[masks == i] = torch.tensor(COLOURS[obj.colour], dtype=torch.uint8)
    return apply_style(frames, scene.style)


# ---- edits ----------------------------------------------------------------------------------------
@dataclass
class Edit:
    kind: str
    target_index: int | None  # the edited object in the *source* scene (None: add/background/style)
    new_index: int | None  # the edited object in the *target* scene (None: remove/background/style)
    params: dict[str, Any]
    instruction: str


def _describe(obj: Obj) -> str:
    return f"{obj.colour} {obj.shape}"


# Objects live on the pixel grid: whole-pixel radius, centre and velocity (one of the 8 king's moves a frame),
# so a shape is one of a few sprites at one of 16 offsets inside a 4x4-pixel token, in every frame (a bounce
# off [r, size - r] keeps whole pixels). Sub-pixel places made every frame of every object a new pattern to
# draw, and object edits were learned far slower than whole-frame ones (the model card, issue 19).
MOVES = tuple((dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy)


def radii(side: int, grid: int = 1) -> list[int]:
    """The whole-pixel radii of objects in a `side`-pixel frame whose objects live on a `grid`-pixel lattice:
    5-6 px at 32, keeping those that stay on the lattice when they bounce (a fold at r and side - r maps the
    lattice onto itself when 2r and 2(side - 2r) are multiples of the grid: grid 4 keeps even radii)."""
    lo, hi = max(2, round(0.15 * side)), max(2, round(0.19 * side))
    keep = [r for r in range(lo, hi + 1) if (2 * r) % grid == 0 and (2 * (side - 2 * r)) % grid == 0]
    if not keep:
        raise ValueError(f"no object radius in {lo}-{hi} px stays on a {grid}-px grid in a {side}-px frame")
    return keep


def random_object(rng: random.Random, scene: Scene, colour: str | None = None, shape: str | None = None,
                  grid: int = 1) -> Obj:
    """A new object with its centre on the `grid`-pixel lattice and a velocity of one lattice step in one of
    the 8 king's directions (grid 1 draws exactly what it drew before the option existed)."""
    side = min(scene.height, scene.width)
    if grid == 1:
        r = rng.randint(max(2, round(0.15 * side)), max(2, round(0.19 * side)))  # 5-6 px at 32
    else:
        r = rng.choice(radii(side, grid))
    vx, vy = rng.choice(MOVES)

    def place(size: int) -> float:
        return float(grid * rng.randint(-(-r // grid), (size - r) // grid))

    return Obj(shape=shape or rng.choice(SHAPES), colour=colour or rng.choice(list(PALETTE)), radius=float(r),
               x=place(scene.width), y=place(scene.height), vx=float(grid * vx), vy=float(grid * vy))


TEMPLATES = {
    "recolour": ["make the {old} {new_colour}", "change the colour of the {old} to {new_colour}",
                 "turn the {old} {new_colour}", "paint the {old} {new_colour}"],
    "replace": ["replace the {old} with a {new}", "turn the {old} into a {new}", "change the {old} to a {new}"],
    "remove": ["remove the {old}", "delete the {old}", "take the {old} out of the video"],
    "add": ["add a small {new} on the {old}", "put a small {new} on the {old}", "place a small {new} on the {old}"],
    "background": ["change the background to {bg}", "make the background {bg}", "turn the background {bg}"],
    "style": {"invert": ["invert the colours", "make it a colour negative", "invert the video"],
              "grayscale": ["make it grayscale", "turn the video black and white", "remove all colour"]},
}


def make_edit(rng: random.Random, src: Scene, kind: str, want_heldout: bool | None) -> tuple[Scene, Edit] | None:
    """Apply one edit of `kind`. `want_heldout`: True/False to require that the post-edit object is /
    is not a held-out combination; None for edits without a post-edit object. None if impossible."""
    tgt = replace(src, objects=[replace(o) for o in src.objects])
    used = {(o.colour, o.shape) for o in src.objects}

    def ok(colour: str, shape: str) -> bool:
        return (colour, shape) not in used and (want_heldout is None or ((colour, shape) in HELDOUT_COMBOS) == want_heldout)

    if kind in ("recolour", "replace", "remove", "recolour_new"):
        i = rng.randrange(len(src.objects))
        old = src.objects[i]
        if kind == "remove":
            if len(src.objects) < 2 or want_heldout:
                return None
            del tgt.objects[i]
            text = rng.choice(TEMPLATES["remove"]).format(old=_describe(old))
            return tgt, Edit(kind, i, None, {}, text)
        if kind == "recolour_new":
            options = [(c, old.shape) for c in NEW_COLOURS]
        else:
            options = ([(c, old.shape) for c in PALETTE if c != old.colour] if kind == "recolour"
                       else [(old.colour, s) for s in SHAPES if s != old.shape])
            options = [o for o in options if ok(*o)]
        if not options:
            return None
        colour, shape = rng.choice(options)
        tgt.objects[i] = replace(old, colour=colour, shape=shape)
        text = rng.choice(TEMPLATES["recolour" if kind == "recolour_new" else kind]).format(
            old=_describe(old), new_colour=colour, new=f"{colour} {shape}")
        return tgt, Edit(kind, i, i, {"colour": colour, "shape": shape}, text)
    if kind == "add":
        if len(src.objects) >= 3:
            return None
        options = [(c, s) for c in PALETTE for s in SHAPES if ok(c, s)]
        j = rng.randrange(len(src.objects))
        host = src.objects[j]
        options = [(c, s) for c, s in options if c != host.colour]  # a red circle on a red square would not show
        colour, shape = rng.choice(options)
        tgt.objects.append(Obj(shape=shape, colour=colour, radius=round(ADD_SCALE * host.radius, 2),
                               x=host.x, y=host.y, vx=host.vx, vy=host.vy, on=j))
        text = rng.choice(TEMPLATES["add"]).format(new=f"{colour} {shape}", old=_describe(host))
        return tgt, Edit("add", None, len(tgt.objects) - 1, {"colour": colour, "shape": shape}, text)
    if want_heldout:
        return None
    if kind == "background":
        bg = rng.choice([b for b in BACKGROUNDS if b != src.background])
        tgt.background, tgt.gradient = bg, None
        return tgt, Edit("background", None, None, {"background": bg},
                         rng.choice(TEMPLATES["background"]).format(bg=bg))
    style = rng.choice(STYLES)
    tgt.style = style
    return tgt, Edit("style", None, None, {"style": style}, rng.choice(TEMPLATES["style"][style]))


def edit_mask(src: Scene, tgt: Scene, edit: Edit) -> torch.Tensor:
    """(F, H, W) bool: the pixels the edit may change. Object edits: the union of the edited object's
    old and new masks; background edits: the background pixels; style edits: the whole frame."""
    if edit.kind == "style":
        return torch.ones(src.frames, src.height, src.width, dtype=torch.bool)
    ms, mt = object_masks(src), object_masks(tgt)
    if edit.kind == "background":
        return (ms == -1) | (mt == -1)
    mask = torch.zeros_like(ms, dtype=torch.bool)
    if edit.target_index is not None:
        mask |= ms == edit.target_index
    if edit.new_index is not None:
        mask |= mt == edit.new_index
    return mask


CAPTIONS = ["{things} moving over {bg} background", "{things} drifting across {bg} background",
            "a video of {things} on {bg} background", "{bg} background with {things} bouncing around"]


def caption(scene: Scene) -> str:
    """A t2v caption. The wording is picked by a hash of the scene's content, not by the generator's
    random stream, so that every scene (and so every clip and edit) stays what the seed makes it."""
    things = [f"{'an' if _describe(o)[0] in 'aeiou' else 'a'} {_describe(o)}" for o in scene.objects]
    listed = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    bg = f"a {scene.background} to {scene.gradient} gradient" if scene.gradient else f"a {scene.background}"
    where = ",".join(f"{o.x}:{o.y}" for o in scene.objects)
    template = CAPTIONS[zlib.crc32(f"{listed}|{bg}|{where}".encode()) % len(CAPTIONS)]
    return template.format(things=listed, bg=bg)


def random_scene(rng: random.Random, height: int, width: int, frames: int, n_objects: int | None = None,
                 grid: int = 1) -> Scene:
    scene = Scene(height=height, width=width, frames=frames, background=rng.choice(list(BACKGROUNDS)))
    if rng.random() < 0.25:
        scene.gradient = rng.choice([b for b in BACKGROUNDS if b != scene.background])
    n = n_objects or rng.randint(1, 3)
    combos = set()
    tries = 0
    while len(scene.objects) < n:
        tries += 1
        if tries % 1000 == 0:  # a dead end (on a coarse grid the first objects can leave no room): start again
            scene.objects, combos = [], set()
        o = random_object(rng, scene, grid=grid)
        # not started on top of another: on the pixel grid, two at one place with one velocity hide each other
        # in every frame, and an edit of the hidden one would change nothing
        crowded = any(math.hypot(o.x - p.x, o.y - p.y) < 0.75 * (o.radius + p.radius) for p in scene.objects)
        if (o.colour, o.shape) not in combos and not crowded:
            combos.add((o.colour, o.shape))
            scene.objects.append(o)
    return scene


# ---- the oracle -----------------------------------------------------------------------------------
def _psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    diff = (a.float() - b.float()) ** 2
    if mask is not None:
        if not mask.any():
            return 100.0
        diff = diff[mask]
    mse = float(diff.mean())
    return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse))


def load_scene_record(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"not a readable scene record ({e})", path=path) from None
    for key in ("source", "target", "edit"):
        if key not in record:
            raise InputError(f"scene record has no {key!r}", path=path)
    return record


def oracle_hits(pred: torch.Tensor, scene_record: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What edit accuracy counts, pixel by pixel: (close, mask, truth) with close (T, H, W) the pixels of
    `pred` within TOLERANCE (L_inf) of the true target, mask (T, H, W) the edit mask, truth (T, H, W, 3)
    uint8 the rendered target."""
    src, tgt = Scene.from_dict(scene_record["source"]), Scene.from_dict(scene_record["target"])
    truth = render(tgt)
    if tuple(pred.shape) != tuple(truth.shape):
        raise InputError(f"edited video has shape {tuple(pred.shape)}, the scene is {tuple(truth.shape)}")
    mask = edit_mask(src, tgt, Edit(**scene_record["edit"]))
    close = (pred.int() - truth.int()).abs().amax(-1) <= TOLERANCE
    return close, mask, truth


def oracle_scores(pred: torch.Tensor, scene_record: dict[str, Any]) -> dict[str, float]:
    """Exact scores of an edited video `pred` (T, H, W, 3) uint8 against the scene's truth.

    edit_accuracy      fraction of edit-mask pixels within TOLERANCE (L_inf) of the true target
    preservation_psnr  PSNR to the true target outside the edit mask (100 = exact)
    trajectory_error   mean distance (px) between the true centre of the object that carries the edit
                       (the new/recoloured one; for remove/background/style edits, each remaining
                       object) and the centroid of pred pixels of its true colour near its true path
    psnr               PSNR to the true target over the whole video
    preservation_ssim  SSIM to the true target outside the edit mask (1 = exact)
    """
    from sama_cli.eval.metrics import ssim

    close, mask, truth = oracle_hits(pred, scene_record)
    tgt, edit = Scene.from_dict(scene_record["target"]), Edit(**scene_record["edit"])
    accuracy = float(close[mask].float().mean()) if mask.any() else 1.0
    tracked = [edit.new_index] if edit.new_index is not None else list(range(len(tgt.objects)))
    return {
        "edit_accuracy": accuracy,
        "preservation_psnr": _psnr(pred, truth, ~mask),
        "trajectory_error": _trajectory_error(pred, tgt, tracked),
        "psnr": _psnr(pred, truth),
        "preservation_ssim": ssim(pred, truth, ~mask),
    }


def _trajectory_error(pred: torch.Tensor, scene: Scene, tracked: list[int]) -> float:
    if not tracked:
        return 0.0
    yy, xx = _grid(scene)
    styled = apply_style(torch.tensor([[list(COLOURS[o.colour]) for o in scene.objects]], dtype=torch.uint8)[None],
                         scene.style)[0, 0] if scene.objects else None
    errors = []
    diag = math.hypot(scene.height, scene.width)
    for t in range(scene.frames):
        for i in tracked:
            obj = scene.objects[i]
            cx, cy = centre_of(scene, i, t)
            near = (xx - cx) ** 2 + (yy - cy) ** 2 <= (2 * obj.radius) ** 2
            colour = styled[i].int()
            hit = near & ((pred[t].int() - colour).abs().amax(-1) <= TOLERANCE)
            if hit.any():
                errors.append(math.hypot(float(xx[hit].mean()) - cx, float(yy[hit].mean()) - cy))
            else:
                errors.append(diag / 2)  # the object is missing: a large, bounded error
    return sum(errors) / len(errors)


# ---- datasets -------------------------------------------------------------------------------------
@dataclass
class ToySample:
    id: str
    kind: str  # video_edit | image_edit | t2v
    split: str
    source: Scene | None
    target: Scene
    edit: Edit | None

    def record(self, fps: float) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "split": self.split, "fps": fps,
                "source": None if self.source is None else self.source.to_dict(), "target": self.target.to_dict(),
                "edit": None if self.edit is None else asdict(self.edit),
                "instruction": None if self.edit is None else self.edit.instruction,
                "caption": caption(self.target)}


def kind_cycle(weights: dict[str, int] | None = None) -> tuple[str, ...]:
    """The repeating sequence of edit kinds that samples take in turn: each kind `weights[kind]` times
    (default 1 each, EDIT_KINDS order; 0 for EXTRA_KINDS), so {"recolour": 2} makes recolour, recolour,
    replace, ... style."""
    weights = weights or {}
    unknown = set(weights) - set(ALL_KINDS)
    if unknown:
        raise ValueError(f"unknown edit kind {sorted(unknown)[0]!r} (known: {', '.join(ALL_KINDS)})")
    if any(int(w) != w or w < 0 for w in weights.values()):
        raise ValueError("edit kind weights are whole numbers >= 0")
    cycle = tuple(k for k in ALL_KINDS for _ in range(int(weights.get(k, 1 if k in EDIT_KINDS else 0))))
    if not cycle:
        raise ValueError("every edit kind has weight 0")
    return cycle


def generate(n_video: int, n_image: int, n_t2v: int, *, seed: int, size: int = 32, frames: int = 9,
             heldout_frac: float = 0.2, test_frac: float = 0.15,
             kind_weights: dict[str, int] | None = None, grid: int = 1) -> list[ToySample]:
    """Deterministic toy samples: video edits (every edit kind), image edits (one-frame scenes) and
    t2v clips. Each sample draws from its own seeded RNG, so the i-th sample does not change when
    counts change. `kind_weights` (kind_cycle): how often each edit kind comes round. `grid`: objects' centres
    and steps lie on this pixel lattice (random_object). Splits: `heldout` (the edit produces a held-out
    colour/shape combination: tests composition), `test` (a share `test_frac` of the other edits: clips never trained on, combinations
    seen in training), `train` (the rest)."""
    out: list[ToySample] = []
    cycle = kind_cycle(kind_weights)
    for i in range(n_video + n_image):
        image = i >= n_video
        rng = random.Random(f"{seed}:edit:{i}")
        kind = cycle[i % len(cycle)]
        heldout = kind in ("recolour", "replace", "add") and rng.random() < heldout_frac * len(EDIT_KINDS) / 3
        for _ in range(100):
            src = random_scene(rng, size, size, 1 if image else frames, grid=grid)
            made = make_edit(rng, src, kind, heldout if kind in ("recolour", "replace", "add") else None)
            # an edit must change something (grayscale of a white square on white does not)
            if made is not None and not torch.equal(render(src), render(made[0])):
                break
        else:  # pragma: no cover - every kind is possible from some scene
            raise RuntimeError(f"could not make a {kind} edit")
        tgt, edit = made
        sid = f"{'img' if image else 'vid'}{i:04d}"
        split = "heldout" if heldout else ("test" if random.Random(f"{seed}:split:{i}").random() < test_frac
                                            else "train")
        out.append(ToySample(sid, "image_edit" if image else "video_edit", split, src, tgt, edit))
    for i in range(n_t2v):
        rng = random.Random(f"{seed}:t2v:{i}")
        out.append(ToySample(f"t2v{i:04d}", "t2v", "train", None, random_scene(rng, size, size, frames, grid=grid), None))
    return out
