"""A finished power (or assurance) study: :class:`PowerResult`, its tables, figure and files.

Every table is computed from the raw rows (:mod:`analysis.power.raw`) with the study's decision
thresholds (:mod:`analysis.power.summary`), unless they are overridden.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.power.closed_form_design import closed_form_table
from analysis.power.design import PowerDesign
from analysis.power.prior import DesignPrior
from analysis.power.settings import PowerSettings
from analysis.power.summary import closed_form_gap, smallest_n, summarise

__all__ = ["PowerResult"]


@dataclass
class PowerResult:
    """A finished power (or assurance) study.

    Attributes
    ----------
    raw : DataFrame
        One row per simulation, site and analysis (:data:`~analysis.power.raw.RAW_COLUMNS`, plus
        ``prior_draw`` and ``prior.*`` for assurance): estimates, SEs, df, p-values, posterior
        quantiles, diagnostics. Every summary is computed from it.
    design, analyses, settings, prior, seed, sims
        What produced it.
    """

    raw: pd.DataFrame
    design: PowerDesign
    analyses: tuple[str, ...]
    settings: PowerSettings
    prior: DesignPrior | None
    seed: int
    sims: int

    @property
    def kind(self) -> str:
        """``"assurance"`` with a design prior, else ``"power"``."""
        return "assurance" if self.prior is not None else "power"

    def summary(self, alpha: float | None = None, prob: float | None = None, rope: float | None = None) -> pd.DataFrame:
        """:func:`~analysis.power.summary.summarise` with the study's settings unless overridden."""
        s = self.settings
        return summarise(self.raw, s.alpha if alpha is None else alpha, s.prob if prob is None else prob,
                         rope if rope is not None else s.rope, s.direction)

    def smallest_n(self, target: float = 0.8) -> pd.DataFrame:
        """:func:`~analysis.power.summary.smallest_n` of :meth:`summary`."""
        return smallest_n(self.summary(), target)

    def closed_form(self) -> pd.DataFrame:
        """The closed-form power of each analysis that has one (LMM, MMRM), per site (and contrast)
        and ``n``, on exactly the simulated design and test
        (:func:`~analysis.power.closed_form_design.closed_form_table`; at the design's point values
        for assurance)."""
        memo = self.__dict__.setdefault("_closed_form_memo", {})
        key = float(self.settings.alpha)
        if key not in memo:
            memo[key] = closed_form_table(self.design, self.analyses, alpha=self.settings.alpha)
        return memo[key].copy()

    def closed_form_gap(self) -> pd.DataFrame:
        """:meth:`summary` with the closed form beside each row and the z-score of the gap
        (:func:`~analysis.power.summary.closed_form_gap`; no z-score for assurance, whose simulated
        rows average over the design prior)."""
        gap = closed_form_gap(self.summary(), self.closed_form())
        if self.prior is not None:
            gap["z_gap"] = np.nan
        return gap

    def table(self) -> pd.DataFrame:
        """Wide table: one row per ``n``, one column per site/analysis/rule, ``power (MC SE)``."""
        s = self.summary()
        where = s["site"] + (" | " + s["contrast"] if "contrast" in s.columns else "")
        s = s.assign(label=where + " | " + s["analysis"] + " | " + s["criterion"],
                     cell=[f"{p:.3f} ({se:.3f})" for p, se in zip(s["power"], s["mc_se"])])
        wide = s.pivot(index="n", columns="label", values="cell")
        wide.columns.name = None
        return wide.reset_index()

    def figure(self, target: float = 0.8, label: str | None = None) -> Any:
        """Power curves with Wilson 95% Monte-Carlo intervals and the target (dotted), and the
        closed-form power of the LMM (dashed) and the MMRM (dotted) on the simulated design."""
        import matplotlib.pyplot as plt

        from analysis.figures.plots import PALETTE, style

        s = self.summary()
        cf = self.closed_form()
        colours = [PALETTE[c] for c in ("blue", "vermillion", "green", "orange", "sky", "purple", "black")]
        with style():
            fig, axes = plt.subplots(1, len(self.design.sites), figsize=(5.2 * len(self.design.sites), 3.8),
                                     squeeze=False, sharey=True)
            by_contrast = "contrast" in s.columns
            for ax, site in zip(axes[0], self.design.sites):
                ss = s[s["site"] == site]
                keys = ["contrast", "analysis", "criterion"] if by_contrast else ["analysis", "criterion"]
                for i, (key, g) in enumerate(ss.groupby(keys, sort=False)):
                    *contrast, analysis, crit = key
                    g = g.sort_values("n")
                    c = colours[i % len(colours)]
                    name = analysis if analysis != "bayes" else f"bayes: {crit}"
                    name = f"{contrast[0]}: {name}" if contrast else name
                    ax.errorbar(g["n"], g["power"], yerr=[g["power"] - g["ci_low"], g["ci_high"] - g["power"]],
                                color=c, marker="o", ms=3.5, lw=1.4, capsize=2, label=name)
                cs = cf[cf["site"] == site] if len(cf) else cf
                if len(cs) and self.prior is None:
                    keys = ["contrast", "analysis"] if by_contrast else ["analysis"]
                    for key, g in cs.groupby(keys, sort=False):
                        what = " ".join(np.atleast_1d(key).astype(str))
                        ax.plot(g["n"], g["closed_form_power"], color=PALETTE["black"], lw=1,
                                ls="--" if str(np.atleast_1d(key)[-1]) == "lmm" else ":",
                                label=f"closed form: {what}")
                ax.axhline(target, color=PALETTE["grey"], ls=":", lw=1)
                ax.set_ylim(0, 1.02)
                ax.set_xlabel("patients per study (n)")
                ax.set_title(site.replace("_", " "))
            axes[0][0].set_ylabel(self.kind + " (95% MC interval)")
            axes[0][-1].legend(loc="lower right", fontsize=7)
            fig.suptitle(f"{self.kind.capitalize()} by simulation ({self.sims} studies per n, seed {self.seed})",
                         fontsize=10)
            if label:
                fig.text(0.995, 0.995, label, ha="right", va="top", fontsize=7, color=PALETTE["grey"])
            fig.tight_layout()
        return fig

    def to_dict(self, target: float = 0.8) -> dict[str, Any]:
        """JSON-serialisable summary (no raw rows)."""
        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(df.to_json(orient="records"))

        return {"kind": self.kind, "sims": self.sims, "seed": self.seed, "analyses": list(self.analyses),
                "design": self.design.to_dict(), "design_used": self.design.describe(),
                "settings": self.settings.to_dict(),
                "prior": None if self.prior is None else {"source": self.prior.source, "n_draws": len(self.prior.draws)},
                "target": target, "summary": records(self.summary()), "smallest_n": records(self.smallest_n(target)),
                "closed_form": records(self.closed_form()),
                "closed_form_gap": records(self.closed_form_gap()),
                "failed_fits": int((~self.raw["ok"].astype(bool)).sum()) if len(self.raw) else 0}

    def save(self, out: str | os.PathLike, target: float = 0.8) -> dict[str, Path]:
        """Write ``raw.parquet``, ``summary.csv``, ``smallest_n.csv``, ``power_table.csv``,
        ``power_curve.png/.svg`` and ``result.json`` to ``out`` (each atomically)."""
        from analysis.common.io import (
            atomic_write_bytes,
            atomic_write_json,
            atomic_write_text,
        )
        from analysis.figures.plots import save_figure

        out = Path(out)
        buf = io.BytesIO()
        self.raw.to_parquet(buf, index=False)
        paths = {"raw": atomic_write_bytes(out / "raw.parquet", buf.getvalue()),
                 "summary": atomic_write_text(out / "summary.csv", self.summary().to_csv(index=False)),
                 "smallest_n": atomic_write_text(out / "smallest_n.csv", self.smallest_n(target).to_csv(index=False)),
                 "table": atomic_write_text(out / "power_table.csv", self.table().to_csv(index=False)),
                 "result": atomic_write_json(out / "result.json", self.to_dict(target))}
        if len(self.raw):
            for fmt, p in save_figure(self.figure(target), out, "power_curve").items():
                paths[f"figure_{fmt}"] = p
        return paths
