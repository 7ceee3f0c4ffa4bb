"""Tests of ``models/priors.py``: the named prior sets say what their documentation says (in
closed form), unknown names fail clearly, the description table is complete, and every set
can be swapped into a built trajectory model as data."""

from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
import pytest
from scipy import stats

import models  # noqa: F401  (compile caches before pymc)
from models.priors import (
    BETWEEN_PATIENT_SD,
    DXA_CV_PCT,
    PRIOR_SET_DESCRIPTIONS,
    PRIOR_SET_NAMES,
    REFERENCE_BMD,
    SLOPE_SD_PCT,
    prior_set,
    prior_table,
)
from models.trajectory import SITES, TrajectoryPriors, build_trajectory_model
from tests.lmm_sim import simulate_lmm

ALL = [(name, site) for name in PRIOR_SET_NAMES for site in SITES]


@pytest.mark.parametrize(("name", "site"), ALL)
def test_every_set_is_valid_trajectory_priors(name, site):
    p = prior_set(name, site)
    assert isinstance(p, TrajectoryPriors)
    assert all(np.isfinite(v) and v > 0 for v in asdict(p).values())


def test_default_is_the_model_default_and_site_independent():
    assert PRIOR_SET_NAMES[0] == "weakly_informative"
    for site in SITES:
        assert prior_set("weakly_informative", site) == TrajectoryPriors()


def test_unknown_names_fail_with_one_line():
    with pytest.raises(ValueError, match="unknown prior set 'flat'; expected one of weakly_info"):
        prior_set("flat", "spine")
    with pytest.raises(ValueError, match="site must be one of"):
        prior_set("literature", "hip")


@pytest.mark.parametrize("site", SITES)
def test_sceptical_puts_five_percent_on_a_two_percent_difference(site):
    p, default = prior_set("sceptical", site), TrajectoryPriors()
    changed = {f.name for f in fields(p) if getattr(p, f.name) != getattr(default, f.name)}
    assert changed == {"responder_slope_sd"}
    two_pct = 0.02 * REFERENCE_BMD[site]
    tail = 2 * stats.norm.sf(two_pct, 0.0, p.responder_slope_sd)
    assert tail == pytest.approx(0.05, rel=1e-9)
    assert p.responder_slope_sd < default.responder_slope_sd / 4  # tight


@pytest.mark.parametrize("site", SITES)
def test_literature_set_matches_the_literature_figures(site):
    p, ref = prior_set("literature", site), REFERENCE_BMD[site]
    half_normal_median = stats.halfnorm.median
    # prior medians of the SDs are the published values
    assert half_normal_median(scale=p.sd_intercept_scale) == pytest.approx(BETWEEN_PATIENT_SD[site])
    assert half_normal_median(scale=p.sigma_scale) == pytest.approx(DXA_CV_PCT[site] / 100 * ref)
    assert half_normal_median(scale=p.sd_slope_scale) == pytest.approx(SLOPE_SD_PCT[site] / 100 * ref)
    # residual SD: the published precision range lies inside the prior's central 50%
    cv_low, cv_high = {"spine": (1.0, 1.2), "femoral_neck": (1.5, 2.0)}[site]
    lo, hi = stats.halfnorm.ppf([0.25, 0.75], scale=p.sigma_scale)
    assert lo < cv_low / 100 * ref < cv_high / 100 * ref < hi
    # slope: the 95% prior interval covers the 0.5-4%/yr loss of untreated RA
    assert -0.06 * ref < stats.norm.ppf(0.025, 0.0, p.slope_sd) < -0.04 * ref
    assert p.responder_slope_sd == p.slope_sd


def test_literature_is_site_specific_and_sets_are_ordered():
    lit_s, lit_f = prior_set("literature", "spine"), prior_set("literature", "femoral_neck")
    assert lit_f.sigma_scale > lit_s.sigma_scale  # femoral neck DXA is less precise
    assert lit_f.sd_intercept_scale > lit_s.sd_intercept_scale
    for site in SITES:
        sd = [prior_set(n, site).responder_slope_sd
              for n in ("sceptical", "literature", "weakly_informative", "vague")]
        assert sd == sorted(sd) and len(set(sd)) == 4
        vague, default = asdict(prior_set("vague", site)), asdict(TrajectoryPriors())
        for name in TrajectoryPriors.FIELDS[: TrajectoryPriors.N_SCALES]:
            assert vague[name] >= 10 * default[name]
        assert vague["lkj_eta"] == 1.0  # uniform correlation


def test_table_describes_every_set_site_and_field():
    table = prior_table()
    n_fields = len(fields(TrajectoryPriors))
    assert len(table) == len(PRIOR_SET_NAMES) * len(SITES) * n_fields
    assert set(table["set"]) == set(PRIOR_SET_NAMES) == set(PRIOR_SET_DESCRIPTIONS)
    assert table["rationale"].str.len().min() > 5
    row = table[(table["set"] == "sceptical") & (table["site"] == "spine")
                & (table["field"] == "responder_slope_sd")].iloc[0]
    assert row["value"] == pytest.approx(prior_set("sceptical", "spine").responder_slope_sd)
    assert row["pct_of_reference"] == pytest.approx(100 * row["value"] / 0.911)
    assert row["distribution"].startswith("Normal(0, 0.00929")
    assert row["prior_95"] == pytest.approx(0.02 * 0.911)
    assert np.isnan(table.loc[table["field"] == "lkj_eta", "pct_of_reference"]).all()
    small = prior_table(sets=["vague"], sites=["femoral_neck"])
    assert len(small) == n_fields and set(small["site"]) == {"femoral_neck"}
    with pytest.raises(ValueError, match="unknown prior set"):
        prior_table(sets=["nope"])


def test_sets_swap_into_a_built_model_as_data():
    df = simulate_lmm(20, seed=4)
    tm = build_trajectory_model(df, "spine")
    y_scale = tm.prepared.y_scale
    for name in PRIOR_SET_NAMES:
        p = prior_set(name, "spine")
        tm.set_data(priors=p)
        held = tm.pymc_model["prior"].get_value()
        np.testing.assert_allclose(held, p.to_array(y_scale))
        assert held[TrajectoryPriors.FIELDS.index("responder_slope_sd")] == pytest.approx(
            p.responder_slope_sd / y_scale)
