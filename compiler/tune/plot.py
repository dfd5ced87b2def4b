"""The tuning plot: best-so-far cycles against trials, one panel per layer, tuner vs random."""

from __future__ import annotations

import math
from pathlib import Path

from compiler.tune.search import TuneResult


def plot_convergence(tuned: list[TuneResult], baseline: list[TuneResult] | None,
                     path: str | Path) -> None:
    """Write a PNG with a panel per layer: best cycles so far after each trial."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    count = len(tuned)
    cols = min(4, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for index, result in enumerate(tuned):
        ax = axes[index // cols][index % cols]
        curves = [("tuner", result, "tab:blue")]
        if baseline is not None:
            curves.append(("random", baseline[index], "tab:gray"))
        for label, run, colour in curves:
            ys = [y / 1e3 for y in run.best_so_far()]
            ax.step(range(1, len(ys) + 1), ys, where="post", label=label, color=colour)
        ax.set_title(", ".join(result.task.nodes[:2]) + (" …" if len(result.task.nodes) > 2
                                                          else ""), fontsize=8)
        ax.set_xlabel("trials")
        ax.set_ylabel("best kcycles")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for index in range(count, rows * cols):
        axes[index // cols][index % cols].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
