"""Conditional-mean imputation with jackknife equals R rbmi 1.5.2 on rbmi's own data to 1e-6.

The reference numbers are rbmi's (``tests/analysis/sensitivity/fixtures/rbmi_reference.R``: rbmi
1.5.2 with mmrm 0.3.18, its MMRM fits converged tightly) for the antidepressant trial of rbmi's
vignettes under every strategy and with a delta, and for a small trial with per-patient strategies,
intermittent gaps before the ICE and observed post-ICE values. Imputation model ``CHANGE ~
BASVAL*VISIT + THERAPY*VISIT`` (rajak's ``imputation_model="rbmi"``), ANCOVA ``CHANGE ~ THERAPY +
BASVAL`` at each visit.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.sensitivity.ice.analysis_models import ancova
from analysis.sensitivity.ice.imputation import impute
from analysis.sensitivity.ice.imputation_model import design
from analysis.sensitivity.ice.methods import MethodSettings, run_method
from analysis.sensitivity.ice.patients import IcePatients
from analysis.sensitivity.ice.reml_wide import WideReml
from analysis.sensitivity.site_data import SiteData

FIX = Path(__file__).parents[1] / "fixtures"
REF = json.loads((FIX / "rbmi_reference.json").read_text())
TOL = 1e-6


def _site(csv: str) -> SiteData:
    d = pd.read_csv(FIX / csv, dtype={"PATIENT": str})
    levels = tuple(sorted(d["THERAPY"].unique(), key=lambda v: v not in ("PLACEBO", "CTL")))  # reference first
    months = np.sort(d["VISIT"].unique()).astype(float)
    wide = d.pivot(index="PATIENT", columns="VISIT", values="CHANGE").reindex(columns=months)
    per = d.groupby("PATIENT").first().reindex(wide.index)
    return SiteData(site="hamd", outcome="change", ids=wide.index.to_numpy(), months=months,
                    y=wide.to_numpy(dtype=float), baseline=per["BASVAL"].to_numpy(dtype=float),
                    group=per["THERAPY"].map({lv: k for k, lv in enumerate(levels)}).to_numpy(dtype=int),
                    levels=levels, covariates=np.zeros((len(wide), 0)), covariate_names=())


def _patients(data: SiteData, ice_csv: str, strategy: str | None = None, delta=()) -> IcePatients:
    ice = pd.read_csv(FIX / ice_csv, dtype={"PATIENT": str})
    table = {r.PATIENT: (float(r.VISIT), "discontinued", "rbmi", strategy or r.strategy) for r in ice.itertuples()}
    p = IcePatients.from_table(data, table)
    return p.with_delta(delta) if delta else p


def _rajak_key(key: str, levels) -> str:
    kind, visit = key.rsplit("_", 1)
    name = {"trt": f"trt_{levels[1]}", "lsm_ref": f"lsm_{levels[0]}", "lsm_alt": f"lsm_{levels[1]}"}[kind]
    return f"{name}_{float(visit):g}"


def _check(pooled_rajak: dict, expected: dict, levels) -> None:
    for key, ref in expected.items():
        got = pooled_rajak[_rajak_key(key, levels)]
        assert got.estimate == pytest.approx(ref["est"], abs=TOL), key
        assert got.se == pytest.approx(ref["se"], abs=TOL), key
        assert [got.ci_low, got.ci_high] == pytest.approx(ref["ci"], abs=TOL), key
        assert got.p == pytest.approx(ref["pvalue"], abs=TOL), key


def _jackknife(p: IcePatients) -> dict:
    d = p.data
    analysis = partial(ancova, months=d.months, levels=d.levels)
    res = run_method("condmean_jackknife", [p], lambda y, g, c: analysis(y, g, c),
                     MethodSettings(imputation_model="rbmi"))
    return res.pooled[p.label]


@pytest.fixture(scope="module")
def antidepressant() -> SiteData:
    return _site("rbmi_antidepressant.csv")


@pytest.mark.parametrize("strategy", ["MAR", "JR", "CR", "CIR", "LMCF"])
def test_antidepressant_every_strategy(antidepressant, strategy):
    expected = REF["antidepressant"]["strategies"][strategy]
    p = _patients(antidepressant, "rbmi_antidepressant_ice.csv", strategy)
    _check(_jackknife(p), expected["pooled"], antidepressant.levels)


def test_antidepressant_full_data_fit_and_imputations(antidepressant):
    """The REML fit and the conditional means of the full data, value by value."""
    expected = REF["antidepressant"]["strategies"]["JR"]
    p = _patients(antidepressant, "rbmi_antidepressant_ice.csv", "JR")
    x_own, x_ref = design(p, "rbmi"), design(p, "rbmi", group=0)
    fit = WideReml(x_own, np.where(p.fit_mask, p.y, np.nan), p.fit_mask).fit()
    sigma = np.asarray(next(iter(expected["mmrm_full"]["sigma"].values())), dtype=float)
    np.testing.assert_allclose(fit.sigma, sigma, rtol=1e-7)
    done = impute(p, fit.beta, fit.sigma, x_own, x_ref)
    pos = {pid: i for i, pid in enumerate(antidepressant.ids)}
    for row in expected["imputed_full_data"]:
        j = int(np.flatnonzero(antidepressant.months == float(row["VISIT"]))[0])
        assert done[pos[str(row["PATIENT"])], j] == pytest.approx(row["CHANGE"], abs=1e-8)


def test_antidepressant_delta_on_post_ice_values(antidepressant):
    expected = REF["antidepressant"]["delta"]["JR_delta1_drug_post_ice"]
    p = _patients(antidepressant, "rbmi_antidepressant_ice.csv", "JR", delta=[{"value": 1.0, "group": "DRUG"}])
    _check(_jackknife(p), expected["pooled"], antidepressant.levels)


@pytest.mark.parametrize("case, csv", [("small", "rbmi_small.csv"), ("small_postice_obs", "rbmi_small_postice_obs.csv")])
def test_small_trial_with_per_patient_strategies(case, csv):
    data = _site(csv)
    p = _patients(data, "rbmi_small_ice.csv")
    assert set(p.strategy) == {"MAR", "JR", "CIR"}
    _check(_jackknife(p), REF[case]["pooled"], data.levels)
