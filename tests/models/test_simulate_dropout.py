"""Dropout hazard by visit in the cohort simulator (DropoutModel.visit_hazard as one value per visit)."""

import json

import numpy as np
import pandas as pd
import pytest

from models.simulate import Design, DropoutModel, simulate


def _mcar(h):
    return DropoutModel(mechanism="mcar", visit_hazard=h, activity_log_odds=0.0, p_missed_dxa=0.0)


def test_per_visit_mcar_hazards_are_the_conditional_dropout_proportions():
    # under MCAR, P(drop at visit k | present at k) = h_k exactly; check on 20,000 patients
    hz = (0.1, 0.15, 0.2)
    n = 20_000
    p = simulate(Design(n_patients=n, dropout=_mcar(hz)), seed=11).patients
    month = p["dropout_month"]
    for visit, h in zip((3, 6, 12), hz):
        at_risk = int((month.isna() | (month >= visit)).sum())
        observed = (month == visit).sum() / at_risk
        assert observed == pytest.approx(h, abs=4 * np.sqrt(h * (1 - h) / at_risk)), visit
    # and the observed rows stop at the dropout visit
    last = simulate(Design(n_patients=300, dropout=_mcar(hz)), seed=2)
    seen = last.data.groupby("patient_id")["month"].max()
    dm = last.patients.set_index("patient_id")["dropout_month"]
    prev = {3: 0, 6: 3, 12: 6}
    assert all(seen[i] == (12 if np.isnan(m) else prev[int(m)]) for i, m in dm.items())


def test_equal_per_visit_hazards_reproduce_the_scalar_model_exactly():
    for mech in (DropoutModel(), DropoutModel(mechanism="mnar", visit_hazard=0.12, bmd_log_odds=-0.3)):
        scalar = simulate(Design(n_patients=200, dropout=mech), seed=7)
        per_visit = simulate(Design(n_patients=200, dropout=DropoutModel(
            **{**mech.__dict__, "visit_hazard": (mech.visit_hazard,) * 3})), seed=7)
        pd.testing.assert_frame_equal(scalar.data, per_visit.data)
        pd.testing.assert_frame_equal(scalar.patients, per_visit.patients)


def test_zero_hazard_at_a_visit_means_nobody_leaves_there():
    p = simulate(Design(n_patients=2000, dropout=DropoutModel(visit_hazard=(0.2, 0.0, 0.2))), seed=5).patients
    assert (p["dropout_month"] == 6).sum() == 0
    assert (p["dropout_month"] == 3).sum() > 0 and (p["dropout_month"] == 12).sum() > 0


def test_per_visit_validation_names_the_value_and_the_visit_count():
    with pytest.raises(ValueError, match=r"visit_hazard\[1\] must be in \[0, 1\), got 1\.5 .*3 given"):
        DropoutModel(visit_hazard=(0.1, 1.5, 0.2))
    with pytest.raises(ValueError, match=r"2 values \[0\.1, 0\.2\] but the schedule has 3 post-baseline visits"):
        Design(dropout=DropoutModel(visit_hazard=(0.1, 0.2)))
    with pytest.raises(ValueError, match="at least one value"):
        DropoutModel(visit_hazard=())
    # the count follows the schedule
    Design(activity_months=(0, 6, 12), dxa_months=(0, 12), dropout=DropoutModel(visit_hazard=[0.1, 0.2]))
    for bad in ([0.1, 0.2], (0.1, 0.2, 0.3, 0.4)):
        with pytest.raises(ValueError):
            Design().with_updates(**{"dropout.visit_hazard": bad})


def test_per_visit_design_round_trips_through_json():
    d = Design().with_updates(**{"dropout.visit_hazard": [0.05, 0.1, 0.2]})
    assert d.dropout.visit_hazard == (0.05, 0.1, 0.2) and d.dropout.per_visit
    back = Design.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back == d
    assert not Design().dropout.per_visit and Design().dropout.hazards(3) == (0.09, 0.09, 0.09)
