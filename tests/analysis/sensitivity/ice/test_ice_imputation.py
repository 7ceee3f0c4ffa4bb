"""Conditional means of every ICE strategy on tiny examples, computed by hand (scalar algebra)."""

import numpy as np
import pytest

from analysis.sensitivity.ice.imputation import impute
from analysis.sensitivity.ice.imputation_model import design, design_names
from analysis.sensitivity.ice.patients import IcePatients
from analysis.sensitivity.site_data import SiteData

S = np.array([[4.0, 2.0, 1.5], [2.0, 5.0, 3.0], [1.5, 3.0, 6.0]])
ALPHA = {0: [-1.0, -2.0, -3.0], 1: [0.5, 1.0, 2.0]}  # reference (0) and active (1) cell means
GAMMA = 0.1  # baseline slope
BASE = np.array([1.0, 2.0, 3.0, 4.0])
NAN = np.nan


def _data(y):
    return SiteData(site="spine", outcome="change", ids=np.array(["a", "b", "c", "d"]),
                    months=np.array([3.0, 6.0, 12.0]), y=np.asarray(y, dtype=float), baseline=BASE,
                    group=np.array([1, 1, 1, 0]), levels=("placebo", "active"), covariates=np.zeros((4, 0)),
                    covariate_names=())


BETA = np.array(ALPHA[0] + ALPHA[1] + [GAMMA])  # rajak model: cells (reference first) then baseline


def _own(i, j, g=1):
    return ALPHA[g][j] + GAMMA * BASE[i]


def _ref(i, j):
    return ALPHA[0][j] + GAMMA * BASE[i]


def _run(y, ice_index, strategy, handling=None, delta=None):
    d = _data(y)
    n = 4
    p = IcePatients(d, np.asarray(ice_index), np.array(["x"] * n, dtype=object),
                    np.asarray(strategy, dtype=object),
                    np.asarray(handling or ["rbmi"] * n, dtype=object), "t", (), delta)
    x_own, x_ref = design(p, "rajak"), design(p, "rajak", group=0)
    return impute(p, BETA, S, x_own, x_ref)


Y = [[1.2, NAN, NAN],   # a: ICE at visit 2 (index 1), y1 observed
     [NAN, 0.7, NAN],   # b: intermittent gap at visit 1, ICE at visit 3 (index 2)
     [NAN, NAN, NAN],   # c: ICE at visit 1, baseline only
     [-0.5, NAN, -2.0]]  # d: reference patient, no ICE, intermittent gap
ICE = [1, 2, 0, 3]


def _by_hand(strategy):
    out = np.array(Y, dtype=float)
    # patient a: mean of visits 2, 3 under the strategy; condition on y1
    a = [_own(0, j) for j in range(3)]
    c = [_ref(0, j) for j in range(3)]
    mu = {"MAR": a, "JR": [a[0], c[1], c[2]], "CR": c, "CIR": [a[0], a[0] + c[1] - c[0], a[0] + c[2] - c[0]],
          "LMCF": [a[0], a[0], a[0]]}[strategy]
    r = Y[0][0] - mu[0]
    out[0, 1] = mu[1] + S[1, 0] / S[0, 0] * r
    out[0, 2] = mu[2] + S[2, 0] / S[0, 0] * r
    # patient b: visit 1 missing before the ICE (MAR mean unless CR), visit 3 post-ICE; condition on y2
    a = [_own(1, j) for j in range(3)]
    c = [_ref(1, j) for j in range(3)]
    mu = {"MAR": a, "JR": [a[0], a[1], c[2]], "CR": c, "CIR": [a[0], a[1], a[1] + c[2] - c[1]],
          "LMCF": [a[0], a[1], a[1]]}[strategy]
    r = Y[1][1] - mu[1]
    out[1, 0] = mu[0] + S[0, 1] / S[1, 1] * r
    out[1, 2] = mu[2] + S[2, 1] / S[1, 1] * r
    # patient c: nothing observed; the mean itself (a_0 = c_0 = 0 at baseline)
    a = [_own(2, j) for j in range(3)]
    c = [_ref(2, j) for j in range(3)]
    out[2] = {"MAR": a, "JR": c, "CR": c, "CIR": c, "LMCF": [0.0, 0.0, 0.0]}[strategy]
    # patient d (reference, no ICE): MAR given y1 and y3, 2x2 inverse written out
    mu = [_own(3, j, 0) for j in range(3)]
    det = S[0, 0] * S[2, 2] - S[0, 2] ** 2
    inv = np.array([[S[2, 2], -S[0, 2]], [-S[0, 2], S[0, 0]]]) / det
    res = np.array([Y[3][0] - mu[0], Y[3][2] - mu[2]])
    out[3, 1] = mu[1] + (S[1, 0] * (inv[0] @ res) + S[1, 2] * (inv[1] @ res))
    return out


@pytest.mark.parametrize("strategy", ["MAR", "JR", "CR", "CIR", "LMCF"])
def test_conditional_means_by_hand(strategy):
    strategies = [strategy, strategy, strategy, "MAR"]
    got = _run(Y, ICE, strategies)
    np.testing.assert_allclose(got, _by_hand(strategy), rtol=0, atol=1e-10)


def test_per_patient_strategies_mix():
    got = _run(Y, ICE, ["JR", "CIR", "LMCF", "MAR"])
    np.testing.assert_allclose(got[0], _by_hand("JR")[0], atol=1e-10)
    np.testing.assert_allclose(got[1], _by_hand("CIR")[1], atol=1e-10)
    np.testing.assert_allclose(got[2], _by_hand("LMCF")[2], atol=1e-10)


def test_observed_post_ice_value_is_kept_and_conditioned_on_as_rbmi():
    y = [[1.2, 0.4, NAN], [NAN, 0.7, NAN], [NAN, NAN, NAN], [-0.5, NAN, -2.0]]
    got = _run(y, ICE, ["JR", "JR", "JR", "MAR"])
    assert got[0, 1] == 0.4
    a0 = _own(0, 0)
    c = [_ref(0, j) for j in range(3)]
    res = np.array([1.2 - a0, 0.4 - c[1]])
    s_oo = S[:2, :2]
    det = s_oo[0, 0] * s_oo[1, 1] - s_oo[0, 1] ** 2
    inv = np.array([[s_oo[1, 1], -s_oo[0, 1]], [-s_oo[0, 1], s_oo[0, 0]]]) / det
    expected = c[2] + S[2, 0] * (inv[0] @ res) + S[2, 1] * (inv[1] @ res)
    assert got[0, 2] == pytest.approx(expected, abs=1e-10)


def test_hypothetical_discards_post_ice_values_and_while_on_treatment_carries_the_last():
    y = [[1.2, 0.4, 0.9], [NAN, 0.7, 5.0], [NAN, NAN, NAN], [-0.5, NAN, -2.0]]
    handling = ["hypothetical", "while_on_treatment", "while_on_treatment", "rbmi"]
    got = _run(y, ICE, ["JR", "MAR", "MAR", "MAR"], handling)
    np.testing.assert_allclose(got[0], _by_hand("JR")[0], atol=1e-10)  # 0.4 and 0.9 discarded
    # b: the gap at visit 1 imputed MAR given y2; visit 3 (post-ICE, observed 5.0) = the value at visit 2
    assert got[1, 2] == 0.7
    assert got[1, 0] == pytest.approx(_by_hand("MAR")[1, 0], abs=1e-10)
    np.testing.assert_allclose(got[2], 0.0)  # ICE before the first scan: no change while on treatment


def test_delta_shifts_imputed_post_ice_values_only():
    delta = np.full((4, 3), 0.25)
    got = _run(Y, ICE, ["JR", "JR", "JR", "MAR"], delta=delta)
    plain = _by_hand("JR")
    post = np.arange(3)[None, :] >= np.asarray(ICE)[:, None]
    expected = plain + np.where(post & np.isnan(np.array(Y, dtype=float)), 0.25, 0.0)
    np.testing.assert_allclose(got, expected, atol=1e-10)
    assert got[1, 0] == pytest.approx(plain[1, 0])  # the pre-ICE gap is not shifted


def test_with_delta_rules_match_visit_group_and_type():
    p = IcePatients.from_table(_data(Y), {"a": (6, "bone_therapy", "rbmi", "JR"), "c": (3, "death", "rbmi", "JR")})
    d = p.with_delta([{"value": 1.0, "group": "active"}, {"value": 0.5, "visit": 12, "ice_type": "death"}]).delta
    assert d[0].tolist() == [0.0, 1.0, 1.0] and d[2].tolist() == [1.0, 1.0, 1.5]
    assert d[1].tolist() == [0.0, 0.0, 0.0] and d[3].tolist() == [0.0, 0.0, 0.0]  # no ICE: nothing post-ICE
    with pytest.raises(ValueError, match="not a group"):
        p.with_delta([{"value": 1.0, "group": "verum"}])


def test_fit_mask_follows_rbmi_is_mar():
    y = [[1.2, 0.4, NAN], [NAN, 0.7, NAN], [NAN, NAN, NAN], [-0.5, NAN, -2.0]]
    d = _data(y)
    base = IcePatients.from_table(d, {"a": (6, "discontinued", "rbmi", "JR")})
    assert base.fit_mask[0].tolist() == [True, False, False]  # post-ICE 0.4 excluded from the fit
    assert base.observed[0].tolist() == [True, True, False]  # ... but kept in the analysis
    mar = base.with_strategy("MAR")
    assert mar.fit_mask[0].tolist() == [True, True, False]
    # an event after the site's last visit affects nothing here: the patient stays MAR (CR would
    # otherwise copy the reference's profile into the gaps before it)
    late = IcePatients.from_table(d, {"b": (24, "discontinued", "rbmi", "CR")})
    assert late.ice_index[1] == 3 and late.strategy[1] == "MAR" and late.ice_type[1] == ""


def test_retrieved_dropout_term_is_added_for_treatment_policy_with_post_ice_data():
    y = [[1.2, 0.4, NAN], [NAN, 0.7, NAN], [NAN, NAN, NAN], [-0.5, NAN, -2.0]]
    p = IcePatients.from_table(_data(y), {"a": (6, "discontinued", "treatment_policy", "MAR")})
    assert p.off_treatment_months[0].tolist() == [0.0, 3.0, 9.0]
    names = design_names(p, "rbmi")
    assert names[-2:] == ["placebo:months_off_treatment", "active:months_off_treatment"]
    x = design(p, "rbmi")
    assert x.shape == (4, 3, 6 + 3 + 2) and x[0, 2, -1] == 9.0 and x[0, 2, -2] == 0.0
