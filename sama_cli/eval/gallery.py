"""Static HTML galleries: one `index.html` per report or batch of edits, where source and edit play side
by side with the numbers next to them.

A page is one file with its CSS and a little plain JavaScript inline; videos are referenced by relative,
URL-quoted paths from the page's folder, so the folder (with the clips it points to) can be opened from
disk or served by any static server as is, and nothing is fetched from the network. Clips a browser cannot
play get a small preview copy in `previews/` beside the page (io/preview.py), and their card says so.
Every text and path from a manifest, a report or a judge reply goes through `html.escape`: a `<script>` in
an instruction is shown, never run. The JavaScript reads nothing but the cards' own data attributes.

Report and compare pages are built in eval/report.py; the batch-edit page here (`edit_page`).
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from sama_cli.io.artifacts import atomic_write_text
from sama_cli.io.preview import Playable, try_playable

PAGE = "index.html"
PREVIEWS = "previews"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


@dataclass
class Card:
    """One sample: its clips side by side, what it was asked, and its numbers."""

    key: str  # the sample's id; the card's anchor derives from it
    category: str = ""
    clips: list[tuple[str, Playable | str]] = field(default_factory=list)  # (label, clip or why it is missing)
    facts: list[tuple[str, str]] = field(default_factory=list)  # (label, text): instruction, split, timings
    numbers: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (title, [(name, value)])
    sort_value: float | None = None  # what "sort by" orders on (score, change, seconds)
    badge: str = ""  # the number in the card's title line
    error: str | None = None
    details: list[tuple[str, str]] = field(default_factory=list)  # (summary, long text), folded


def fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def anchors(keys: Iterable[str]) -> list[str]:
    """A stable HTML id per sample id: its safe characters, a counter when two ids map to the same one."""
    out, seen = [], set()
    for key in keys:
        base = "s-" + (re.sub(r"[^A-Za-z0-9_-]", "_", key) or "_")
        name, n = base, 2
        while name in seen:
            name, n = f"{base}-{n}", n + 1
        seen.add(name)
        out.append(name)
    return out


def playables(paths: Iterable[str | Path | None], previews: Path, workers: int = 4) -> dict[str, Playable | str]:
    """Each distinct clip path as the page shows it (the clip, its preview copy, or why it cannot be shown);
    keyed by the path as given. Preview copies are made `workers` at a time."""
    unique = list(dict.fromkeys(str(p) for p in paths if p))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        shown = list(pool.map(lambda p: try_playable(Path(p), previews), unique))
    return dict(zip(unique, shown, strict=True))


def clip_of(shown: dict[str, Playable | str], path: str | Path | None, missing: str = "no video") -> Playable | str:
    return shown.get(str(path), missing) if path else missing


def url(path: Path, page_dir: Path) -> str:
    """`path` relative to the page's folder, URL-quoted (spaces, #, ?, % in names stay part of the path)."""
    rel = os.path.relpath(Path(path).resolve(), Path(page_dir).resolve())
    return quote(rel.replace(os.sep, "/"))


def markdown_html(md: str) -> str:
    """The report's markdown (headings, pipe tables, paragraphs; `**bold**` and `code`) as HTML, every
    text escaped first."""
    out: list[str] = []
    table: list[list[str]] = []

    def inline(text: str) -> str:
        text = esc(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", text)

    def flush() -> None:
        if not table:
            return
        head, body = table[0], [r for r in table[1:] if not all(set(c) <= set("-: ") for c in r)]
        out.append("<table class=\"report\"><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head)
                   + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r)
                                                      + "</tr>" for r in body) + "</tbody></table>")
        table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("# "):
            out.append(f"<h2>{inline(line[2:])}</h2>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)


def table_html(header: list[str], rows: list[list[str]], cls: str = "report") -> str:
    return (f"<table class=\"{cls}\"><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
            + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>"
                                               for r in rows) + "</tbody></table>")


def _clip_html(label: str, clip: Playable | str, page_dir: Path) -> str:
    if isinstance(clip, str):
        return (f"<figure class=\"missing\"><div class=\"nomedia\">{esc(clip)}</div>"
                f"<figcaption>{esc(label)}</figcaption></figure>")
    small = " small" if max(clip.width, clip.height) < 160 else ""
    src = esc(url(clip.path, page_dir))
    if clip.image:
        media = f"<img class=\"media{small}\" src=\"{src}\" alt=\"{esc(label)}\" loading=\"lazy\">"
        what = f"image {clip.width}x{clip.height}"
    else:
        media = (f"<video class=\"media{small}\" data-src=\"{src}\" muted playsinline loop preload=\"auto\" "
                 f"data-frames=\"{clip.frames}\" data-fps=\"{clip.fps:g}\"></video>")
        what = f"{clip.frames} frames, {clip.fps:g} fps, {clip.width}x{clip.height}"
    note = f"<span class=\"note\">{esc(clip.note)}</span>" if clip.note else ""
    return f"<figure class=\"{small.strip()}\">{media}<figcaption><b>{esc(label)}</b> · {esc(what)}{note}</figcaption></figure>"


def _card_html(card: Card, anchor: str, order: int, page_dir: Path) -> str:
    score = "" if card.sort_value is None or math.isnan(card.sort_value) else repr(float(card.sort_value))
    failed = " failed" if card.error else ""
    parts = [f"<article class=\"card{failed}\" id=\"{anchor}\" data-category=\"{esc(card.category)}\" "
             f"data-score=\"{score}\" data-order=\"{order}\">",
             f"<header><a class=\"anchor\" href=\"#{anchor}\">{esc(card.key)}</a>"
             + (f"<span class=\"cat\">{esc(card.category)}</span>" if card.category else "")
             + (f"<span class=\"badge\">{esc(card.badge)}</span>" if card.badge else "")
             + ("<span class=\"badge bad\">failed</span>" if card.error else "") + "</header>",
             "<div class=\"clips\">" + "".join(_clip_html(label, c, page_dir) for label, c in card.clips) + "</div>"]
    if any(isinstance(c, Playable) and not c.image for _, c in card.clips):
        parts.append("<div class=\"controls\"><button type=\"button\" class=\"play\">play</button>"
                     "<input type=\"range\" class=\"scrub\" min=\"0\" max=\"1\" step=\"any\" value=\"0\" "
                     "aria-label=\"position\"><span class=\"time\">0.00 s</span></div>")
    if card.error:
        parts.append(f"<p class=\"error\">{esc(card.error)}</p>")
    if card.facts:
        parts.append("<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in card.facts) + "</dl>")
    for title, values in card.numbers:
        if values:
            parts.append(f"<table class=\"nums\"><caption>{esc(title)}</caption><tbody>"
                         + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in values)
                         + "</tbody></table>")
    for summary, text in card.details:
        parts.append(f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>")
    parts.append("</article>")
    return "\n".join(parts)


def page_html(title: str, cards: list[Card], page_dir: Path, *, intro: str = "", sort_label: str = "score") -> str:
    """The whole page: title, `intro` (HTML the caller built from escaped parts: tables, charts), the
    filter and sort bar, then a card per sample."""
    cats = list(dict.fromkeys(c.category for c in cards if c.category))
    names = anchors(c.key for c in cards)
    options = "".join(f"<option value=\"{esc(c)}\">{esc(c)}</option>" for c in cats)
    previews = sum(1 for c in cards for _, clip in c.clips if isinstance(clip, Playable) and clip.note)
    bar = (f"<nav class=\"bar\"><label>category <select id=\"category\"><option value=\"\">all</option>{options}"
           f"</select></label> <label>sort <select id=\"sort\"><option value=\"order\">as listed</option>"
           f"<option value=\"desc\">{esc(sort_label)}, high first</option><option value=\"asc\">{esc(sort_label)}"
           f", low first</option></select></label> <span id=\"shown\">{len(cards)} of {len(cards)} shown</span>"
           + (f" <span class=\"note\">{previews} clips shown as preview copies (the browser cannot play their "
              "codec)</span>" if previews else "") + "</nav>")
    body = "\n".join(_card_html(c, a, i, page_dir) for i, (c, a) in enumerate(zip(cards, names, strict=True)))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n"
            f"<section class=\"intro\">{intro}</section>\n{bar}\n<main id=\"cards\">\n{body}\n</main>\n"
            f"<script>{JS}</script>\n</body></html>\n")


def write_page(folder: Path, html_text: str) -> Path:
    """`folder/index.html`, written atomically."""
    path = Path(folder) / PAGE
    atomic_write_text(path, html_text)
    return path


def edit_page(out_dir: Path, rows: list[dict], done: list[dict], failed: list[dict], workers: int = 4) -> Path:
    """`sama edit --manifest ... -o DIR`: DIR/index.html, a card per row (source | edit, instruction, timings;
    a row edited by an earlier call shows its clips without timings; a failed row its error)."""
    out_dir = Path(out_dir)
    by_done = {d["id"]: d for d in done}
    by_failed = {f["id"]: f for f in failed}
    ids = list(dict.fromkeys([*(r["id"] for r in rows), *by_failed]))
    by_row = {r["id"]: r for r in rows}
    outputs = {i: out_dir / f"{i}.mp4" for i in ids}
    shown = playables([*(by_row[i].get("source") for i in ids if i in by_row),
                       *(o for o in outputs.values() if o.is_file())], out_dir / PREVIEWS, workers)
    cards = []
    for i in ids:
        row, d = by_row.get(i, {}), by_done.get(i)
        out = outputs[i]
        card = Card(key=i, category=row.get("kind", ""),
                    clips=[("source", clip_of(shown, row.get("source"), "not in the manifest")),
                           ("edit", clip_of(shown, out if out.is_file() else None, "not written"))],
                    error=by_failed[i]["error"] if i in by_failed else None)
        card.facts = [("instruction", row.get("instruction", "-"))]
        if row.get("split"):
            card.facts.append(("split", row["split"]))
        if d is not None:
            secs = d.get("seconds", {})
            card.sort_value = secs.get("total")
            card.badge = f"{secs.get('total', 0.0):.1f} s"
            card.numbers.append(("timings", [*((k, f"{v:.2f} s") for k, v in secs.items()),
                                             ("per step", f"{d.get('seconds_per_step', 0.0):.3f} s"),
                                             ("steps", str(d.get("steps", "-"))),
                                             ("peak memory", f"{d.get('peak_memory_mb', 0.0):.0f} MB")]))
            card.numbers.append(("output", [("frames", str(d.get("frames"))), ("fps", f"{d.get('fps', 0):g}"),
                                            ("size", "x".join(map(str, d.get("size", [])))),
                                            ("windows", str(d.get("windows", 1)))]))
        elif i not in by_failed and out.is_file():
            card.facts.append(("timings", "edited by an earlier call (skipped now)"))
        cards.append(card)
    title = f"sama edit: {out_dir.name or out_dir}"
    intro = (f"<p>{len(done)} edited, {len(failed)} failed, {len(ids) - len(done) - len(failed)} finished "
             "earlier. Source | edit play together: one play/pause and position control per card.</p>")
    return write_page(out_dir, page_html(title, cards, out_dir, intro=intro, sort_label="total seconds"))


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.5em;margin:0 0 .5em}h2{font-size:1.2em}
table.report{border-collapse:collapse;margin:.5em 0 1em}
table.report th,table.report td{border:1px solid #ccc;padding:.2em .6em;text-align:right}
table.report th:first-child,table.report td:first-child{text-align:left}
.split{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}
.charts{display:flex;flex-wrap:wrap;gap:.4em;max-width:500px}
.charts img{width:160px;border:1px solid #ddd;background:#fff}
nav.bar{position:sticky;top:0;background:#fafafa;padding:.6em 0;border-bottom:1px solid #ddd;z-index:1}
nav.bar label{margin-right:1em}
main{display:flex;flex-wrap:wrap;gap:1em;margin-top:1em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;flex:1 1 400px;max-width:640px}
.card[hidden]{display:none}
.card.failed{border-color:#c33}
.card header{display:flex;gap:.6em;align-items:baseline;margin-bottom:.5em}
.card header a{font-weight:600;color:#234;text-decoration:none}
.cat{background:#e8eef7;padding:0 .4em;border-radius:3px}
.badge{margin-left:auto;font-weight:600}.badge.bad{color:#c33;margin-left:0}
.clips{display:flex;gap:.6em;flex-wrap:wrap}
figure{margin:0;width:240px}figure.small{width:192px}
.media{width:100%;height:auto;background:#000;display:block}
.media.small{image-rendering:pixelated}
figcaption{font-size:12px;color:#555}
.nomedia{width:192px;height:108px;display:flex;align-items:center;justify-content:center;background:#eee;
  color:#933;font-size:12px;padding:.3em;overflow-wrap:anywhere}
.note{display:block;color:#8a5a00;font-size:12px}
.controls{display:flex;gap:.6em;align-items:center;margin:.4em 0}
.controls input{flex:1}
.error{color:#c33;white-space:pre-wrap;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em .8em;margin:.4em 0}
dt{color:#666}dd{margin:0;overflow-wrap:anywhere}
table.nums{display:inline-table;border-collapse:collapse;margin:.3em 1em .3em 0;vertical-align:top}
table.nums caption{text-align:left;color:#666;font-size:12px}
table.nums th{text-align:left;font-weight:normal;padding-right:.8em}table.nums td{text-align:right}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f4f4f4;padding:.4em}
"""

# Plain JavaScript: lazy loading (a clip loads when its card nears the screen), one play/pause and
# position control per card driving all its videos, the category filter and the sort.
JS = """
(() => {
  const cards = [...document.querySelectorAll('.card')];
  const load = v => { if (!v.getAttribute('src') && v.dataset.src) v.src = v.dataset.src; };
  const loadCard = c => c.querySelectorAll('video').forEach(load);
  if ('IntersectionObserver' in window) {
    const seen = new IntersectionObserver(entries => entries.forEach(e => {
      if (e.isIntersecting) { loadCard(e.target); seen.unobserve(e.target); }
    }), {rootMargin: '800px'});
    cards.forEach(c => seen.observe(c));
  } else cards.forEach(loadCard);
  for (const card of cards) {
    const vids = [...card.querySelectorAll('video')];
    const button = card.querySelector('button.play');
    const scrub = card.querySelector('input.scrub');
    const time = card.querySelector('.time');
    if (!vids.length || !button) continue;
    const lead = vids[0];
    const longest = () => Math.max(...vids.map(v => v.duration || 0));
    const show = t => { scrub.value = t; time.textContent = t.toFixed(2) + ' s'; };
    vids.forEach(v => v.addEventListener('loadedmetadata', () => { scrub.max = longest() || 1; }));
    button.addEventListener('click', () => {
      loadCard(card);
      if (lead.paused) {
        const t = lead.currentTime;
        vids.forEach(v => { v.currentTime = Math.min(t, v.duration || t); v.play().catch(() => {}); });
        button.textContent = 'pause';
      } else {
        vids.forEach(v => v.pause());
        button.textContent = 'play';
      }
    });
    scrub.addEventListener('input', () => {
      const t = Number(scrub.value);
      vids.forEach(v => { v.pause(); v.currentTime = Math.min(t, v.duration || t); });
      button.textContent = 'play';
      show(t);
    });
    lead.addEventListener('timeupdate', () => {
      if (lead.paused) return;
      show(lead.currentTime);
      for (const v of vids.slice(1)) {
        if (Math.abs(v.currentTime - lead.currentTime) > 0.1 && lead.currentTime < (v.duration || 0)) {
          v.currentTime = lead.currentTime;
        }
      }
    });
  }
  const grid = document.getElementById('cards');
  const category = document.getElementById('category');
  const sort = document.getElementById('sort');
  const shown = document.getElementById('shown');
  category.addEventListener('change', () => {
    let n = 0;
    for (const c of cards) {
      c.hidden = category.value !== '' && c.dataset.category !== category.value;
      if (!c.hidden) n += 1;
    }
    shown.textContent = n + ' of ' + cards.length + ' shown';
  });
  sort.addEventListener('change', () => {
    const value = c => (c.dataset.score === '' ? NaN : Number(c.dataset.score));
    const order = cards.slice().sort((a, b) => {
      if (sort.value === 'order') return a.dataset.order - b.dataset.order;
      const x = value(a), y = value(b);
      if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) - Number.isNaN(y);
      return sort.value === 'desc' ? y - x : x - y;
    });
    order.forEach(c => grid.appendChild(c));
  });
})();
"""
