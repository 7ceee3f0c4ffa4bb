"""The truths of the calibration study, checked against large simulations.

* CR and CIR (derived in :mod:`models.simulate_ice`), and J2R and MAR: the arm difference of a
  200 000-patient trial whose post-event values are drawn under the strategy's assumption.
* The % change truth of :mod:`analysis.calibration.designs` (with :math:`E[1/Y_0]`): an 80 000-patient
  trial of the project's simulator without dropout; it is told apart from the naive
  :math:`100\\,\\Delta\\beta\\,T/(12\\mu)`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analysis.calibration.designs import (
    ENDPOINT,
    TRIAL_TRUTH,
    endpoint_changes,
    mar_dropout,
    pct_change_difference,
    slope_difference,
)
from models.simulate_ice import (
    STRATEGIES,
    IceTruth,
    simulate_counterfactual,
    true_effect,
)
from models.simulate_trial import simulate_trial


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("truth", [IceTruth(), IceTruth(correlation="cs", rho=0.4, hazard={0: 0.1, 1: 0.25})],
                         ids=["default", "cs-high-hazard"])
def test_reference_based_truth_matches_a_large_simulation(strategy, truth):
    sim = simulate_counterfactual(200_000, truth, strategy, seed=11)
    y, g = sim["y"], sim["group"]
    diff = y[g == 1].mean(axis=0) - y[g == 0].mean(axis=0)
    se = np.sqrt(y[g == 1].var(axis=0) / (g == 1).sum() + y[g == 0].var(axis=0) / (g == 0).sum())
    theta = true_effect(truth, strategy)
    assert np.all(np.abs(diff - theta) < 4.5 * se), (strategy, diff, theta, se)


def test_strategies_give_distinct_truths():
    t = IceTruth()
    last = {s: true_effect(t, s)[-1] for s in STRATEGIES}
    # the more of the active effect a strategy keeps after the event, the larger the effect
    assert last["J2R"] < last["CR"] < last["CIR"] < last["MAR"]
    assert np.allclose(true_effect(t, "JR"), true_effect(t, "J2R"))
    with pytest.raises(ValueError, match="strategy"):
        true_effect(t, "LMCF")
    with pytest.raises(ValueError, match="correlation"):
        IceTruth(correlation="toeplitz")


def test_pct_change_truth_matches_the_trial_simulator():
    truth = replace(TRIAL_TRUTH, dropout_hazard=0.0)
    frame = simulate_trial(80_000, truth, seed=5)
    y1, y0 = endpoint_changes(frame, ENDPOINT)
    diff = y1.mean() - y0.mean()
    se = np.sqrt(y1.var() / y1.size + y0.var() / y0.size)
    exact = pct_change_difference(TRIAL_TRUTH, ENDPOINT)
    naive = 100 * slope_difference(TRIAL_TRUTH) * ENDPOINT / 12 / TRIAL_TRUTH.baseline["spine"]
    assert abs(diff - exact) < 3.5 * se
    assert exact > naive  # E[1/Y0] > 1/E[Y0] (Jensen)


def test_mar_dropout_is_monotone_and_depends_on_the_observed_change():
    rng = np.random.default_rng(3)
    complete = simulate_trial(3000, replace(TRIAL_TRUTH, dropout_hazard=0.0), seed=2)
    kept = mar_dropout(complete, rng)
    visits = kept.groupby("patient_id")["visit"].apply(list)
    schedule = list(TRIAL_TRUTH.visits)
    assert all(v == schedule[:len(v)] for v in visits)  # monotone: a prefix of the schedule
    # the patients who left after month 6 had lost more bone by then than those who stayed
    wide = complete.pivot(index="patient_id", columns="visit", values="bmd_spine")
    pct6 = 100 * (wide[6.0] / wide[0.0] - 1)
    n_visits = visits.map(len)
    left = n_visits.index[n_visits == 2]
    stayed = n_visits.index[n_visits > 2]
    assert pct6[left].mean() < pct6[stayed].mean() - 0.3
