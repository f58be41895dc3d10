"""DiffSynth metadata files read as they are (sama_cli/io/metadata.py through read_manifest): folders laid
out as the publishers ship them, each column's mapping written out by hand, and the commands that read a
manifest run on such a file directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sama_cli.cli import app
from sama_cli.core.errors import InputError
from sama_cli.io.manifest import is_manifest_path, read_manifest, row_prompt, write_manifest
from sama_cli.io.video import write_video

# Ditto-1M on the Hub: videos/{source,local,global_style1,...}/ and csvs_for_DiffSynth/*.csv, the CSVs
# relative to videos/ (Ditto's train script: --dataset_base_path Ditto-1M/videos, --data_file_keys
# "video,vace_video"). Row 3 holds a quoted two-line prompt, row 4 is blank, row 5 has no video.
DITTO_CSV = ('video,vace_video,prompt\n'
             'local/0001_edit.mp4,source/0001.mp4,Replace the cup with a red apple\n'
             'global_style1/0002_style.mp4,source/0002.mp4,"Make it a watercolor painting,\nsoft edges"\n'
             '\n'
             ',source/0002.mp4,a row without its edited video\n')
DITTO_FILES = ("source/0001.mp4", "source/0002.mp4", "local/0001_edit.mp4", "global_style1/0002_style.mp4")


def _touch(base: Path, *names: str) -> None:
    for name in names:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(b"x")


def _clip(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    write_video(path, torch.randint(0, 256, (5, 32, 32, 3), generator=g, dtype=torch.uint8), 8, lossless=True)


@pytest.fixture
def ditto(tmp_path: Path) -> Path:
    root = tmp_path / "Ditto-1M"
    _touch(root / "videos", *DITTO_FILES)
    (root / "csvs_for_DiffSynth").mkdir()
    (root / "csvs_for_DiffSynth" / "local.csv").write_text(DITTO_CSV)
    return root


def test_ditto_csv_maps_each_column_and_the_row_without_video_is_its_own_error(ditto: Path) -> None:
    videos = ditto / "videos"
    m = read_manifest(ditto / "csvs_for_DiffSynth" / "local.csv", base_path=videos, keep_going=True)
    assert m.rows == [
        {"id": "local-000000", "kind": "video_edit", "source": str(videos / "source" / "0001.mp4"),
         "target": str(videos / "local" / "0001_edit.mp4"), "instruction": "Replace the cup with a red apple"},
        {"id": "local-000001", "kind": "video_edit", "source": str(videos / "source" / "0002.mp4"),
         "target": str(videos / "global_style1" / "0002_style.mp4"),
         "instruction": "Make it a watercolor painting,\nsoft edges"},
    ]
    assert m.base == videos
    # spreadsheet rows: header 1, two-line record 3, blank 4, so the bad row is 5; its index is 2
    assert m.failed == [{"id": "local-000002", "error": f"{ditto}/csvs_for_DiffSynth/local.csv:5: row has no "
                                                        "'video' (the target video)"}]
    assert row_prompt(m.rows[0]) == "[Video edit] Replace the cup with a red apple"
    with pytest.raises(InputError, match=r"local\.csv:5: row has no 'video'"):  # the default: the first bad row stops
        read_manifest(ditto / "csvs_for_DiffSynth" / "local.csv", base_path=videos)


def test_base_path_default_is_the_metadata_files_folder(ditto: Path) -> None:
    csv_dir = ditto / "csvs_for_DiffSynth"
    with pytest.raises(InputError) as info:  # Ditto's CSVs are not beside the videos: the error says where it looked
        read_manifest(csv_dir / "local.csv", keep_going=False)
    assert str(info.value) == (f"{csv_dir}/local.csv:2: video file does not exist: {csv_dir}/local/0001_edit.mp4 "
                               f"(relative paths resolve against {csv_dir}; --base-path sets that folder)")
    (ditto / "videos" / "local.csv").write_text(DITTO_CSV)  # the same file inside the base folder needs no base path
    beside = read_manifest(ditto / "videos" / "local.csv", keep_going=True)
    given = read_manifest(csv_dir / "local.csv", base_path=ditto / "videos", keep_going=True)
    assert beside.rows == given.rows and beside.base == given.base == ditto / "videos"


def test_release_json_list_keeps_unknown_columns_and_tells_kinds_apart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _touch(data, "clips/src_a.mp4", "clips/tgt_a.mp4", "imgs/src_b.png", "imgs/tgt_b.png", "clips/t2v_c.mp4")
    (data / "meta.json").write_text(
        '[\n'
        '  {"video": "clips/tgt_a.mp4", "source_video": "clips/src_a.mp4", "prompt": "[Video edit] make it snow",'
        ' "task": "weather"},\n'
        '  {"video": "imgs/tgt_b.png", "source_video": "imgs/src_b.png",\n'
        '   "prompt": "remove the hat"},\n'
        '  {"video": "clips/t2v_c.mp4", "prompt": "a dog runs on the beach", "fps": 24},\n'
        '  {"source_video": "clips/src_a.mp4", "prompt": "no target"}\n'
        ']\n')
    m = read_manifest(data / "meta.json", keep_going=True)
    assert m.rows == [
        {"id": "meta-000000", "kind": "video_edit", "source": str(data / "clips/src_a.mp4"),
         "target": str(data / "clips/tgt_a.mp4"), "instruction": "make it snow", "task": "weather"},
        {"id": "meta-000001", "kind": "image_edit", "source": str(data / "imgs/src_b.png"),
         "target": str(data / "imgs/tgt_b.png"), "instruction": "remove the hat"},
        {"id": "meta-000002", "kind": "t2v", "target": str(data / "clips/t2v_c.mp4"),
         "caption": "a dog runs on the beach", "fps": 24},
    ]
    assert m.failed == [{"id": "meta-000003", "error": f"{data}/meta.json:6: row has no 'video' (the target video)"}]
    assert row_prompt(m.rows[0]) == "[Video edit] make it snow"  # the prefix once, not twice
    write_manifest(m.rows, tmp_path / "out" / "rows.jsonl")  # written in our JSONL, read back the same
    assert read_manifest(tmp_path / "out" / "rows.jsonl").rows == m.rows


def test_openve_jsonl_with_an_id_column_and_a_base_path(tmp_path: Path) -> None:
    """OpenVE-3M as the release reads it: the `video` path holds 'Lewandofski-OpenVE-3M' (the release's
    test for dropping its first 4 frames), source_video and prompt beside it."""
    root = tmp_path / "openve"
    ove = "Lewandofski-OpenVE-3M"
    _touch(root, f"{ove}/edited/17.mp4", f"{ove}/source/17.mp4", f"{ove}/edited/18.mp4", f"{ove}/source/18.mp4")
    (root / "meta").mkdir()
    lines = [{"id": "ove_17", "video": f"{ove}/edited/17.mp4", "source_video": f"{ove}/source/17.mp4",
              "prompt": "Change the sky to a sunset", "edit_type": "global"},
             {"video": f"{ove}/edited/18.mp4", "source_video": f"{ove}/source/18.mp4", "prompt": "Add a hat"}]
    (root / "meta" / "openve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    m = read_manifest(root / "meta" / "openve.jsonl", base_path=root)
    assert m.rows == [
        {"id": "ove_17", "kind": "video_edit", "source": str(root / ove / "source/17.mp4"),
         "target": str(root / ove / "edited/17.mp4"), "instruction": "Change the sky to a sunset",
         "edit_type": "global"},
        {"id": "openve-000001", "kind": "video_edit", "source": str(root / ove / "source/18.mp4"),
         "target": str(root / ove / "edited/18.mp4"), "instruction": "Add a hat"},
    ]


@pytest.mark.parametrize("name,text,expected", [
    ("empty.csv", "", "empty.csv: empty metadata file"),
    ("empty.json", " \n", "empty.json: empty metadata file"),
    ("rows.txt", "video,prompt\n", "rows.txt: not a manifest: expected .jsonl, .ndjson, .csv, .json"),
    ("clips.csv", "clip,prompt\na.mp4,x\n", "clips.csv: no 'video' column (the target video); the columns are: "
                                            "clip, prompt"),
    ("broken.json", '[{"video": ', "broken.json: not valid JSON (Expecting value at line 1 column 12)"),
    ("lines.json", '{"video": "a.mp4", "prompt": "x"}\n{"video": "a.mp4", "prompt": "y"}\n',
     "lines.json: not valid JSON (Extra data at line 2 column 1)"),
    ("object.json", '{"video": "a.mp4"}', "object.json: a .json metadata file holds a list of rows, not a JSON dict"),
    ("clash.csv", "video,source,prompt\na.mp4,a.mp4,x\n", "clash.csv:2: column 'source' is one of sama's own"),
])
def test_bad_files_are_one_line_naming_the_file(tmp_path: Path, name: str, text: str, expected: str) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as info:
        read_manifest(tmp_path / name)
    assert str(info.value).startswith(f"{tmp_path}/{expected}") and "\n" not in str(info.value)


def test_which_inputs_are_manifests() -> None:
    assert all(map(is_manifest_path, ["-", "a.jsonl", "b.ndjson", "ditto.csv", "meta.json", "META.JSON"]))
    assert not any(map(is_manifest_path, ["clip.mp4", "still.png", "notes.txt"]))


@pytest.fixture
def ditto_clips(tmp_path: Path) -> Path:
    """The Ditto layout with real (tiny, lossless) clips."""
    root = tmp_path / "Ditto-1M"
    for seed, name in enumerate(DITTO_FILES):
        _clip(root / "videos" / name, seed)
    (root / "csvs_for_DiffSynth").mkdir()
    (root / "csvs_for_DiffSynth" / "local.csv").write_text(DITTO_CSV)
    return root


def test_sama_edit_takes_the_csv_directly(ditto_clips: Path, tmp_path: Path) -> None:
    csv_path, videos = ditto_clips / "csvs_for_DiffSynth" / "local.csv", ditto_clips / "videos"
    out = tmp_path / "edits"
    res = CliRunner().invoke(app, ["edit", "--manifest", str(csv_path), "--base-path", str(videos), "-o", str(out),
                                   "--steps", "1", "--device", "cpu", "--json"])
    assert res.exit_code == 1, res.output  # one row failed, the others were edited
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert [d["id"] for d in summary["done"]] == ["local-000000", "local-000001"]
    assert summary["failed"] == [{"id": "local-000002", "error": f"{csv_path}:5: row has no 'video' (the target video)"}]
    written = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(r["id"], r["kind"], r["output"]) for r in written] == [("local-000000", "video_edit", "local-000000.mp4"),
                                                                    ("local-000001", "video_edit", "local-000001.mp4")]
    assert read_manifest(out / "manifest.jsonl").rows[0]["source"] == str(videos / "source" / "0001.mp4")


def test_sama_anchor_takes_the_csv_directly(ditto_clips: Path, tmp_path: Path) -> None:
    csv_path, videos = ditto_clips / "csvs_for_DiffSynth" / "local.csv", ditto_clips / "videos"
    good = tmp_path / "good.csv"  # anchor reads eagerly (data/anchors): the bad row stops it, naming file:line
    good.write_text(DITTO_CSV.rsplit("\n\n", 1)[0] + "\n")
    res = CliRunner().invoke(app, ["anchor", str(csv_path), "--base-path", str(videos), "-o", str(tmp_path / "bad"),
                                   "--device", "cpu"])
    assert isinstance(res.exception, InputError) and str(res.exception).startswith(f"{csv_path}:5: row has no 'video'")
    res = CliRunner().invoke(app, ["anchor", str(good), "--base-path", str(videos), "-o", str(tmp_path / "anc"),
                                   "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    rows = read_manifest(tmp_path / "anc" / "manifest.jsonl").rows
    assert [(r["id"], r["target"]) for r in rows] == [("good-000000", str(videos / "local" / "0001_edit.mp4")),
                                                      ("good-000001", str(videos / "global_style1" / "0002_style.mp4"))]
    assert all(Path(r["artifacts"]["anchors"]).is_file() for r in rows)


@pytest.mark.parametrize("command", [["encode", "--vae", "pixel"], ["anchor"], ["perturb", "--mix"]])
def test_an_unreadable_metadata_file_stops_before_any_output(tmp_path: Path, command: list[str]) -> None:
    """A CSV without a `video` column: an input error naming the file (exit 2 from `sama`, tests/test_cli.py),
    and the output folder never made."""
    bad = tmp_path / "nov.csv"
    bad.write_text("src,prompt\na.mp4,hi\n")
    out = tmp_path / "out"
    args = [command[0], *command[1:], str(bad), "-o", str(out)] if command[0] == "perturb" else \
        [command[0], str(bad), "-o", str(out), *command[1:]]
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, InputError), res.output
    assert "nov.csv: no 'video' column" in str(res.exception)
    assert not out.exists()
