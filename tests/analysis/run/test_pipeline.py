"""rajak run end to end: resuming after an interruption, the power stage, and a report section for
every configured analysis."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import analysis.run.pipeline as pl
from analysis.run.config import RunConfig
from analysis.study.estimands import difference_name
from analysis.engine.sampling import load_fit
from analysis.power import TIMING_COLUMNS
from analysis.common.resources import data_path
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.sensitivity.runner import ANALYSES as SENSITIVITY_ANALYSES

#: small samples: these tests check plumbing, not inference
SMALL = dict(sites=("spine",), draws=100, tune=100, chains=2, sensitivity=(), mi_imputations=0,
             power_ns=(30, 60), power_sims=10, power_workers=1)
NUMBERS = ["median", "eti_low", "eti_high", "hdi_low", "hdi_high", "p_lt_0", "p_gt_0", "p_in_rope"]


def test_interrupted_run_resumes_from_the_fit_cache(tmp_path, monkeypatch):
    """An interrupted run resumes and skips fits whose model, data and configuration are unchanged."""
    cfg = RunConfig(output_dir=str(tmp_path), run_id="r", **SMALL)
    seen = {}
    real_bayes = pl.run_bayes_stage

    def bayes_then_record(*args, **kwargs):
        seen["stage"] = real_bayes(*args, **kwargs)
        return seen["stage"]

    def interrupt(*args, **kwargs):  # Ctrl-C in the stage after the Bayesian fits
        raise KeyboardInterrupt

    monkeypatch.setattr(pl, "run_bayes_stage", bayes_then_record)
    monkeypatch.setattr(pl, "run_power_stage", interrupt)
    with pytest.raises(KeyboardInterrupt):
        pl.run(cfg)
    monkeypatch.undo()
    # nothing half-written: no run directory, no staging directory; the fit cache holds the fit
    assert [p.name for p in tmp_path.iterdir()] == [".fit-cache"]
    cached = [p.name for p in (tmp_path / ".fit-cache").iterdir()]
    assert any(n.startswith("lmm_spine_") and n.endswith(".nc") for n in cached)
    assert any(n.startswith("prior_lmm_spine_") for n in cached)
    first = seen["stage"]
    assert first.fits[0].extra["cache"] == "miss"

    resumed = pl.run(cfg)
    entry = resumed.manifest["fit_cache"]["lmm_spine"]
    assert entry["cache"] == "hit" and entry["prior_cache"] == "hit"
    assert entry["cache_key"] == first.fits[0].extra["cache_key"]
    table = pd.read_csv(resumed.run_dir / "tables" / "bayes_estimands.csv")
    np.testing.assert_allclose(table[NUMBERS].to_numpy(float), first.estimands[NUMBERS].to_numpy(float), rtol=1e-12)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".fit-cache"]
    # the run's fit file is the cached fit, byte for byte, and loads as that fit
    fit_file = resumed.run_dir / "fits" / "lmm_spine.nc"
    assert fit_file.read_bytes() == Path(entry["cache_path"]).read_bytes()
    np.testing.assert_array_equal(load_fit(fit_file).posterior["posterior"]["b"].values,
                                  first.fits[0].fit.posterior["posterior"]["b"].values)

    # other data (one scan changed): the fit is not reused
    raw = pd.read_csv(data_path("rajak_twin.csv"))
    row = raw.index[raw["bmd_spine"].notna() & (raw["month"] == 12)][0]
    raw.loc[row, "bmd_spine"] += 0.02
    changed = tmp_path / "changed.csv"
    raw.to_csv(changed, index=False)
    other = pl.run(cfg.model_copy(update={"data": str(changed), "run_id": "changed"}))
    entry2 = other.manifest["fit_cache"]["lmm_spine"]
    assert entry2["cache"] == "miss" and entry2["prior_cache"] == "miss"
    assert entry2["cache_key"] != entry["cache_key"]
    assert not np.allclose(pd.read_csv(other.run_dir / "tables" / "bayes_estimands.csv")[NUMBERS].to_numpy(float),
                           table[NUMBERS].to_numpy(float))
    # a run on a user's file sizes the next study from that file's design: a new power study
    assert other.manifest["power"]["cache"] == "miss"
    assert other.manifest["power"]["design_used"].startswith("from data: ")


def _raw(stage):
    return stage.result.raw.drop(columns=list(TIMING_COLUMNS))


def test_power_stage_is_reproducible_and_cached(tmp_path):
    cfg = RunConfig(sites=("spine",), power_ns=(30, 60), power_sims=8, power_workers=1)
    first = pl.run_power_stage(cfg, tmp_path / "a")
    assert (first.cache, first.simulated) == ("miss", 16)
    again = pl.run_power_stage(cfg, tmp_path / "a")
    assert (again.cache, again.simulated) == ("hit", 0)
    pd.testing.assert_frame_equal(first.result.summary(), again.result.summary())
    fresh = pl.run_power_stage(cfg, tmp_path / "b")  # same seed, empty cache: the same studies
    assert fresh.cache == "miss"
    pd.testing.assert_frame_equal(_raw(first), _raw(fresh))
    more = pl.run_power_stage(cfg.model_copy(update={"power_sims": 10}), tmp_path / "a")
    assert (more.cache, more.simulated) == ("partial", 4)
    pd.testing.assert_frame_equal(_raw(more)[_raw(more)["sim"] < 8].reset_index(drop=True), _raw(first))
    other = pl.run_power_stage(cfg.model_copy(update={"seed": 3}), tmp_path / "a")
    assert other.cache == "miss" and not np.allclose(_raw(other)["estimate"], _raw(first)["estimate"], equal_nan=True)
    m = first.manifest()
    assert m["seed"] == cfg.seed and m["n"] == [30, 60] and m["sims"] == 8 and m["cache"] == "miss"
    assert m["design"]["responder_fraction"] == pytest.approx(0.68)  # the twin's calibrated design
    (sentence,) = first.smallest_n_sentences()
    assert sentence.startswith("spine, lmm") and "80%" in sentence


def test_power_stage_assurance_from_the_runs_lmm(tmp_path):
    """power_assurance: each simulated study draws its parameters from the LMM posterior handed in;
    the cache key includes the prior, so power and assurance never share cached studies."""
    from analysis.bayes.fit import fit_bayes
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin

    bf = fit_bayes(derive(load_twin().frame), "lmm", "spine", draws=150, tune=150, chains=2, seed=2)
    cfg = RunConfig(sites=("spine",), power_ns=(30,), power_sims=4, power_workers=1, power_assurance=True)
    stage = pl.run_power_stage(cfg, tmp_path, prior_fits={"spine": bf.fit})
    assert stage.result.kind == "assurance" and stage.result.raw["prior_draw"].nunique() > 1
    assert stage.cache_dir != pl.run_power_stage(cfg.model_copy(update={"power_assurance": False}), tmp_path).cache_dir
    with pytest.raises(ValueError, match="needs the run's Bayesian 'lmm' fit"):
        pl.run_power_stage(cfg, tmp_path / "x", prior_fits={})
    sec = pl.power_section(stage, load_twin(), cfg)
    assert any(p.startswith("Assurance:") for p in sec.paragraphs) and "assurance" in sec.tables[0].frame.columns


@pytest.fixture(scope="module")
def stub_sensitivity_run(tmp_path_factory):
    """A run with every registered sensitivity analysis configured, each replaced by a stub result
    (the analyses themselves are tested in tests/analysis/sensitivity), no Bayesian model and the
    power stage switched off."""
    out = tmp_path_factory.mktemp("runs")
    name = difference_name("spine", "pct")

    def stub(analysis, derived, config, **kwargs):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        rows = pd.DataFrame([[name, "spine", "stub", 1.0, 0.0, 2.0, "bayesian"]], columns=FOREST_COLUMNS)
        return SensitivityResult(name=analysis, title=f"stub {analysis}", table=pd.DataFrame({"x": [1.5]}),
                                 text=[f"text of {analysis}"], figures={f"fig_{analysis}": fig}, forest_rows=rows)

    cfg = RunConfig(output_dir=str(out), run_id="s", sites=("spine",), bayes_models=(),
                    sensitivity=tuple(SENSITIVITY_ANALYSES), mi_imputations=0, power_sims=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pl, "run_sensitivity", stub)
        res = pl.run(cfg)
    return res, (res.run_dir / "report.html").read_text()


@pytest.mark.parametrize("analysis", list(SENSITIVITY_ANALYSES))
def test_every_sensitivity_analysis_has_a_report_section(stub_sensitivity_run, analysis):
    res, html = stub_sensitivity_run
    section = html[html.index(f'<section id="sensitivity_{analysis}"'):]
    section = section[:section.index("</section>")]
    assert f"stub {analysis}" in section and f"text of {analysis}" in section
    assert f'data-figure="fig_{analysis}"' in section and "(tables/sensitivity_" + analysis + ".csv)" in section
    assert (res.run_dir / "figures" / f"fig_{analysis}.svg").is_file()
    assert pd.read_csv(res.run_dir / "tables" / f"sensitivity_{analysis}.csv")["x"].tolist() == [1.5]


def test_unconfigured_stages_have_no_section(stub_sensitivity_run):
    res, html = stub_sensitivity_run
    assert 'id="sensitivity_forest"' in html
    assert '<section id="power"' not in html and not (res.run_dir / "tables" / "power.csv").exists()
    assert res.manifest["power"] is None and "power" not in res.manifest["seeds"]
    assert '<section id="bayes' not in html and not (res.run_dir / "fits").exists()
    mixed = html[html.index('<section id="mixed_models"'):]
    assert "MMRM (us, REML)" in mixed[:mixed.index("</section>")] and "MI (m=" not in html  # mi_imputations = 0
