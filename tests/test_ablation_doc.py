"""docs/ablation.md from per-run results (issue 19): per-kind table, temporal measures and the verdicts.
Numbers are made up and the expected cells worked by hand (mean ± sample std over seeds)."""

from __future__ import annotations

from pathlib import Path

from sama_cli.toy.ablation import ARMS, write_doc


def _run(arm: str, seed: int, recolour: float, warp: float) -> dict:
    scores = {"edit_accuracy": 0.5, "preservation_psnr": 40.0, "trajectory_error": 2.0}
    return {"arm": arm, "seed": seed, "stage0": scores, "stage1": scores, "stage1_heldout": None,
            "stage1_kinds": {"recolour": recolour, "style": 0.9}, "stage1_temporal": {"warp_error": warp, "flicker": 3.0},
            "steps_to_level": 100, "final_loss_fm": 0.3, "seconds": 60.0, "curve": [(1, 1.0), (2, 0.5)]}


def test_per_kind_and_temporal_tables(tmp_path: Path) -> None:
    results = []
    for arm in ARMS:
        for seed, (rec, warp) in enumerate(((0.2, 5.0), (0.4, 7.0))):
            bump = 0.5 if arm == "+SA" else 0.0  # +SA recolours far better than the spread
            results.append(_run(arm, seed, rec + bump, warp))
    doc = tmp_path / "ablation.md"
    write_doc(results, tmp_path, doc, 10, 20, None)
    text = doc.read_text()
    # baseline recolour: mean of 0.2, 0.4 = 0.3, std = 0.1414; +SA: 0.8 +- 0.1414
    assert "| baseline | 0.300 ± 0.141 | 0.900 ± 0.000 |" in text
    assert "| +SA | 0.800 ± 0.141 | 0.900 ± 0.000 |" in text
    # temporal: trajectory 2.0, warp (5 + 7) / 2 = 6 with std 1.414, flicker 3
    assert "| +MA | 2.000 ± 0.000 | 6.000 ± 1.414 | 3.000 ± 0.000 |" in text
    assert "- SA per kind, recolour: baseline 0.300 -> +SA 0.800 (+0.500; spread 0.141): better" in text
    assert "- SA per kind, style: baseline 0.900 -> +SA 0.900 (+0.000; spread 0.000): within the spread" in text
    assert "Warp error: baseline 6.000 -> +MA 6.000" in text


def test_each_claim_gets_a_plain_verdict(tmp_path: Path) -> None:
    """A claim holds when a pairing is better beyond the spread and none worse; does not hold when worse and
    none better; mixed when both; undecided when both are within the spread (worked by hand below)."""
    from sama_cli.toy.ablation import MA_PAIRS, SA_PAIRS, claim_verdict

    def runs(acc: dict[str, tuple[float, float]]) -> list[dict]:
        return [{"arm": arm, "seed": s, "acc": v} for arm, pair in acc.items() for s, v in enumerate(pair)]

    def acc(r):
        return r["acc"]

    flat = {"baseline": (0.50, 0.52), "+SA": (0.50, 0.52), "+MA": (0.50, 0.52), "+SA+MA": (0.50, 0.52)}
    assert claim_verdict(runs(flat), SA_PAIRS, acc) == "the spread cannot decide"
    # +SA+MA 0.70 vs +MA 0.51 (spread 0.014): better; baseline -> +SA within: holds
    assert claim_verdict(runs({**flat, "+SA+MA": (0.69, 0.71)}), SA_PAIRS, acc) == "holds here"
    # +SA worse than baseline, +SA+MA equal to +MA: does not hold
    assert claim_verdict(runs({**flat, "+SA": (0.30, 0.31)}), SA_PAIRS, acc).startswith("does not hold here")
    # +SA worse, +SA+MA better: mixed; the same numbers read for MA: +MA = baseline, +SA -> +SA+MA better
    both = runs({**flat, "+SA": (0.30, 0.31), "+SA+MA": (0.69, 0.71)})
    assert claim_verdict(both, SA_PAIRS, acc).startswith("mixed")
    assert claim_verdict(both, MA_PAIRS, acc) == "holds here"
    # lower is better (trajectory error): the same rise is a worse result
    assert claim_verdict(runs({**flat, "+SA+MA": (0.69, 0.71)}), SA_PAIRS, acc, lower_is_better=True).startswith(
        "does not hold")
    doc = tmp_path / "ablation.md"
    results = [_run(arm, seed, 0.3, 6.0) for arm in ARMS for seed in (0, 1)]
    write_doc(results, tmp_path, doc, 10, 20, None)
    assert "- SA gives better edits (edit accuracy, split test): **the spread cannot decide**." in doc.read_text()
