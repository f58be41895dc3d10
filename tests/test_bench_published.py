"""`sama bench run` on folders laid out as VIE-Bench, OpenVE-Bench and ReCo-Bench publish them, against a
loopback judge whose replies each test scripts; every number checked here is worked out by hand."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import threading
from pathlib import Path

import pytest
import torch

from sama_cli.io.video import write_video
from sama_cli.perf.judge_server import ScriptedServer

pytest.importorskip("openai")


class Server(ScriptedServer):
    """The scripted server, plus replies chosen by `#r<name>` in the prompt and a record of every request."""

    def __init__(self, replies: dict[str, str]) -> None:
        super().__init__()
        self.replies, self.bodies, self.guard = replies, [], threading.Lock()

    def reply(self, body):
        with self.guard:
            self.bodies.append(body)
        text = " ".join(p.get("text", "") for m in body["messages"] for p in
                        (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
        m = re.search(r"#r([a-z0-9]+)", text)
        if m and m.group(1) in self.replies:
            return 200, self.replies[m.group(1)], 0.0
        return super().reply(body)

    def body_for(self, tag: str) -> dict:
        return next(b for b in self.bodies if tag in json.dumps(b))


def clip(path: Path, value: int, frames: int = 5) -> Path:
    video = torch.full((frames, 32, 32, 3), value, dtype=torch.uint8)
    video[:, 8:16, 8:16] = 255 - value
    return write_video(path, video, 8.0)


def bench(*args) -> tuple[int, dict | None, str]:
    from typer.testing import CliRunner

    from sama_cli.cli import app
    from sama_cli.core.errors import SamaError

    res = CliRunner().invoke(app, ["bench", "run", *map(str, args), "--json", "--workers", "2", "--retries", "0",
                                   "--backoff", "0"])
    if isinstance(res.exception, SamaError):  # the CLI's entry point prints these and exits with their code
        return res.exception.exit_code, None, res.exception.message
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    summary = json.loads(last) if last.startswith("{") else None
    return res.exit_code, summary, res.output


def rows_of(report: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (report / "scores.jsonl").read_text().splitlines())}


# ---- ReCo-Bench -------------------------------------------------------------------------------------------
NESTED = json.dumps({"edit_accuracy": {"scores": [8, 2, 4], "reasoning": "x"},
                     "video_quality": {"scores": [5, 5, 5], "reasoning": "x"},
                     "naturalness": {"scores": [1, 3, 9], "reasoning": "x"}})
FLAT_ZERO = json.dumps({"SA": 0, "SP": 9, "CP": 9, "VF": 9, "TS": 9, "ES": 9, "AN": 9, "SN": 9, "MN": 9})
NINES = "Here you go:\n```json\n" + json.dumps({g: {"scores": [9, 9, 9]} for g in
                                                ("edit_accuracy", "video_quality", "naturalness")}) + "\n```"


def reco_folder(root: Path) -> tuple[Path, Path]:
    """ReCo-Bench's layout: configs/<task>.txt, ori_videos/, and edits under all_results/<task>/."""
    from sama_cli.eval.reco import release_name

    data, edits = root / "ReCo-Bench", root / "all_results"
    (data / "configs").mkdir(parents=True)
    (data / "ori_videos").mkdir()
    for name, value in (("a.mp4", 40), ("b.mp4", 70)):
        clip(data / "ori_videos" / name, value, frames=9)
    configs = {
        "add": ["# a comment line", "a.mp4: Add a red hat, then wave. #rn1", "b.mp4: Add a cat #rflat | refs/cat.png",
                "a.mp4: Add a dog", "a.mp4 Add a broken line"],
        "remove": ["b.mp4: Remove the box #garbage", "a.mp4: Remove the cup #rnines", "b.mp4: Remove the missing"],
    }
    for task, lines in configs.items():
        (data / "configs" / f"{task}.txt").write_text("\n".join(lines) + "\n")
        (edits / task).mkdir(parents=True)
        for text in lines:
            source, _, rest = text.partition(": ")
            instruction = rest.partition("|")[0].strip()
            if not rest or "missing" in instruction:
                continue
            out = edits / task / release_name(source, instruction)
            if instruction == "Add a dog":  # an edit identical to its source: the release's failed edit
                shutil.copy(data / "ori_videos" / source, out)
            else:
                clip(out, 120 + len(instruction), frames=9)
    return data, edits


def test_reco_bench_as_released(tmp_path: Path) -> None:
    data, edits = reco_folder(tmp_path)
    with Server({"n1": NESTED, "flat": FLAT_ZERO, "nines": NINES}) as server:
        code, s, out = bench("reco", "--data", data, "--edits", edits, "--judge", "openai:m", "--base-url",
                             server.base_url, "-o", tmp_path / "rep")
        asked = len(server.bodies)
        body = server.body_for("#rn1")
        code_x, sx, _ = bench("reco", "--data", data, "--edits", edits, "--judge", "openai:m", "--base-url",
                              server.base_url, "-o", tmp_path / "rep_x", "--failed-as", "excluded", "--no-cache")
    assert code == 1, out  # a judge failure, a missing edit and a broken line: the run completes, exit 1
    rows = rows_of(tmp_path / "rep")
    assert rows["add-002"]["scores"]["SP"] == 2 and rows["add-002"]["score"] == pytest.approx(4.0)  # (4 + 5 + 3) / 3
    assert rows["add-003"]["score"] == pytest.approx(6.0)  # accuracy (0 * 9 * 9)^(1/3) = 0; (0 + 9 + 9) / 3
    assert rows["add-004"]["score"] == 0 and rows["add-004"]["rule"] == "identical to the source"
    assert set(rows["add-004"]["scores"].values()) == {0.0}
    assert rows["add-005"]["error"].endswith("add.txt:5: expected '<source>.mp4: <instruction>', got "
                                             "'a.mp4 Add a broken line'")
    assert rows["remove-001"]["kind"] == "judge" and rows["remove-001"]["raw"]
    assert rows["remove-003"]["kind"] == "input" and "no edited video" in rows["remove-003"]["error"]
    assert asked == 4  # the identical edit, the missing edit and the broken line never reach the judge
    # the release's request: images first, no system message, no temperature, side-by-side pairs every 8th
    # frame (9 frames: 0 and 8), 224 px high, enlarged to a 512 short side: (32+32)*7 x 32*7 -> 1024 x 512
    content = body["messages"][0]["content"]
    assert [m["role"] for m in body["messages"]] == ["user"] and "temperature" not in body
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]
    from PIL import Image

    first = Image.open(io.BytesIO(base64.b64decode(content[0]["image_url"]["url"].split(",", 1)[1])))
    assert first.size == (1024, 512)
    # per task: SA..ES over scored samples; groups over samples with a judge failure as 0; S their mean
    add, remove = s["table"]["add"], s["table"]["remove"]
    assert add["SA"] == pytest.approx((8 + 0 + 0) / 3) and add["MN"] == pytest.approx((9 + 9 + 0) / 3)
    assert add["accuracy"] == pytest.approx((4 + 0 + 0) / 3) and add["quality"] == pytest.approx((5 + 9 + 0) / 3)
    assert add["score"] == pytest.approx((4 + 6 + 0) / 3) and (add["n"], add["failed"]) == (3, 1)
    assert remove["SA"] == 9 and remove["score"] == pytest.approx((9 + 0) / 2)  # the judge failure counts as 0
    assert (remove["n"], remove["failed"], remove["as_zero"]) == (1, 2, 1)  # the missing edit is left out
    assert s["overall"] == pytest.approx((4 + 6 + 0 + 9 + 0) / 5) and s["failed_as"] == "zero"
    assert sx["table"]["remove"]["score"] == pytest.approx(9) and sx["categories"]["add"] == pytest.approx(10 / 3) and code_x == 1
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| category | SA | SP | CP | VF | TS | ES | AN | SN | MN | accuracy | quality | naturalness | S | n | failed |" \
        in report and "counted as 0 (the release's rule)" in report and "Judge model: openai:m" in report


def test_reco_clean_run_exits_0_and_source_dir(tmp_path: Path) -> None:
    data, edits = reco_folder(tmp_path)
    (data / "ori_videos").rename(data / "sources")
    with Server({"n1": NESTED, "flat": FLAT_ZERO}) as server:
        code, s, out = bench("reco", "--data", data, "--edits", edits / "..", "--judge", "openai:m", "--base-url",
                             server.base_url, "-o", tmp_path / "rep", "--source-dir", "sources", "--limit", "3")
    assert code == 0, out
    assert s["samples"] == 3 and s["failed"] == 0 and s["categories"]["add"] == pytest.approx(10 / 3)


# ---- OpenVE-Bench -----------------------------------------------------------------------------------------
LINES_ADD = "Brief reasoning: the hat floats a little.\nPrompt Compliance: 3\nVisual & Temporal Naturalness: 5\n" \
            "Physical & Detail Coherence: 2"
LINES_CAMERA = "**Brief reasoning**: fine.\n**Prompt Compliance**: 2\n**Visual Quality & Stability**: 2\n" \
               "**Consistency & Detail Fidelity**: 1"


def openve_folder(root: Path) -> tuple[Path, Path]:
    """OpenVE-Bench's layout (original_video written relative to the folder above the benchmark, as the
    release does, or to the benchmark folder) and the release's results CSV."""
    data = root / "OpenVE-Bench"
    (data / "videos").mkdir(parents=True)
    (root / "results" / "edits").mkdir(parents=True)
    rows = [("local_add", "Add a hat #radd", "OpenVE-Bench/videos/0000_local_add_Add_a_hat_#radd.mp4"),
            ("global_style", "Make it ukiyo-e #good4", "videos/0001_global_style_Make_it_ukiyo-e_#goo.mp4"),
            ("camera_edit", "Zoom in #rcam", "OpenVE-Bench/videos/0002_camera_edit_Zoom_in_#rcam.mp4"),
            ("local_remove", "Remove the cup #garbage", "videos/0003_local_remove_Remove_the_cup_#ga.mp4")]
    lines, results = ["edited_type,prompt,original_video"], ["edited_type,prompt,original_video,edited_result_path"]
    for i, (kind, prompt, video) in enumerate(rows):
        clip(data / "videos" / Path(video).name, 40 + i)
        clip(root / "results" / "edits" / f"{i}.mp4", 90 + i)
        lines.append(f"{kind},{prompt},{video}")
        results.append(f"{kind},{prompt},{video},edits/{i}.mp4")
    lines += ["local_add,too,many,columns", "local_change,Swap the dog,videos/nowhere.mp4"]
    (data / "benchmark_videos.csv").write_text("\n".join(lines) + "\n")
    (root / "results" / "new_result.csv").write_text("\n".join(results) + "\n")
    return data, root / "results" / "new_result.csv"


def test_openve_bench_as_released(tmp_path: Path) -> None:
    data, results = openve_folder(tmp_path)
    wording = tmp_path / "add_wording.txt"
    wording.write_text("Grade this object addition. The instruction: <edit_prompt>\nAnswer in lines.")
    with Server({"add": LINES_ADD, "cam": LINES_CAMERA}) as server:
        code, s, out = bench("openve", "--data", data, "--edits", results, "--judge", "openai:m", "--base-url",
                             server.base_url, "-o", tmp_path / "rep", "--prompt-file", f"local_add={wording}")
        add_body, style_body = server.body_for("#radd"), server.body_for("#good4")
        code0, s0, out0 = bench("openve", "--data", data, "--edits", results, "--judge", "openai:m", "--base-url",
                                server.base_url, "-o", tmp_path / "rep0", "--limit", "3")
    assert code == 1, out
    rows = rows_of(tmp_path / "rep")
    ids = ["0000_local_add_Add_a_hat_#radd", "0001_global_style_Make_it_ukiyo-e_#goo",
           "0002_camera_edit_Zoom_in_#rcam", "0003_local_remove_Remove_the_cup_#ga"]
    add, style, camera, remove = (rows[i] for i in ids)
    # the cap: 3, 5, 2 scores as 3, 3, 2 (the second is never above the first)
    assert add["scores"] == {"prompt_compliance": 3, "visual_temporal_naturalness": 5, "physical_detail_coherence": 2}
    assert add["score"] == pytest.approx(8 / 3) and style["score"] == 4 and camera["score"] == pytest.approx(5 / 3)
    assert remove["status"] == "failed" and remove["raw"] and "score" not in remove
    assert rows["benchmark_videos.csv:6"]["error"].endswith("benchmark_videos.csv:6: 4 columns, the header has 3")
    broken = next(r for r in rows.values() if r["category"] == "local_change")
    assert "benchmark_videos.csv:7: original_video 'videos/nowhere.mp4' found neither" in broken["error"]
    # types, camera_edit in a row of its own, overall the mean over every scored sample (camera's too)
    assert s["categories"] == {"global_style": 4.0, "local_add": pytest.approx(8 / 3), "camera_edit": pytest.approx(5 / 3)}
    assert s["overall"] == pytest.approx((8 / 3 + 4 + 5 / 3) / 3) and s["table"]["overall"]["n"] == 3
    assert s["table"]["local_remove"]["failed"] == 1 and s["table"]["overall"]["failed"] == 3
    # the release's decoding: a system message, temperature 0.7, text before the frames (17 + 17)
    assert add_body["temperature"] == 0.7 and add_body["messages"][0]["role"] == "system"
    assert "response_format" not in style_body
    user = add_body["messages"][1]["content"]
    assert user[0]["type"] == "text" and len(user) == 1 + 2 * 5  # 5-frame clips: every frame of each
    assert user[0]["text"] == "Grade this object addition. The instruction: Add a hat #radd\nAnswer in lines."
    assert s["wording"]["local_add"].startswith("add_wording.txt (sha256 ")
    assert s["wording"]["global_style"] == "ours (openve v3)"
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| camera_edit |" in report and "add_wording.txt (sha256" in report and "camera_edit |" not in \
        report.split("| method |")[1].splitlines()[0]
    assert code0 == 0, out0  # the first three rows: every sample scored


def test_openve_reply_parser_reads_both_shapes_and_never_guesses() -> None:
    from sama_cli.eval.openve import OPENVE_RUBRICS, parse_reply

    crit = OPENVE_RUBRICS["local_add"].criteria
    assert parse_reply(LINES_ADD, crit, (1, 5)) == {"prompt_compliance": 3, "visual_temporal_naturalness": 5,
                                                    "physical_detail_coherence": 2}
    for bad in ("Prompt Compliance: 3\nVisual & Temporal Naturalness: 5", "Score: 3\nScore: 4\nScore: 5",
                LINES_ADD.replace(": 2", ": 6")):
        with pytest.raises(ValueError):
            parse_reply(bad, crit, (1, 5))


# ---- VIE-Bench --------------------------------------------------------------------------------------------
def vie_folder(root: Path, rows: list[tuple[str, str, str]]) -> tuple[Path, Path]:
    data, edits = root / "vie", root / "edits"
    (data / "videos").mkdir(parents=True)
    edits.mkdir()
    from PIL import Image

    Image.new("RGB", (20, 10), (200, 10, 10)).save(data / "ref.png")
    lines = []
    for i, (sid, cat, tag) in enumerate(rows):
        clip(data / "videos" / f"{sid}.mp4", 40 + i)
        clip(edits / f"{sid}.mp4", 90 + i)
        row = {"id": sid, "category": cat, "instruction": f"edit it {tag}", "source": f"videos/{sid}.mp4"}
        lines.append(json.dumps({**row, "reference": "ref.png"} if cat.startswith("Reference") else row))
    (data / "vie_bench.jsonl").write_text("\n".join(lines) + "\n")
    return data, edits


def test_vie_bench_maps_the_cards_categories(tmp_path: Path) -> None:
    data, edits = vie_folder(tmp_path, [
        ("o1", "Object Swap", "#good8"), ("c1", "color change", "#good6"), ("t1", "Tone/Weather Change", "#good5"),
        ("a1", "Add", "#good9"), ("h1", "Hybrid", "#good3"), ("r1", "Reference-Based Add", "#good4"),
        ("u1", "Lighting Fix", "#good9")])
    with Server({}) as server:
        code, s, out = bench("vie", "--data", data, "--edits", edits, "--judge", "openai:m", "--base-url",
                             server.base_url, "-o", tmp_path / "rep")
        ref_images = sum(1 for p in server.body_for("#good4")["messages"][0]["content"] if p["type"] == "image_url")
    assert code == 1, out
    rows = rows_of(tmp_path / "rep")
    assert rows["u1"]["error"].startswith(f"{data / 'vie_bench.jsonl'}:7: unknown VIE-Bench category 'Lighting Fix'")
    # Swap/Change = Object Swap + Color Change; Style/Tone = Style Change + Tone/Weather Change; hybrid and
    # reference-based items in rows of their own, outside the paper's four columns and the overall
    assert s["categories"] == {"add": 9.0, "swap": 7.0, "style": 5.0, "hybrid": 3.0, "ref_add": 4.0}
    assert s["overall"] == pytest.approx((9 + 7 + 5) / 3)
    assert s["table"]["swap"]["instruction_following"] == 7.0 and s["table"]["swap"]["n"] == 2
    assert ref_images == 2 * 5 + 1  # the reference image goes to the judge after the frames
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| category | instruction_following | preservation | quality | score | n | failed |" in report
    assert "| ref_add |" in report and "| unreadable | - | - | - | - | 0 | 1 |" in report
    assert "| overall | 7.000 | 7.000 | 7.000 | 7.000 | 4 | 1 |" in report  # the paper's four columns


def test_a_repeated_vie_id_names_both_lines(tmp_path: Path) -> None:
    data, edits = vie_folder(tmp_path, [("x", "Add", ""), ("y", "Remove", "")])
    text = (data / "vie_bench.jsonl").read_text().replace('"id": "y"', '"id": "x"')
    (data / "vie_bench.jsonl").write_text(text)
    code, _, out = bench("vie", "--data", data, "--edits", edits, "-o", tmp_path / "rep")
    assert code == 2 and "vie_bench.jsonl:2: sample id 'x' repeats line 1" in out


def test_compare_warns_when_reports_are_not_alike(tmp_path: Path) -> None:
    from sama_cli.eval.report import compare_warnings

    for name, summary in (("a", {"samples": 4, "failed": 0, "judge": "openai:m", "wording": {"add": "ours"}}),
                          ("b", {"samples": 3, "failed": 1, "judge": "openai:n", "wording": {"add": "f.txt"}})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"benchmark": "reco", **summary}))
    warnings = compare_warnings(tmp_path / "a", tmp_path / "b")
    assert [w.split(":")[0] for w in warnings] == [f"the reports differ in {w}" for w in
                                                   ("scored samples", "failed samples", "judge", "wording")]
