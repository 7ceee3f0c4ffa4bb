r"""Simulated power against its closed form, on the designs the simulator draws (issue #18, part 1).

For the twin's design (the cohort generator: groups derived from DAS28-CRP, MAR dropout calibrated
to the target) and a randomised 1:1 design (the generator of a design from data, two arms, MCAR
dropout), at n = 30, 60, 120 and dropout 0, 20% and 43%, the LMM slope test and the MMRM endpoint
contrast are simulated (``--sims`` studies per cell, default 1000) and compared with
:func:`analysis.power.closed_form_design.closed_form_table`; the z-score of the gap is
:math:`(\hat p - p_{cf}) / \sqrt{p_{cf}(1 - p_{cf})/K}` (:func:`analysis.power.summary.closed_form_gap`).
Printed: one row per design, dropout, analysis and n, then how many gaps exceed 2 and 3.

Simulations are kept under ``--out`` (default ``outputs/bench_power_closed_form``) and resumed, so a
second run only recomputes the closed forms. Run::

    .venv/bin/python tests/benchmarks/bench_power_closed_form.py --sims 1000 --workers 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analysis.power import PowerDesign, run_power
from analysis.power.closed_form_design import closed_form_table
from analysis.power.data_model import DataModel, SiteModel
from analysis.power.summary import closed_form_gap


def randomised_model(effect_per_year: float = 0.0135) -> DataModel:
    """A two-arm 1:1 trial like the twin's spine (0.911 g/cm^2, slope SD 1.5%/year, DXA CV 1.1%,
    intercept-slope correlation -0.2), DXA at 0, 6 and 12 months, control losing 2.4%/year and the
    active arm ``effect_per_year`` g/cm^2/year less."""
    base, control = 0.911, -0.024 * 0.911
    site = SiteModel(site="spine", intercept={"control": base, "active": base},
                     slope={"control": control, "active": control + effect_per_year},
                     slope_se={"control": 0.0, "active": 0.0}, contrast_se={"active": 0.0},
                     sd_intercept=0.143, sd_slope=0.015 * base, corr=-0.2, sigma=0.011 * base)
    return DataModel(source="a randomised 1:1 trial", levels=("control", "active"), reference="control",
                     allocation=(0.5, 0.5), counts=(50, 50), visits=(0.0, 6.0, 12.0), endpoint=12.0,
                     retention=(1.0, 1.0, 1.0), sites=(site,))


def designs(ns: tuple[int, ...], dropout: float) -> dict[str, PowerDesign]:
    return {"twin": PowerDesign(n=ns, dropout=dropout),
            "randomised 1:1": PowerDesign(n=ns, sites=("spine",), generator="data", dropout=dropout,
                                          data_model=randomised_model())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=1000)
    ap.add_argument("--n", default="30,60,120")
    ap.add_argument("--dropout", default="0,0.2,0.43")
    ap.add_argument("--design", action="append", choices=["twin", "randomised 1:1"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_power_closed_form")
    args = ap.parse_args()
    ns = tuple(int(v) for v in args.n.split(","))
    rows = []
    for dropout in (float(v) for v in args.dropout.split(",")):
        for name, pdz in designs(ns, dropout).items():
            if args.design and name not in args.design:
                continue
            t0 = time.perf_counter()
            out = args.out / f"{name.replace(' ', '_').replace(':', '-')}_d{dropout:g}"
            res = run_power(pdz, args.sims, args.seed, analyses=("lmm", "mmrm"), workers=args.workers, out=out)
            t1 = time.perf_counter()
            closed = closed_form_table(res.design, ("lmm", "mmrm"), alpha=res.settings.alpha)
            t2 = time.perf_counter()
            gap = closed_form_gap(res.summary(), closed)
            gap = gap.assign(design=name, dropout=dropout)
            rows.append(gap)
            print(f"# {name}, dropout {dropout:g}: simulations {t1 - t0:.0f} s, closed form {t2 - t1:.1f} s",
                  flush=True)
    tab = pd.concat(rows, ignore_index=True)
    cols = ["design", "dropout", "analysis", "n", "sims", "lost_fraction", "power", "mc_se", "closed_form_power",
            "z_gap", "failed"]
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(tab[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    z = tab["z_gap"].abs().to_numpy(dtype=float)
    print(f"\n{len(z)} cells: |z| > 2 in {int(np.sum(z > 2))} (expected about {0.046 * len(z):.1f} by chance), "
          f"|z| > 3 in {int(np.sum(z > 3))}; max |z| {np.nanmax(z):.2f}; mean z {np.nanmean(tab['z_gap']):+.2f}")


if __name__ == "__main__":
    main()
