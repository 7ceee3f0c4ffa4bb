"""Per-visit dropout in power studies: PowerDesign, calibration, the Gaussian generator, design files
and ``rajak power --dropout h1,h2,h3``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.power import (PowerDesign, calibrate_dropout, calibrate_dropout_per_visit, load_power_design, run_power,
                            simulate_gaussian)
from models.simulate import Design, simulate

HZ = (0.1, 0.15, 0.2)


def _conditional_hazards(dropout_month, months=(3, 6, 12)):
    out = []
    for m in months:
        at_risk = int((np.isnan(dropout_month) | (dropout_month >= m)).sum())
        out.append(((dropout_month == m).sum() / at_risk, at_risk))
    return out


def test_power_design_per_visit_validation_and_round_trip():
    d = PowerDesign(dropout=[0.1, 0.15, 0.2])
    assert d.dropout == HZ and d.per_visit_dropout
    assert PowerDesign.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    with pytest.raises(ValueError, match=r"2 per-visit hazards \[0\.1, 0\.2\] but the design has 3 post-baseline "
                                         r"visits \(months 3, 6, 12\)"):
        PowerDesign(dropout=(0.1, 0.2))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\), got 1\.2 \(one per post-baseline visit, 3 visits\)"):
        PowerDesign(dropout=(0.1, 1.2, 0.2))
    # a scalar keeps its meaning: fraction without the final visit
    assert not PowerDesign(dropout=0.4).per_visit_dropout


def test_mcar_per_visit_calibration_is_exact():
    mcar = Design().with_updates(**{"dropout.mechanism": "mcar", "dropout.activity_log_odds": 0.0})
    assert calibrate_dropout(mcar, HZ).dropout.visit_hazard == HZ


def test_mar_per_visit_calibration_gives_the_requested_hazards():
    # MAR (the default design): the base hazards differ from the targets, the marginal ones do not
    cal = PowerDesign(dropout=HZ).resolved().design
    assert cal.dropout.per_visit and all(h0 < h for h0, h in zip(cal.dropout.visit_hazard, HZ))
    n = 20_000
    p = simulate(cal.with_updates(n_patients=n), seed=123).patients  # not the calibration sample
    for (obs, at_risk), h in zip(_conditional_hazards(p["dropout_month"].to_numpy()), HZ):
        se = np.sqrt(h * (1 - h) / at_risk) * np.sqrt(2)  # this sample and the calibration sample
        assert obs == pytest.approx(h, abs=4 * se)
    assert calibrate_dropout_per_visit(Design(), (0.0, 0.0, 0.0)).dropout.visit_hazard == (0.0, 0.0, 0.0)


def test_gaussian_generator_per_visit_dropout_matches_the_closed_form():
    n = 20_000
    g = simulate_gaussian(Design(), n, seed=9, dropout=HZ)
    last = g.groupby("patient_id")["month"].max().reindex([f"G{i + 1:04d}" for i in range(n)])
    h1, h2, h3 = HZ
    # DXA at 0, 6, 12; leaving at month 3 or 6 leaves only the baseline scan
    expected = {0: h1 + (1 - h1) * h2, 6: (1 - h1) * (1 - h2) * h3, 12: (1 - h1) * (1 - h2) * (1 - h3)}
    for month, p in expected.items():
        assert (last == month).mean() == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / n)), month
    # the scalar path is unchanged by the per-visit option
    a = simulate_gaussian(Design(), 50, seed=3, dropout=0.3)
    b = simulate_gaussian(Design(), 50, seed=3, dropout=0.3)
    assert a.equals(b) and a["patient_id"].nunique() == 50


def test_design_file_with_per_visit_dropout(tmp_path):
    f = tmp_path / "design.toml"
    f.write_text('n = "20:40:20"\ngenerator = "gaussian"\ndropout = [0.1, 0.15, 0.2]\n', encoding="utf-8")
    design, _ = load_power_design(f)
    assert design.dropout == HZ and design.n == (20, 40)
    res = run_power(design, sims=3, seed=1, analyses=("lmm",), workers=1)
    assert res.raw["ok"].all() and res.raw["lost_fraction"].gt(0).any()
    f.write_text('dropout = [0.1, 0.15]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"design file .*2 per-visit hazards"):
        load_power_design(f)


@pytest.mark.parametrize("value, message", [
    ("0.1,0.2", "2 per-visit hazards [0.1, 0.2] but the design has 3 post-baseline visits"),
    ("0.1,x,0.2", "--dropout must be a number or a comma-separated list"),
    ("0.1,1.0,0.2", "--dropout values must be in [0, 1), got 1"),
])
def test_cli_bad_per_visit_dropout_is_one_line_and_exit_2(power_cli, value, message):
    res = power_cli("--n", "30", "--dropout", value, "--sims", "2", "--workers", "1")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rajak: error: ") and message in lines[0]


def test_cli_per_visit_dropout(power_cli):
    res = power_cli("--n", "30", "--sims", "2", "--generator", "gaussian", "--dropout", "0.1,0.15,0.2", "--workers", "1",
              "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["design"]["dropout"] == list(HZ)
    one = json.loads(power_cli("--n", "30", "--sims", "2", "--generator", "gaussian", "--dropout", "0.3", "--workers", "1",
                         "--json", "--no-progress").stdout)
    assert one["design"]["dropout"] == 0.3
