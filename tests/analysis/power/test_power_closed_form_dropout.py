"""Closed forms with dropout and on the simulated design (issue #18, part 1), without simulation.

longpower's documented examples of ``power.mmrm`` (Lu, Luo & Chen 2008) and ``edland.linear.power``
to the printed digits (the values are longpower's own output for its documented calls); Lu, Luo &
Chen's Table 1; the engine of the simulated-design closed form reduces to Liu & Liang, Edland and
Lu, Luo & Chen in their settings; the twin's closed form is computed on the simulated design.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis.power import PowerDesign, edland_linear_power, lu_luo_chen_phi, power_mmrm
from analysis.power.closed_form import random_slope_covariance, slope_difference_power
from analysis.power.closed_form_design import (
    closed_form_table,
    dropout_patterns,
    gaussian_strata,
)
from analysis.power.closed_form_engine import Allocation, Stratum, contrast_power
from analysis.power.summary import closed_form_gap, gap_warnings

RA = np.full((4, 4), 0.25) + 0.75 * np.eye(4)
RETENTION = (1.0, 0.9, 0.8, 0.7)
ADAS_T = np.arange(0, 1.51, 0.25)


def test_power_mmrm_reproduces_longpowers_examples():
    """``example(power.mmrm)``: exchangeable 0.25, retention 1, .9, .8, .7, sigma 1."""
    a = power_mmrm(Ra=RA, ra=RETENTION, sigmaa=1, delta=0.5, power=0.80)
    assert a.n1 == pytest.approx(86.991750389036, rel=1e-10) and a.n2 == pytest.approx(a.n1)
    assert power_mmrm(N=174, Ra=RA, ra=RETENTION, sigmaa=1, delta=0.5, power=None).power == pytest.approx(
        0.800037187213, abs=1e-9)
    assert power_mmrm(N=174, Ra=RA, ra=RETENTION, sigmaa=1, power=0.80).delta == pytest.approx(
        0.499976293659, abs=1e-9)
    b = power_mmrm(Ra=RA, ra=RETENTION, sigmaa=1, delta=0.5, power=0.80, lambda_=2)
    assert (b.n1, b.n2) == pytest.approx((130.487625583554, 65.243812791777), rel=1e-10)
    assert power_mmrm(N=174, Ra=RA, ra=RETENTION, sigmaa=1, delta=0.5, power=None, lambda_=2).power == pytest.approx(
        0.752229099273, abs=1e-9)
    assert power_mmrm(N=174, Ra=RA, ra=RETENTION, sigmaa=1, power=0.80, lambda_=2).delta == pytest.approx(
        0.530304941519, abs=1e-9)
    # the level is the inverse too
    assert power_mmrm(N=a.n, Ra=RA, ra=RETENTION, sigmaa=1, delta=0.5, power=0.8,
                      sig_level=None).sig_level == pytest.approx(0.05, abs=1e-12)
    # without dropout phi = 1: the two-sample formula
    assert lu_luo_chen_phi(RA, (1, 1, 1, 1)) == pytest.approx(1.0)


def test_lu_luo_chen_table_1():
    """Lu, Luo & Chen (2008) Table 1 (as longpower's example computes it): total N for the z-test,
    delta = 0.5, 90% power, with phi = 1 (complete) or 2 (half retained) per group."""
    phi1 = (1, 1, 1, 1, 1, 1, 2, 2)
    phi2 = (1, 1, 2, 2, 2, 2, 2, 2)
    lam = (1, 2, np.sqrt(0.5), 0.5, 1, 2, 1, 2)
    ztest = (168.118768983, 189.133615106, 244.966998330, 252.178153475, 252.178153475, 315.222691843,
             336.237537966, 378.267230212)
    for p1, p2, la, z in zip(phi1, phi2, lam, ztest):
        res = power_mmrm(Ra=np.eye(1), ra=(1.0 / p1,), rb=(1.0 / p2,), sigmaa=1, delta=0.5, power=0.9, lambda_=la)
        assert (res.phi1, res.phi2) == pytest.approx((p1, p2))
        assert res.n == pytest.approx(z, rel=1e-10)


def test_edland_reproduces_longpowers_values():
    """``example(edland.linear.power)`` (ADAS-cog, no dropout: 207.3101 per group, as Diggle) and, with
    the share whose last visit is each visit p = t / sum(t), longpower's 262.6676."""
    res = edland_linear_power(delta=1.5, t=ADAS_T, sig2_s=24, sig2_e=10, power=0.80)
    assert res.n1 == pytest.approx(207.310093300903, rel=1e-10)
    p = ADAS_T / ADAS_T.sum()
    drop = edland_linear_power(delta=1.5, t=ADAS_T, sig2_int=55, sig_b0b1=0.8 * np.sqrt(55 * 24), sig2_s=24,
                               sig2_e=10, p=p, power=0.80)
    assert drop.n1 == pytest.approx(262.6676381340, rel=1e-9)
    assert edland_linear_power(n=drop.n1, delta=1.5, t=ADAS_T, sig2_int=55, sig_b0b1=0.8 * np.sqrt(55 * 24),
                               sig2_s=24, sig2_e=10, p=p).power == pytest.approx(0.8, abs=1e-12)


def _two_tailed(one_tail: float, alpha: float = 0.05) -> float:
    """A textbook power (far tail ignored) plus the far tail: the simulation rejects in either direction."""
    z = stats.norm.ppf(1 - alpha / 2)
    lam = stats.norm.ppf(one_tail) + z
    return one_tail + stats.norm.cdf(-z - lam)


def _slope_strata(v: np.ndarray, t: np.ndarray, slopes: tuple[float, float], p_last: np.ndarray) -> list[Stratum]:
    out = []
    for g, b in enumerate(slopes):
        for k, w in enumerate(p_last, start=1):
            if w > 0:
                out.append(Stratum(g, float(w), tuple(j < k for j in range(t.size)), b * t, v))
    return out


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_engine_is_liu_liang_and_edland_in_their_settings(ratio):
    """The design engine with the normal reference: Liu & Liang without dropout (1:1 and 2:1), Edland
    with monotone dropout (plus the far tail, which the textbook formulas ignore)."""
    v = random_slope_covariance(ADAS_T, 55, 24, 0.8 * np.sqrt(55 * 24), 10)
    n_tot = 300
    n1 = n_tot * ratio / (1 + ratio)
    alloc = Allocation((1 / (1 + ratio), ratio / (1 + ratio)), lambda n: [n / (1 + ratio), n * ratio / (1 + ratio)])
    complete = np.r_[np.zeros(ADAS_T.size - 1), 1.0]
    res = contrast_power("lmm", ADAS_T, _slope_strata(v, ADAS_T, (0.0, 1.5), complete), alloc, [n_tot], [(1, 0)],
                         test="z", working=v)[0]
    ll = slope_difference_power(n_tot, 1.5, ADAS_T, v, fraction=ratio / (1 + ratio))[0]
    assert res.power[0] == pytest.approx(_two_tailed(ll), abs=1e-10)
    p = np.r_[0.0, ADAS_T[1:] / ADAS_T[1:].sum()]
    res = contrast_power("lmm", ADAS_T, _slope_strata(v, ADAS_T, (0.0, 1.5), p), alloc, [n_tot], [(1, 0)],
                         test="z", working=v)[0]
    ed = edland_linear_power(n=n1, delta=1.5, t=ADAS_T, lambda_=ratio, sig2_int=55, sig_b0b1=0.8 * np.sqrt(55 * 24),
                             sig2_s=24, sig2_e=10, p=p)
    assert res.power[0] == pytest.approx(_two_tailed(ed.power), abs=1e-10)


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_engine_is_lu_luo_chen_for_the_mmrm(ratio):
    """Baseline independent of the post-baseline visits: the MMRM engine's endpoint contrast is
    power.mmrm's (longpower's example covariance and retention); the fitted working covariance
    converges to the truth."""
    cov = np.zeros((5, 5))
    cov[0, 0] = 1.0
    cov[1:, 1:] = RA
    months = np.arange(5.0)
    strata = []
    for g, d in enumerate((0.0, 0.5)):
        mean = np.r_[0.0, np.full(4, d)]
        for k, w in enumerate(-np.diff(np.r_[RETENTION, 0.0]), start=1):
            strata.append(Stratum(g, float(w), tuple(j <= k for j in range(5)), mean, cov))
    alloc = Allocation((1 / (1 + ratio), ratio / (1 + ratio)), lambda n: [n / (1 + ratio), n * ratio / (1 + ratio)])
    ref = power_mmrm(N=174, Ra=RA, ra=RETENTION, sigmaa=1, delta=0.5, power=None, lambda_=ratio)
    exact = contrast_power("mmrm", months, strata, alloc, [174], [(1, 0)], test="z", working=RA)[0]
    assert exact.power[0] == pytest.approx(_two_tailed(ref.power), abs=1e-8)
    fitted = contrast_power("mmrm", months, strata, alloc, [174], [(1, 0)], test="z")[0]
    assert fitted.power[0] == pytest.approx(_two_tailed(ref.power), abs=1e-5)


def test_multinomial_allocation_averages_over_the_splits():
    alloc = Allocation((0.3, 0.6))  # 10% not analysed
    dist = alloc.distribution(20)
    assert sum(p for p, _ in dist) == pytest.approx(1.0, abs=1e-8)
    mean = sum(p * c for p, c in dist)
    assert mean == pytest.approx([6.0, 12.0], abs=1e-6)
    assert Allocation((0.5, 0.5), lambda n: [n // 2, n - n // 2]).distribution(7)[0][1].tolist() == [3.0, 4.0]


def test_dropout_patterns_of_the_gaussian_generator():
    """One number: the constant hazard over the post-baseline DXA visits; per visit: leaving at
    month 3 or 6 leaves only the baseline scan (as simulate_gaussian)."""
    pats = dict(dropout_patterns((0, 6, 12), 0.3))
    assert pats[(True, True, True)] == pytest.approx(0.7)
    h = 1 - 0.7 ** 0.5
    assert pats[(True, False, False)] == pytest.approx(h)
    per = dict(dropout_patterns((0, 6, 12), (0.1, 0.15, 0.2), schedule=(0, 3, 6, 12)))
    assert per[(True, False, False)] == pytest.approx(0.1 + 0.9 * 0.15)
    assert per[(True, True, False)] == pytest.approx(0.9 * 0.85 * 0.2)
    assert sum(per.values()) == pytest.approx(1.0)


def test_gaussian_closed_form_uses_the_exact_allocation_and_the_t_test():
    """n = 30 and a responder fraction 0.68: 20 responders (not 20.4), and Satterthwaite's df = n - 2
    for the complete random-slope LMM, whose t test has less power than the z formula."""
    pdz = PowerDesign(n=(30,), generator="gaussian")
    _, _, alloc = gaussian_strata(pdz.design, "spine")
    assert alloc.distribution(30)[0][1].tolist() == [10.0, 20.0]
    tab_t = closed_form_table(pdz, ("lmm", "mmrm"))
    tab_z = closed_form_table(pdz, ("lmm", "mmrm"), test="z")
    lmm = tab_t.set_index("analysis").loc["lmm"]
    assert lmm["df"] == pytest.approx(28.0, abs=1e-6)
    assert (tab_t["closed_form_power"] < tab_z["closed_form_power"]).all()


def test_twin_closed_form_is_computed_on_the_derived_groups():
    """The twin's cohort design (n = 30, no dropout): the derived responder share is well below the
    latent 0.68, and the closed form is near the simulated ~0.8, not the nominal formula's 0.98."""
    from analysis.power.closed_form_design import cohort_strata

    pdz = PowerDesign(n=(30,), dropout=0.0)
    _, _, alloc = cohort_strata(pdz, "spine")
    assert 0.5 < alloc.shares[1] < 0.65 and sum(alloc.shares) == pytest.approx(1.0)
    tab = closed_form_table(pdz, ("lmm", "mmrm")).set_index("analysis")
    assert 0.7 < tab.loc["lmm", "closed_form_power"] < 0.88
    assert 0.7 < tab.loc["mmrm", "closed_form_power"] < 0.88


def test_z_gap_and_warning():
    import pandas as pd

    summary = pd.DataFrame({"site": ["spine"] * 3, "analysis": ["lmm", "mmrm", "bayes"], "criterion": ["p"] * 3,
                            "n": [30] * 3, "sims": [400] * 3, "power": [0.78, 0.98, 0.5], "mc_se": [0.02, 0.007, 0.025]})
    closed = pd.DataFrame({"site": ["spine"] * 2, "analysis": ["lmm", "mmrm"], "n": [30, 30],
                           "closed_form_power": [0.98, 0.97]})
    gap = closed_form_gap(summary, closed).set_index("analysis")
    assert gap.loc["lmm", "z_gap"] == pytest.approx((0.78 - 0.98) / np.sqrt(0.98 * 0.02 / 400))
    assert abs(gap.loc["mmrm", "z_gap"]) < 3 and np.isnan(gap.loc["bayes", "z_gap"])
    lines = gap_warnings(gap.reset_index())
    assert len(lines) == 1 and "lmm n=30" in lines[0] and "closed form 0.980" in lines[0]
