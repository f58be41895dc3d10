"""Prompt cleaning before tokenising, as the release's Wan tokenizer does it (diffsynth/prompters/
wan_prompter.py: `whitespace_clean(basic_clean(text))` = ftfy.fix_text, html.unescape twice, strip,
whitespace runs -> one space). Expected strings are written by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sama_cli.data.pretext import TASK_PREFIXES, prefixed
from sama_cli.model.text_encoder import TextEncoder, clean_prompt, tiny_tokenizer, tiny_umt5


@pytest.mark.parametrize(("raw", "clean"), [
    ("schÃ¶n", "schön"),  # UTF-8 read as Latin-1 (mojibake): ftfy undoes it
    ("make it schÃ¶n", "make it schön"),
    ("&amp;amp;", "&"),  # escaped twice
    ("a <b> &amp;amp; c", "a <b> & c"),  # ftfy leaves text with tags alone: the two unescapes do it
    ("  paint\tthe  square\n\nred \r\n now  ", "paint the square red now"),
    ("\n\t ", ""),
    ("  schÃ¶n\t\tmit &amp;quot;Zitat&amp;quot;\n", 'schön mit "Zitat"'),
])
def test_clean_prompt_by_hand(raw: str, clean: str) -> None:
    assert clean_prompt(raw) == clean


class SpyTokenizer:
    """Records the texts it is asked to tokenise, then tokenises them with the tiny tokenizer."""

    def __init__(self) -> None:
        self.inner = tiny_tokenizer()
        self.seen: list[list[str]] = []

    def __len__(self) -> int:
        return len(self.inner)

    def __call__(self, texts, **kwargs):
        self.seen.append(list(texts))
        return self.inner(texts, **kwargs)


def test_the_tiny_encoder_knows_word_order() -> None:
    """Issue 19: the DiT's cross-attention has no positions, so word order must be in the text tokens. In
    "make the red circle magenta" / "make the magenta circle red" the two "red"s must differ (a random
    UMT5 gave cosine 0.995, a bag of words), while one word in the same neighbourhood stays the same."""
    tok = tiny_tokenizer()
    te = TextEncoder(tok, tiny_umt5(len(tok)), max_length=16)
    a, b, c = te(["make the red circle magenta", "make the magenta circle red", "paint the red circle magenta"])
    cos = torch.nn.functional.cosine_similarity
    assert float(cos(a[2], b[4], dim=0)) < 0.5  # "red" before "circle" vs "red" at the end
    assert float(cos(a[4], b[2], dim=0)) < 0.5  # the same for "magenta"
    assert float(cos(a[3], c[3], dim=0)) > 0.95  # "circle" between "red" and "magenta", in both


def test_the_cleaned_text_is_what_reaches_the_tokenizer() -> None:
    spy = SpyTokenizer()
    te = TextEncoder(spy, tiny_umt5(len(spy)), max_length=16)
    messy = ["  make\tthe &amp;amp; square\n red ", "a <b> &amp;amp; circle"]
    embeds = te(messy)
    assert spy.seen == [["make the & square red", "a <b> & circle"]]
    tidy = te(["make the & square red", "a <b> & circle"])
    assert all(a.equal(b) for a, b in zip(embeds, tidy, strict=True))


def test_cleaning_leaves_every_toy_prompt_unchanged() -> None:
    """The tiny encoder cleans too; the toy world's texts (captions, instructions, pretext prefixes)
    are plain single-spaced ASCII, so its vocabulary sees exactly what it saw before."""
    from sama_cli.toy.world import generate

    samples = generate(40, 10, 20, seed=5)
    texts = [s.record(8.0)["caption"] for s in samples] + [s.edit.instruction for s in samples if s.edit]
    texts += [prefixed(p, t) for p in TASK_PREFIXES.values() for t in texts]
    assert len(texts) > 100
    changed = [t for t in texts if clean_prompt(t) != t]
    assert changed == []


def test_help_imports_no_ftfy() -> None:
    code = ("import sys\nfrom typer.testing import CliRunner\nimport sama_cli.cli as cli\n"
            "r = CliRunner().invoke(cli.app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "print('ftfy' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
