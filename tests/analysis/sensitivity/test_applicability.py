"""Analyses that do not apply to a design, or cannot be estimated on the data, are reported with a
one-line reason instead of failing the run: the result's status, the runner's two modes, the forest
plot with a skipped analysis, and the data that used to end in an error (a user's responder
column, no visit at the response month, every patient a responder)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from analysis.run.config import RunConfig
from analysis.sensitivity.design import NotApplicable, NotEstimable, sensitivity_design
from analysis.sensitivity.latent_status import latent_status_analysis, latent_status_reason
from analysis.sensitivity.result import SensitivityResult
from analysis.sensitivity.runner import forest_figure, forest_keys, run_sensitivity
from analysis.study.clinical import derive
from analysis.study.data import load_dataset, load_twin
from analysis.study.estimands import difference_name, estimand_name
from tests.analysis.sensitivity._trial import load_trial, trial_csv

FAST = dict(draws=20, tune=20, chains=1, mi_imputations=2)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _variant(tmp_path, name: str, edit, endpoint: float = 12.0) -> tuple[RunConfig, pd.DataFrame]:
    """The twin's file changed by ``edit``, loaded as a user's file (``--endpoint``), its config
    bound to the design."""
    from analysis.common.resources import data_path

    df = edit(pd.read_csv(data_path("rajak_twin.csv")))
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    ds = load_dataset(path, endpoint=endpoint, endpoint_month=endpoint)
    cfg = RunConfig(data=str(path), **FAST).bind(ds.design)
    return cfg, derive(ds.frame, cfg.responder.rule(), endpoint_month=cfg.endpoint_month, design=ds.design)


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    path = trial_csv(tmp_path_factory.mktemp("trial") / "trial.csv", n=120, seed=2)
    ds, derived = load_trial(path)
    return RunConfig(data=str(path), **FAST).bind(ds.design), derived


def test_skipped_result():
    r = SensitivityResult.skipped("latent_status", "Latent status", "not applicable", "no responders\nmore")
    assert (r.status, r.reason, r.ran) == ("not applicable", "no responders", False)
    assert r.text == ["not applicable: no responders"] and r.table.empty and r.summary == r.text[0]
    assert r.settings == {"status": "not applicable", "reason": "no responders"}
    with pytest.raises(ValueError, match="status must be one of"):
        SensitivityResult(name="x", title="x", table=pd.DataFrame(), status="maybe")
    with pytest.raises(ValueError, match="skipped analysis"):
        SensitivityResult.skipped("x", "x", "ok", "fine")


def test_latent_status_applies_to_the_twin_only():
    twin = derive(load_twin().frame)
    assert latent_status_reason(twin, sensitivity_design(twin), 12) is None
    defined = twin[twin["responder"].notna()]
    assert "nothing is latent" in latent_status_reason(defined, sensitivity_design(defined), 12)
    no_das = twin.drop(columns=["das28_crp"])
    assert "no DAS28-CRP" in latent_status_reason(no_das, sensitivity_design(no_das), 12)


def test_latent_status_on_a_trial_is_not_applicable(trial):
    cfg, derived = trial
    with pytest.raises(NotApplicable, match="column 'arm'"):
        latent_status_analysis(derived, draws=10, tune=10, chains=1)
    r = run_sensitivity("latent_status", derived, cfg)
    assert r.status == "not applicable" and "placebo (reference) and active" in r.reason
    assert r.text == [f"not applicable: {r.reason}"] and r.table.empty and not r.figures
    with pytest.raises(NotApplicable):
        run_sensitivity("latent_status", derived, cfg, errors="raise")
    with pytest.raises(ValueError, match="errors must be"):
        run_sensitivity("latent_status", derived, cfg, errors="ignore")


def test_a_users_responder_column_skips_latent_status(tmp_path):
    """Previously exit 2: 'a defined responder status needs a DAS28 at month 12'."""
    twin = derive(load_twin().frame)
    status = twin.groupby("patient_id")["responder"].first().map({True: 1, False: 0})
    cfg, derived = _variant(tmp_path, "responder", lambda df: df.assign(
        responder=df["patient_id"].map(status).astype("Int64")))
    r = run_sensitivity("latent_status", derived, cfg)
    assert r.status == "not applicable" and "user-supplied" in r.reason
    assert run_sensitivity("delta", derived, cfg).ran  # the others run


def test_no_visit_at_the_response_month(tmp_path):
    """Month-12 scans relabelled as month 24 (endpoint 24): latent status has no status to learn
    from; the MI analyses run on the design's endpoint. (Previously 'need at least one array to
    concatenate'.)"""
    cfg, derived = _variant(tmp_path, "m24", lambda df: df.assign(month=df["month"].replace({12: 24})), 24.0)
    assert cfg.endpoint_month == 24.0
    r = run_sensitivity("latent_status", derived, cfg)
    assert r.status == "not applicable" and "no visit at the response month 12" in r.reason
    tip = run_sensitivity("tipping", derived, cfg)
    assert tip.ran and tip.settings["endpoint_month"] == 24.0
    fig, rows = forest_figure([r, tip], pd.DataFrame(columns=["estimand", "site", "method", "estimate", "ci_low",
                                                              "ci_high"]), "spine", design=derived.attrs["design"])
    assert rows.empty  # nothing to plot is a figure, not an error


def test_every_patient_a_responder_is_not_estimable_in_one_line(tmp_path):
    """Previously 'rank deficient'."""
    cfg, derived = _variant(tmp_path, "all", lambda df: df.assign(responder=1))
    for name in ("completers_vs_all", "delta", "reference_based"):
        r = run_sensitivity(name, derived, cfg)
        assert r.status == "not estimable", name
        assert "non-responder" in r.reason and "\n" not in r.reason, name
    with pytest.raises(NotEstimable, match="non-responders"):
        run_sensitivity("delta", derived, cfg, errors="raise")


def test_forest_keys_follow_the_design(trial):
    cfg, derived = trial
    sd = sensitivity_design(derived)
    keys = forest_keys("spine", sd)
    assert [k for k, _ in keys] == [difference_name("spine", "pct", 24, groups=("active", "placebo")),
                                    estimand_name("spine", "placebo", "pct", 24)]
    twin = derive(load_twin().frame)
    assert [k for k, _ in forest_keys("spine", sensitivity_design(twin))] == [
        difference_name("spine", "pct", 12), estimand_name("spine", "non-responder", "pct", 12)]
