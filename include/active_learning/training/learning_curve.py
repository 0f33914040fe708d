"""A project's learning curve: F1 (overall and per label) against the completions each model was trained on."""

from __future__ import annotations

import csv
from pathlib import Path

from active_learning.store import TrainingView

ARTIFACT_DIR = "learning_curve"


def curve_rows(history: list[TrainingView]) -> list[dict[str, object]]:
    """One row per registered model, in order of training data size."""
    trained = [t for t in history if t.model_version is not None and t.metrics and t.completions_used]
    labels = sorted({label for t in trained for label in t.metrics.get("per_label", {})})
    rows = []
    for t in sorted(trained, key=lambda t: (t.completions_used, t.started_at)):
        per_label = t.metrics.get("per_label", {})
        rows.append({
            "model_name": t.model_name, "trained_at": t.started_at.isoformat(timespec="seconds"),
            "completions": t.completions_used, "f1": t.metrics["f1"],
            **{f"f1_{label}": per_label.get(label, {}).get("f1", "") for label in labels},
        })
    return rows


def write_curve(rows: list[dict[str, object]], folder: Path, project: str) -> list[Path]:
    """``learning_curve.csv`` and ``learning_curve.png`` in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = folder / "learning_curve.csv", folder / "learning_curve.png"
    with csv_path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figure, axes = plt.subplots(figsize=(7, 4))
    x = [row["completions"] for row in rows]
    axes.plot(x, [row["f1"] for row in rows], marker="o", linewidth=2.5, label="all labels")
    for key in [k for k in rows[0] if k.startswith("f1_")]:
        points = [(row["completions"], row[key]) for row in rows if row[key] != ""]
        axes.plot([p[0] for p in points], [p[1] for p in points], marker=".", linestyle="--", label=key[3:])
    axes.set(xlabel="completions trained on", ylabel="dev F1", ylim=(0, 1), title=f"{project}: learning curve")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return [csv_path, png_path]
