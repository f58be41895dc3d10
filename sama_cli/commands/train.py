"""`sama train RECIPE.yaml [key.sub=value ...]` (also under `torchrun --nproc_per_node=N -m sama_cli train`)."""

from __future__ import annotations

import json
import sys

import typer

from sama_cli.console import err, rank


def train(
    recipe: str = typer.Argument(..., help="A recipe YAML (see recipes/)."),
    overrides: list[str] = typer.Argument(None, help="key.sub=value overrides, e.g. optim.lr=3e-4 train.steps=100.",
                                          show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (rank 0)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Start fresh even if OUT has checkpoints."),
) -> None:
    """Train SAMA from a recipe; resumes from the newest checkpoint in train.out_dir."""
    from rich.live import Live
    from rich.table import Table

    from sama_cli.config import load_recipe
    from sama_cli.train import train as run

    extra = list(overrides or []) + (["train.resume=false"] if no_resume else [])
    r = load_recipe(recipe, extra)
    live = None
    if rank() == 0 and err.is_terminal:
        live = Live(console=err, refresh_per_second=4, transient=False)
        live.start()

    def on_log(rec: dict) -> None:
        line = (f"step {rec['step']}/{r.train.steps}  loss {rec['loss']:.4f}  fm {rec['loss_fm']:.4f}  "
                f"sem {rec['loss_sem']:.4f}  lr {rec['lr']:.2e}  gnorm {rec['grad_norm']:.3f}  "
                f"skipped {rec['skipped']}  {rec['time']:.0f}s")
        if live is not None:
            live.update(line)
        else:
            err.print(line)

    try:
        result = run(r, on_log=on_log)
    finally:
        if live is not None:
            live.stop()
    if rank() != 0:
        return
    table = Table(title=f"sama train: {r.name}", show_edge=False, show_header=False)
    table.add_row("steps", str(result.steps))
    table.add_row("final loss", f"{result.final_loss:.4f}")
    table.add_row("skipped steps", str(result.skipped))
    table.add_row("seconds", f"{result.seconds:.1f}")
    table.add_row("s/step data | compute | optimizer",
                  " | ".join(f"{result.timing[k]:.4f}" for k in ("data", "compute", "optimizer")))
    for k, v in result.export.items():
        table.add_row(f"export ({k})", v)
    table.add_row("metrics", str(result.out_dir / "metrics.jsonl"))
    err.print(table)
    if as_json:
        sys.stdout.write(json.dumps({"steps": result.steps, "final_loss": result.final_loss, "skipped": result.skipped,
                                     "seconds": result.seconds, "timing": result.timing, "export": result.export,
                                     "out_dir": str(result.out_dir)}) + "\n")


def register(app: typer.Typer) -> None:
    app.command("train", no_args_is_help=True)(train)
