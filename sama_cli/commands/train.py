"""`sama train RECIPE.yaml [key.sub=value ...]` (also under `torchrun --nproc_per_node=N -m sama_cli train`)."""

from __future__ import annotations

import json
import os
import sys

import typer

from sama_cli.core.console import err
from sama_cli.core.distributed import rank


def _stats(rec: dict) -> str:
    """Loss parts, step time and throughput of one metrics row."""
    return (f"loss {rec['loss']:.4f} (fm {rec['loss_fm']:.4f}, sem {rec['loss_sem']:.4f})  "
            f"{rec['step_time']:.3f} s/step  {rec['samples_per_s']:.1f} samples/s  lr {rec['lr']:.2e}  "
            f"gnorm {rec['grad_norm']:.3f}  skipped {rec['skipped']}")


def _eta(rec: dict, total: int) -> str:
    """Time left at the step time of the last logged steps, as h:mm:ss."""
    minutes, seconds = divmod(round(max(0, total - rec["step"]) * rec["step_time"]), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def train(
    recipe: str = typer.Argument(..., help="A recipe YAML (see recipes/)."),
    overrides: list[str] = typer.Argument(None, help="key.sub=value overrides, e.g. optim.lr=3e-4 train.steps=100.",
                                          show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (rank 0)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Start fresh even if OUT has checkpoints."),
) -> None:
    """Train SAMA from a recipe; resumes from the newest checkpoint in train.out_dir."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text

    class TrainProgress(Progress):
        """The bar, then the latest loss parts and speeds on a line of their own (too wide for one)."""

        def get_renderables(self):
            yield self.make_tasks_table(self.tasks)
            for t in self.tasks:
                yield Text(t.fields["stats"], no_wrap=False, overflow="fold")

    from sama_cli.train.loop import train as run
    from sama_cli.train.recipe import load_recipe

    extra = list(overrides or []) + (["train.resume=false"] if no_resume else [])
    r = load_recipe(recipe, extra)
    # a progress bar on rank 0 at a terminal (or with SAMA_PROGRESS=1); otherwise a log line per logged step
    bar = task = None
    if rank() == 0 and (err.is_terminal or os.environ.get("SAMA_PROGRESS") == "1"):
        bar = TrainProgress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("eta {task.fields[eta]}"), console=err, refresh_per_second=4)
        task = bar.add_task("train", total=r.train.steps, stats="", eta="-")
        bar.start()

    def on_log(rec: dict) -> None:  # called on rank 0 at each logged step
        if bar is not None:
            bar.update(task, completed=rec["step"], stats=_stats(rec), eta=_eta(rec, r.train.steps))
        else:
            err.print(f"step {rec['step']}/{r.train.steps}  {_stats(rec)}  eta {_eta(rec, r.train.steps)}")

    try:
        result = run(r, on_log=on_log)
    finally:
        if bar is not None:
            bar.stop()
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
