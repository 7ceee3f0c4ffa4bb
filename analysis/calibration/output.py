"""The calibration table as CSV and Markdown, and the coverage figure (PNG + SVG).

The Markdown carries the date, rajak's version, the root seed, the number of data sets and the
command that reproduces it, then one row per estimator and the designs. The figure shows each
estimator's coverage with :math:`\\pm 2` Monte-Carlo SE bars, the 93-97% band and the nominal 95%
line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["coverage_figure", "markdown_table", "write_outputs"]


def _g(v: float, digits: int = 3) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


def _pct(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{100 * v:.1f}"


def markdown_table(summary: pd.DataFrame, meta: dict[str, Any]) -> str:
    """The Markdown report of a calibration study (``meta``: date, version, seed, datasets, command)."""
    lines = [(f"Calibration of rajak's estimators: {meta.get('datasets')} data sets per estimator, root seed "
              f"{meta.get('seed')}, rajak {meta.get('version')}, {meta.get('date')}."), "",
             f"Reproduce: `{meta.get('command')}`", "",
             ("| estimator | family | R | truth | bias (MCSE) | emp. SE | model SE | SE ratio | coverage % (MCSE) "
              "| excl. 0 % | s / data set | verdict |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in summary.itertuples(index=False):
        lines.append(f"| {r.estimator} | {r.family} | {r.datasets - r.failed}"
                     f"{f' (+{r.failed} failed)' if r.failed else ''} | {_g(r.truth, 4)} | {_g(r.bias, 2)} "
                     f"({_g(r.bias_mcse, 2)}) | {_g(r.empirical_se)} | {_g(r.model_se)} | {_g(r.se_ratio)} | "
                     f"{_pct(r.coverage)} ({_pct(r.coverage_mcse)}) | {_pct(r.excludes_zero)} | "
                     f"{_g(r.seconds_per_dataset, 2)} | {r.verdict} |")
    lines += ["", ("Coverage MCSE is sqrt(c(1-c)/R); \"excl. 0\" is the share of intervals excluding 0 (under a "
                   "null design the type I error). Truths and SEs in the estimand's units."), "", "Designs:", ""]
    for r in summary.itertuples(index=False):
        extra = f"; {r.notes}" if r.notes else ""
        lines.append(f"- `{r.estimator}`: {r.design}; truth: {r.estimand}{extra}.")
    return "\n".join(lines) + "\n"


def coverage_figure(summary: pd.DataFrame, meta: dict[str, Any]):
    """Coverage per estimator with +-2 MCSE bars, the 93-97% band and the 95% line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.calibration.summary import BAND
    from analysis.figures.theme import PALETTE

    s = summary.iloc[::-1].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.0, 0.9 + 0.32 * len(s)))
    ax.axvspan(*BAND, color=PALETTE["green"], alpha=0.12, lw=0, label="93-97%")
    ax.axvline(0.95, color=PALETTE["black"], lw=1.0, ls="--", label="nominal 95%")
    colours = [PALETTE["blue"] if str(v).startswith("93-97%") else PALETTE["vermillion"] for v in s["verdict"]]
    y = np.arange(len(s))
    ax.errorbar(s["coverage"], y, xerr=2 * s["coverage_mcse"].fillna(0.0), fmt="none", ecolor=PALETTE["grey"],
                elinewidth=1.2, capsize=2)
    ax.scatter(s["coverage"], y, c=colours, zorder=3, s=22)
    ax.set_yticks(y, s["estimator"])
    low = float(np.nanmin(np.r_[s["coverage"] - 2 * s["coverage_mcse"].fillna(0.0), 0.85]))
    ax.set_xlim(max(0.0, low - 0.02), 1.005)
    ax.set_xlabel("coverage of the nominal 95% interval (bars: +-2 Monte-Carlo SE)")
    ax.set_title(f"Calibration: {meta.get('datasets')} data sets per estimator, seed {meta.get('seed')}", fontsize=9)
    ax.legend(loc="lower left", fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def write_outputs(summary: pd.DataFrame, raw: pd.DataFrame, meta: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``calibration.csv``, ``calibration.md``, ``raw.csv`` and ``calibration_coverage.png``/``.svg``
    into ``out`` atomically; returns their paths."""
    from analysis.common.io import atomic_write_text
    from analysis.figures.output import save_figure

    out = Path(out)
    paths = {"csv": atomic_write_text(out / "calibration.csv", summary.to_csv(index=False)),
             "markdown": atomic_write_text(out / "calibration.md", markdown_table(summary, meta)),
             "raw": atomic_write_text(out / "raw.csv", raw.to_csv(index=False))}
    figs = save_figure(coverage_figure(summary, meta), out, "calibration_coverage")
    paths.update({f"figure_{k}": v for k, v in figs.items()})
    return paths
