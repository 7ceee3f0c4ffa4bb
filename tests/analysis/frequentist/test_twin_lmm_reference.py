"""The primary LMMs exactly as frequentist_analysis fits them on the shipped twin (strategy
'last_observed', both sites, with and without age + sex + bmi) against lme4/lmerTest/pbkrtest
(fixtures/twin_lmm_reference.R on fixtures/twin_model_frame.csv): 4 significant figures for the
estimates, SEs, Satterthwaite and Kenward-Roger df and the REML log-likelihood."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.frequentist.lmm import fit_lmm
from analysis.frequentist.primary import model_frame

FIX = Path(__file__).parent / "fixtures"
REF = json.loads((FIX / "twin_lmm_reference.json").read_text())
TERMS = {"(Intercept)": "Intercept", "sexM": "sex[T.M]"}


def test_fixture_frame_is_what_the_primary_analysis_fits():
    d = derive(load_twin().frame)
    saved = pd.read_csv(FIX / "twin_model_frame.csv")
    for site in ("spine", "femoral_neck"):
        now = model_frame(d, site, "last_observed")[["patient_id", "month", "bmd", "responder", "age", "sex", "bmi"]]
        old = saved[saved["site"] == site].drop(columns="site").reset_index(drop=True)
        pd.testing.assert_frame_equal(now.reset_index(drop=True), old, check_dtype=False, rtol=1e-15)


@pytest.mark.parametrize("key", ["spine", "spine_adjusted", "femoral_neck", "femoral_neck_adjusted"])
@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward_roger"])
def test_primary_lmm_agrees_with_lme4(key, ddf):
    ref = REF[key]
    site = key.removesuffix("_adjusted")
    d = pd.read_csv(FIX / "twin_model_frame.csv")
    d = d[d["site"] == site]
    formula = "bmd ~ month * responder" + (" + age + sex + bmi" if key.endswith("adjusted") else "")
    fit = fit_lmm(d, formula, time="month", df_method=ddf.replace("_", "-"))
    assert fit.converged and fit.n_obs == ref["n_obs"] and fit.n_subjects == ref["n_subjects"]
    assert fit.loglik == pytest.approx(ref["loglik"], rel=1e-6)
    mine = fit.fixed.set_index("term")
    r = ref[ddf]
    for i, term in enumerate(r["term"]):
        row = mine.loc[TERMS.get(term, term)]
        for col in ("estimate", "se", "df"):
            assert row[col] == pytest.approx(r[col][i], rel=5e-5), (key, ddf, term, col, row[col], r[col][i])
        assert row["p"] == pytest.approx(r["p"][i], rel=1e-3, abs=1e-12)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=5e-5)
    assert np.isfinite(fit.fixed["p"]).all()
