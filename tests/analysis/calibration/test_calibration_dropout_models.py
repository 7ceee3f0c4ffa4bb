"""The dropout-model calibration estimators (selection model, latent status) in reduced form: their truths
against independent brute-force simulations, and one tiny-draw fit of each through the calibration runner
(the coverage itself is measured by ``run_calibration`` with the default sampler)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.calibration.estimators_dropout_models import (
    ESTIMATORS,
    PSI_TRUE,
    RESPONSE_MONTH,
    TRUTH_N,
    TYPE_LEVELS,
    complete_status,
    derived_study,
    dropout_estimators,
    latent_design,
    latent_truth,
    selection_design,
)
from analysis.calibration.execution import Chunk, run_chunk
from analysis.calibration.spec import dataset_rng
from tests.calibration_rows import assert_sane_rows

TINY = {"draws": 100, "tune": 100, "chains": 2}


def test_estimators_are_sensitivity_rows_on_their_own_streams():
    names = [e.name for e in ESTIMATORS]
    assert names == ["selection_model", "selection_model_known_groups", "latent_status"]
    assert all(e.family == "sensitivity" and e.setup is not None and e.design and e.estimand for e in ESTIMATORS)
    assert [e.seed_stream for e in ESTIMATORS] == ["dropout_mnar", "dropout_mnar", "dropout_mar"]
    assert selection_design().dropout.bmd_log_odds == PSI_TRUE and selection_design().dropout.mechanism == "mnar"
    assert latent_design().dropout.bmd_log_odds == 0.0 and latent_design().spine.slope_per_das28_improvement_pct == 0


def test_psi_truth_is_the_simulators_dropout_log_odds():
    """Brute force: a logistic regression of the simulator's dropout events, on every post-baseline visit
    at risk, on the last DAS28 and the current true % change of spine BMD recovers the selection model's
    hazard with alpha = logit 0.09, beta = 0.5 and psi = PSI_TRUE."""
    import statsmodels.api as sm

    from models.simulate import simulate

    sim = simulate(selection_design(60_000), seed=11)
    das = sim.complete.pivot(index="patient_id", columns="month", values="das28_crp")
    p = sim.patients.set_index("patient_id").loc[das.index]
    slope, drop = p["true_slope_pct_spine"].to_numpy(), p["dropout_month"].to_numpy()
    months = das.columns.to_numpy(dtype=float)
    x, y = [], []
    for k in range(1, len(months)):
        at_risk = ~(drop < months[k])  # NaN (completer) or dropped at or after this visit
        x.append(np.column_stack([das[months[k - 1]].to_numpy()[at_risk] - 3.2,
                                  slope[at_risk] * months[k] / 12.0]))
        y.append(drop[at_risk] == months[k])
    fit = sm.Logit(np.concatenate(y).astype(float), sm.add_constant(np.vstack(x))).fit(disp=0)
    truth = np.array([np.log(0.09 / 0.91), 0.5, PSI_TRUE])
    assert np.all(np.abs(fit.params - truth) < 4 * fit.bse), (fit.params, fit.bse)
    assert fit.bse[2] < 0.02  # a sharp check of psi


def test_latent_truth_against_an_independent_simulation():
    """The truth (EULAR status from the complete data, ratio of group means of the true trajectories)
    recomputed on an independent cohort with the analysis' own responder rule and the true BMD at
    month 12."""
    from analysis.study.clinical import classify_responders
    from models.simulate import simulate

    n = 50_000
    sim = simulate(latent_design(n), seed=99)
    status = classify_responders(sim.complete).set_index("patient_id")["responder"].astype(bool)
    p = sim.patients.set_index("patient_id").loc[status.index]
    b, g = p["true_baseline_spine"].to_numpy(), p["true_slope_pct_spine"].to_numpy()
    mu12 = b * (1.0 + g * RESPONSE_MONTH / 1200.0)
    r = status.to_numpy()
    pct = [100.0 * (mu12[m] - b[m]).mean() / b[m].mean() for m in (r, ~r)]
    mcse = np.sqrt(sum(g[m].var() / m.sum() for m in (r, ~r)))
    truth = latent_truth()
    assert abs((pct[0] - pct[1]) - truth) < 4 * mcse * np.sqrt(1 + n / TRUTH_N)
    # the complete-data status is a noisy EULAR classification of the latent type, not the type itself
    d = latent_design()
    assert abs(truth - (d.spine.slope_responder_pct - d.spine.slope_nonresponder_pct)) > 8 * mcse


def test_complete_status_is_the_analysis_status_where_defined():
    from models.simulate import simulate

    design, seed = latent_design(300), 5
    derived = derived_study(design, seed)
    observed = derived.groupby("patient_id")["responder"].first()
    complete = complete_status(simulate(design, seed=seed).complete)
    defined = observed.notna()
    assert 0 < (~defined).sum() < defined.sum()
    pd.testing.assert_series_equal(observed[defined].astype(bool), complete[observed.index[defined]],
                                   check_names=False)


def test_known_groups_see_the_selection_data_sets():
    """Common random numbers: the known-groups rows fit the selection rows' data plus each patient's type."""
    latent, known = ESTIMATORS[0], ESTIMATORS[1]
    data, truth = latent.simulate(dataset_rng(4, latent, 2))
    kdata, ktruth = known.simulate(dataset_rng(4, known, 2))
    assert truth == ktruth == PSI_TRUE
    pd.testing.assert_frame_equal(kdata[data.columns], data)
    types = kdata.groupby("patient_id")["response_type"].agg(["nunique", "first"])
    assert (types["nunique"] == 1).all() and set(types["first"]) == set(TYPE_LEVELS)
    # the derived (EULAR) status mostly, not always, agrees with the type where it is defined
    status = kdata.groupby("patient_id")["responder"].first().dropna().astype(bool)
    agree = (status == (types.loc[status.index, "first"] == "responder")).mean()
    assert 0.85 < agree < 1.0


@pytest.mark.parametrize("index", [0, 1, 2])
def test_dropout_estimator_reduced(index):
    est = dropout_estimators("_test", **TINY)[index]
    rows = run_chunk(Chunk(est, seed=19, indices=(0,)))
    assert_sane_rows(rows)
