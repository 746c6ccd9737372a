"""Training metrics as long-format CSV and TensorBoard scalars."""

from __future__ import annotations

import csv
from pathlib import Path


class MetricsLogger:
    """Metrics as long-format CSV (step, epoch, split, metric, value) and TensorBoard scalars ``split/metric``.

    On resume the CSV keeps only rows up to the resumed step, so it reads like one uninterrupted run.
    """

    def __init__(self, output_dir: Path, resume_step: int | None) -> None:
        self.csv_path = output_dir / "metrics.csv"
        rows: list[list[str]] = []
        if resume_step is not None and self.csv_path.is_file():
            with open(self.csv_path, newline="") as handle:
                rows = [r for r in list(csv.reader(handle))[1:] if r and int(r[0]) <= resume_step]
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.csv_path, "w", newline="") as handle:
            csv.writer(handle).writerows([["step", "epoch", "split", "metric", "value"], *rows])
        self.tensorboard = None
        try:
            from tensorboardX import SummaryWriter

            self.tensorboard = SummaryWriter(str(output_dir / "tensorboard"))
        except ImportError:  # optional: CSV remains the record
            print("[train] tensorboardX is not installed: metrics go to metrics.csv only")

    def log(self, step: int, epoch: int, split: str, metrics: dict[str, float]) -> None:
        with open(self.csv_path, "a", newline="") as handle:
            writer = csv.writer(handle)
            for name, value in metrics.items():
                writer.writerow([step, epoch, split, name, f"{value:.8g}"])
                if self.tensorboard is not None:
                    self.tensorboard.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
