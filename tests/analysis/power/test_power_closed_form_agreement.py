"""Simulated power against its closed form on the same design (issue #18, part 1), reduced form.

The full check (1,000 studies per cell, n = 30, 60, 120, dropout 0, 20%, 43%, within 2 Monte-Carlo
SEs) is ``tests/benchmarks/bench_power_closed_form.py``; here a few small-n cells with 250 studies
(``--full-studies``: 1,000) must agree within 4 Monte-Carlo SEs of the closed form, for the LMM
slope test, the MMRM endpoint contrast and the completers' Welch t-test: the twin's design (derived groups, random allocation;
without dropout, the case of the issue, and with 43% MAR dropout) and a randomised 1:1 trial
(the data generator, 20% MCAR dropout).
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.power import PowerDesign, run_power
from analysis.power.data_model import DataModel, SiteModel


def _randomised() -> DataModel:
    base, control = 0.911, -0.024 * 0.911
    site = SiteModel(site="spine", intercept={"control": base, "active": base},
                     slope={"control": control, "active": control + 0.0135},
                     slope_se={"control": 0.0, "active": 0.0}, contrast_se={"active": 0.0},
                     sd_intercept=0.143, sd_slope=0.015 * base, corr=-0.2, sigma=0.011 * base)
    return DataModel(source="a randomised 1:1 trial", levels=("control", "active"), reference="control",
                     allocation=(0.5, 0.5), counts=(50, 50), visits=(0.0, 6.0, 12.0), endpoint=12.0,
                     retention=(1.0, 1.0, 1.0), sites=(site,))


CASES = {
    "twin, no dropout": lambda: PowerDesign(n=(30,), dropout=0.0),
    "twin, 43% MAR dropout": lambda: PowerDesign(n=(30,), dropout=0.43),
    "randomised 1:1, 20% dropout": lambda: PowerDesign(n=(30,), sites=("spine",), generator="data", dropout=0.2,
                                                       data_model=_randomised()),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_simulated_power_agrees_with_the_closed_form(case, full_studies):
    k = 1000 if full_studies else 250
    res = run_power(CASES[case](), sims=k, seed=181, analyses=("lmm", "mmrm", "completers"), workers=2)
    gap = res.closed_form_gap()
    assert gap.loc[gap["analysis"] == "completers_wilcoxon", "closed_form_power"].isna().all()  # none
    gap = gap[gap["closed_form_power"].notna()]
    assert sorted(gap["analysis"]) == ["completers_t", "lmm", "mmrm"]
    for _, row in gap.iterrows():
        cf = row["closed_form_power"]
        assert 0.2 < cf < 0.95, (case, row["analysis"], cf)  # a power where the comparison means something
        assert abs(row["z_gap"]) <= 4.0, (case, row["analysis"], row["power"], cf, row["z_gap"])
        assert row["z_gap"] == pytest.approx((row["power"] - cf) / np.sqrt(cf * (1 - cf) / k))


def test_cli_prints_the_closed_form_beside_every_simulated_row(power_cli):
    """``rajak power --analysis lmm --n 30 --dropout 0`` (the issue's command): each row has its
    closed form on the simulated design and the z-score of the gap; JSON carries them too."""
    import json

    from analysis.power.closed_form_design import closed_form_table

    r = power_cli("--analysis", "lmm,mmrm", "--n", "30", "--dropout", "0", "--sims", "12", "--workers", "1")
    assert r.exit_code == 0, r.output
    header = next(line for line in r.output.splitlines() if "closed_form" in line and "z_gap" in line)
    rows = r.output.splitlines()[r.output.splitlines().index(header) + 1:][:2]
    cf = closed_form_table(PowerDesign(n=(30,), dropout=0.0), ("lmm", "mmrm")).set_index("analysis")
    for line, analysis in zip(rows, ("lmm", "mmrm")):
        assert analysis in line and f"{cf.loc[analysis, 'closed_form_power']:.3f}" in line, line
    assert "z_gap = (simulated - closed form) / Monte-Carlo SE" in r.output
    j = power_cli("--analysis", "lmm", "--n", "30", "--dropout", "0", "--sims", "4", "--workers", "1", "--json")
    gap = json.loads(j.stdout)["closed_form_gap"]
    assert gap[0]["closed_form_power"] == pytest.approx(cf.loc["lmm", "closed_form_power"])
    assert "z_gap" in gap[0]
