"""The sweep's outputs: a CSV and a JSON table, a Pareto plot (PNG) and a Markdown report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

COLUMNS = ("config", "status", "lut", "ff", "dsp", "bram", "clock_mhz", "clock_source",
           "peak_gmacs", "cycles", "latency_ms", "utilization", "tuned_layers", "params",
           "reason")


def objective(record: dict) -> tuple[str, float] | None:
    """What ranks a fitting point: its latency (lower is better), else its peak MAC/s."""
    if record.get("status") != "ok":
        return None
    if record.get("latency_ms") is not None:
        return "latency_ms", record["latency_ms"]
    return "peak_gmacs", -record["peak_gmacs"]


def pareto(records: list[dict], resource: str) -> list[dict]:
    """The fitting points no other point beats on both `resource` and the objective."""
    ranked = sorted((r for r in records if objective(r) is not None),
                    key=lambda r: (r[resource], objective(r)[1]))
    front, best = [], float("inf")
    for record in ranked:
        if objective(record)[1] < best:
            front.append(record)
            best = objective(record)[1]
    return front


def best_point(records: list[dict]) -> dict | None:
    """The best fitting point: lowest latency (or highest peak MAC/s), then fewest LUTs."""
    ranked = [r for r in records if objective(r) is not None]
    return min(ranked, key=lambda r: (objective(r)[1], r["lut"])) if ranked else None


def write_tables(records: list[dict], meta: dict, out: Path) -> None:
    """sweep.csv (one row a point) and sweep.json (meta and records)."""
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({**record, "params": json.dumps(record.get("params", {}))})
    (out / "sweep.json").write_text(json.dumps({**meta, "points": records}, indent=1))


# How a point's overrides other than its GEMM shape read in a plot label.
_SHORT = {"inp_bits": "i", "wgt_bits": "w", "acc_bits": "a", "out_bits": "o",
          "axi_data_bits": "bus", "lut_mult_bits": "lut", "uop_depth": "uop", "inp_depth": "inp",
          "wgt_depth": "wgt", "acc_depth": "acc", "insn_queue_depth": "q", "dep_queue_depth": "d"}


def short_label(record: dict) -> str:
    """A point's plot label: its GEMM shape, then its other overrides (e.g. 1x16x8 i4 w4 lut4)."""
    shape = record["config"].split("_")[0]
    extra = [f"{_SHORT.get(k, k)}{v}" for k, v in record.get("params", {}).items()
             if k not in ("batch", "block_in", "block_out")]
    return " ".join([shape, *extra])


def write_plot(records: list[dict], meta: dict, path: Path) -> None:
    """Latency (or peak GMAC/s) against LUTs and DSPs, the Pareto front of each drawn."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fitting = [r for r in records if objective(r) is not None]
    by_latency = any(r.get("latency_ms") is not None for r in fitting)
    key = "latency_ms" if by_latency else "peak_gmacs"
    label = f"latency of {meta.get('model_name', 'the model')} (ms)" if by_latency \
        else "peak GMAC/s"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, resource in zip(axes, ("lut", "dsp"), strict=True):
        ax.scatter([r[resource] for r in fitting], [r[key] for r in fitting], color="tab:blue")
        for r in fitting:
            ax.annotate(short_label(r), (r[resource], r[key]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        front = pareto(fitting, resource)
        ax.plot([r[resource] for r in front], [r[key] for r in front], color="tab:red",
                drawstyle="steps-post" if by_latency else "default", label="Pareto front")
        ax.set_xlabel(f"{resource.upper()}s ({meta['units'][resource]})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Loom sweep on {meta['board']} ({len(fitting)} of {len(records)} points fit)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_markdown(records: list[dict], meta: dict, path: Path) -> None:
    """A short report: the grid, every point, and the best configuration that fits."""
    best = best_point(records)
    lines = [f"# Sweep on {meta['board']}", ""]
    if meta.get("model"):
        lines.append(f"Model: `{meta['model']}`; DRAM model `{meta['dram']}`.")
    lines += [f"{len(records)} points; clock: post-route Fmax where measured, else the board's "
              f"target ({meta['target_mhz']:g} MHz).", ""]
    if best is None:
        lines.append("**No configuration fits the board.**")
    else:
        what = (f"{best['latency_ms']} ms per inference ({best['cycles']:,} cycles at "
                f"{best['clock_mhz']} MHz, {best['clock_source']})"
                if best.get("latency_ms") is not None else f"{best['peak_gmacs']} GMAC/s peak")
        lines.append(f"**Best configuration that fits: `{best['config']}`** — {what}, "
                     f"{best['lut']:,} LUT, {best['dsp']} DSP, {best['bram']:g} BRAM.")
    lines += ["", "| config | status | LUT | FF | DSP | BRAM | MHz | peak GMAC/s | cycles | "
              "latency ms | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        cells = [r.get("config", json.dumps(r["params"])), r["status"]]
        cells += [_cell(r.get(k)) for k in ("lut", "ff", "dsp", "bram", "clock_mhz",
                                            "peak_gmacs", "cycles", "latency_ms")]
        cells.append(r.get("reason", "").replace("|", "/")[:160])
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
