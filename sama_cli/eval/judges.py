"""VLM judges: an OpenAI-compatible endpoint (`openai:MODEL`) or a local transformers model
(`local:PATH`), with robust replies and a content-keyed cache.

Robustness: strict JSON schema where the endpoint supports it (`response_format`; an endpoint that
refuses it is asked again without it, a request that costs no retry), tolerant parsing otherwise (the first JSON object in the reply, fenced or in prose), bounded retries with exponential
backoff on rate limits (429), server errors (5xx), timeouts and unparseable replies, and a per-request
timeout. A reply that never parses is a failure carrying its raw text, never a score. Every raw reply
is returned for storing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sama_cli.core.errors import ConfigError
from sama_cli.eval.adapters import Request

API_KEY_ENV = "SAMA_JUDGE_API_KEY"  # falls back to OPENAI_API_KEY


@dataclass
class JudgeResult:
    scores: dict[str, float] | None
    raw: list[str] = field(default_factory=list)  # every reply text received, in order
    error: str | None = None
    attempts: int = 0
    cached: bool = False


def parse_scores(text: str, keys: list[str], scale: tuple[float, float]) -> dict[str, float]:
    """Scores for `keys` from a reply: strict JSON, or the first {...} object found in prose or a
    fenced block. Raises ValueError when no valid object with every key inside the scale is there."""
    candidates = [text.strip()]
    candidates += re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", text, flags=re.S)
    candidates += re.findall(r"\{[^{}]*\}", text, flags=re.S)
    return first_in_scale(_loads(candidates), lambda obj: {k: float(obj[k]) for k in keys}, scale,
                          "no JSON object with every criterion inside the scale")


def _loads(candidates: list[str]):
    """The candidates that parse as JSON, parsed, in order."""
    for c in candidates:
        try:
            yield json.loads(c)
        except json.JSONDecodeError:
            continue


def first_in_scale(objects, extract, scale: tuple[float, float], missing: str) -> dict[str, float]:
    """The scores `extract` takes from the first JSON object (dict) that has them all inside `scale`;
    an object it cannot read (KeyError, TypeError, ValueError) is skipped. ValueError(`missing`) if none."""
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        try:
            scores = extract(obj)
        except (KeyError, TypeError, ValueError):
            continue
        if all(scale[0] <= v <= scale[1] for v in scores.values()):
            return scores
    raise ValueError(missing)


def fit_image(frame: np.ndarray, max_side: int):
    """A (H, W, 3) uint8 frame as a PIL image whose longer side is at most `max_side` (never enlarged)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(frame))
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    return img


def encode_image(frame: np.ndarray, max_side: int) -> str:
    """A frame as a base64 JPEG data URL, the longer side at most `max_side`."""
    img = fit_image(frame, max_side)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class OpenAIJudge:
    """Chat completions with images, against any OpenAI-compatible endpoint (GPT-4o, Gemini's gateway,
    vLLM/SGLang serving Qwen2.5-VL)."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0,
                 retries: int = 4, backoff: float = 1.0, strict_schema: bool = True):
        try:
            import openai
        except ImportError:
            raise ConfigError("the openai judge needs the openai package: pip install 'sama-cli[bench]'") from None
        key = api_key or os.environ.get(API_KEY_ENV) or os.environ.get("OPENAI_API_KEY") or "none"
        self.openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)
        self.model, self.retries, self.backoff, self.strict_schema = model, retries, backoff, strict_schema
        self.name = f"openai:{model}"

    def _schema(self, keys: list[str], scale: tuple[float, float]) -> dict:
        props = {k: {"type": "number", "minimum": scale[0], "maximum": scale[1]} for k in keys}
        props["reason"] = {"type": "string"}
        return {"type": "json_schema", "json_schema": {"name": "scores", "strict": True, "schema": {
            "type": "object", "properties": props, "required": [*keys, "reason"], "additionalProperties": False}}}

    def messages(self, prompt: str, images: list[np.ndarray], max_side: int, request: Request) -> list[dict]:
        text = [{"type": "text", "text": prompt}]
        pictures = [{"type": "image_url", "image_url": {"url": encode_image(im, max_side)}} for im in images]
        system = [{"role": "system", "content": request.system}] if request.system else []
        return [*system, {"role": "user", "content": pictures + text if request.images_first else text + pictures}]

    def score(self, prompt: str, images: list[np.ndarray], keys: list[str], scale: tuple[float, float],
              max_side: int = 512, request: Request | None = None) -> JudgeResult:
        request = request or Request()
        parse = request.parse or (lambda text: parse_scores(text, keys, scale))
        messages = self.messages(prompt, images, max_side, request)
        result = JudgeResult(scores=None)
        attempt = 0
        while True:
            strict = self.strict_schema and request.schema
            result.attempts = attempt + 1
            kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
            if request.temperature is not None:
                kwargs["temperature"] = request.temperature
            if strict:
                kwargs["response_format"] = self._schema(keys, scale)
            try:
                reply = self.client.chat.completions.create(**kwargs)
                text = reply.choices[0].message.content or ""
                result.raw.append(text)
                result.scores = parse(text)
                result.error = None
                return result
            except (self.openai.BadRequestError, self.openai.UnprocessableEntityError) as e:
                if strict:  # the endpoint does not take a JSON schema (400/422): ask again without it at no
                    # attempt's cost, and remember that for later requests (a race between workers is harmless)
                    self.strict_schema = False
                    continue
                result.error = f"bad request: {e}"
                return result
            except (self.openai.RateLimitError, self.openai.InternalServerError, self.openai.APITimeoutError,
                    self.openai.APIConnectionError) as e:
                result.error = f"{type(e).__name__}: {e}"
            except ValueError as e:
                result.error = f"unparseable reply: {e}"
            except self.openai.APIStatusError as e:
                result.error = f"HTTP {e.status_code}: {e}"
                if e.status_code < 500:
                    return result
            if attempt >= self.retries:
                return result
            time.sleep(self.backoff * 2**attempt)
            attempt += 1


class LocalJudge:
    """A transformers vision-language model from a folder (e.g. Qwen2.5-VL-7B-Instruct), for offline
    clusters: chat template with the frames as images (the longer side at most `max_side`), greedy
    decoding, the same reply parsing. One model serves every worker thread: calls into it take turns
    (a lock), so `--workers` only overlaps decoding and metrics."""

    def __init__(self, processor, model, *, name: str, max_new_tokens: int = 256, retries: int = 1):
        self.processor, self.model = processor, model
        self.name, self.max_new_tokens, self.retries = name, max_new_tokens, retries
        self.lock = threading.Lock()

    @classmethod
    def from_folder(cls, path: str, *, device: str = "auto", **kwargs: Any) -> LocalJudge:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from sama_cli.core.runtime import resolve_device, resolve_dtype

        if not Path(path).is_dir():
            raise ConfigError(f"local judge folder not found: {path}")
        dev = resolve_device(device)
        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path, torch_dtype=resolve_dtype("auto", dev)).to(dev)
        model.eval()
        return cls(processor, model, name=f"local:{path}", **kwargs)

    def messages(self, prompt: str, n_images: int, request: Request | None = None) -> list[dict]:
        request = request or Request()
        system = [{"role": "system", "content": [{"type": "text", "text": request.system}]}] if request.system else []
        return [*system, {"role": "user", "content": [*({"type": "image"} for _ in range(n_images)),
                                                      {"type": "text", "text": prompt}]}]

    def generate(self, prompt: str, images: list[np.ndarray], max_side: int = 512, request: Request | None = None) -> str:
        import torch

        pictures = [fit_image(i, max_side) for i in images]  # outside the lock: workers resize in parallel
        with self.lock:  # one model, many workers: neither it nor a fast tokenizer may be entered twice at once
            chat = self.messages(prompt, len(images), request)
            text = self.processor.apply_chat_template(chat, add_generation_prompt=True)
            inputs = self.processor(text=[text], images=pictures, return_tensors="pt")
            inputs = inputs.to(self.model.device)
            with torch.no_grad():
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]

    def score(self, prompt: str, images: list[np.ndarray], keys: list[str], scale: tuple[float, float],
              max_side: int = 512, request: Request | None = None) -> JudgeResult:
        parse = (request.parse if request else None) or (lambda text: parse_scores(text, keys, scale))
        result = JudgeResult(scores=None)
        for attempt in range(self.retries + 1):
            result.attempts = attempt + 1
            text = self.generate(prompt, images, max_side, request)
            result.raw.append(text)
            try:
                result.scores = parse(text)
                result.error = None
                return result
            except ValueError as e:
                result.error = f"unparseable reply: {e}"
        return result


def make_judge(spec: str | None, *, base_url: str | None = None, timeout: float = 60.0, retries: int = 4,
               backoff: float = 1.0):
    if spec is None:
        return None
    if spec.startswith("openai:"):
        return OpenAIJudge(spec.split(":", 1)[1], base_url=base_url, timeout=timeout, retries=retries, backoff=backoff)
    if spec.startswith("local:"):
        return LocalJudge.from_folder(spec.split(":", 1)[1])
    raise ConfigError(f"judge must be openai:MODEL or local:PATH, not {spec!r}")


class JudgeCache:
    """One JSON file per (benchmark, sample, video content hash, judge, prompt version): concurrent
    workers never collide, an interrupted run resumes, a re-run costs nothing."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(*parts: str) -> str:
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def put(self, key: str, value: dict) -> None:
        from sama_cli.io.artifacts import atomic_write_text

        atomic_write_text(self.folder / f"{key}.json", json.dumps(value))
