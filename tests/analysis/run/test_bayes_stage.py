"""The Bayesian stage of rajak run: prior vs posterior per fit, diagnostics figures for every fit
beside its diagnostics table, and a report section for every registered model."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import analysis.run.bayes_stage as bs
from analysis.bayes.fit import MODELS, BayesFit, analysis_frame, fit_bayes, prior_object
from analysis.bayes.estimands import bayes_table, fit_estimands
from analysis.study.clinical import derive
from analysis.run.config import RunConfig
from analysis.study.data import load_twin
from analysis.frequentist.primary import frequentist_analysis
from analysis.common.io import atomic_write_bytes
from analysis.figures import DeferredFigure, prior_posterior, save_figure
from analysis.report import Report, render_report


@pytest.fixture(scope="module")
def twin():
    ds = load_twin()
    return ds, derive(ds.frame)


@pytest.fixture(scope="module")
def tiny(twin):
    """A real but short fit of the LMM to the twin (plumbing, not inference)."""
    return fit_bayes(twin[1], "lmm", "spine", draws=100, tune=100, chains=2, seed=5)


def _built(derived, model="lmm", site="spine"):
    frame, _ = analysis_frame(derived)
    return MODELS[model](frame, site, prior_object("default", site))


def _curve_sd(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    mean = np.trapezoid(x * y, x) / np.trapezoid(y, x)
    return np.sqrt(np.trapezoid((x - mean) ** 2 * y, x) / np.trapezoid(y, x))


def test_prior_vs_posterior_on_the_twin(twin, tiny, tmp_path):
    items = bs.prior_posterior_items(tiny, _built(twin[1]), draws=2000, seed=1)
    post = tiny.fit.posterior["posterior"].to_dataset()
    assert [(it.variable, it.group) for it in items] == [
        ("pct_change_end", "non-responder"), ("pct_change_end", "responder"),
        ("diff_pct_change_end", "responder - non-responder"), ("diff_change_end", "responder - non-responder")]
    assert [(v, g) for v, g, _ in bs.prior_posterior_quantities(post)] == [(it.variable, it.group) for it in items]
    slope = items[-1]
    assert slope.label == "spine, responders - non-responders, change to month 12, g/cm^2"
    # the posterior curve is the fit's draws ...
    np.testing.assert_array_equal(slope.posterior, post["diff_change_end"].values.ravel())
    np.testing.assert_array_equal(items[0].posterior, post["pct_change_end"].sel(group="non-responder").values.ravel())
    # ... and the prior curve is the prior: b3 ~ N(0, responder_slope_sd) on the data's scale
    prior_sd = tiny.fit.settings["model"]["priors"]["responder_slope_sd"]
    assert slope.prior.size == 2000
    assert slope.prior.std() == pytest.approx(prior_sd, rel=0.07) and abs(slope.prior.mean()) < 0.1 * prior_sd
    fig = prior_posterior([(it.label, it.prior, it.posterior) for it in items], label="SYNTHETIC")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    ratios = [_curve_sd(ax, "prior") / _curve_sd(ax, "posterior") for ax in axes]
    assert len(ratios) == 4 and min(ratios) > 3, ratios  # the twin's data dominate these weak priors
    paths = save_figure(fig, tmp_path, "prior_posterior_lmm_spine")
    assert paths["png"].is_file() and paths["svg"].is_file()
    tab = bs.prior_posterior_table(items)
    assert (tab["width_ratio"] < 0.35).all() and (tab["prior_sd"] > tab["posterior_sd"]).all()


def test_prior_draws_are_cached_with_the_fit(twin, tiny, tmp_path):
    built = _built(twin[1])
    bf = dataclasses.replace(tiny, extra={"cache_key": "k1"})
    first = bs.prior_posterior_items(bf, built, draws=200, seed=1, cache_dir=tmp_path)
    assert bf.extra["prior_cache"] == "miss" and len(list(tmp_path.glob("prior_lmm_spine_*.npz"))) == 1
    again = bs.prior_posterior_items(bf, built, draws=200, seed=1, cache_dir=tmp_path)
    assert bf.extra["prior_cache"] == "hit"
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.prior, b.prior)
    other = bs.prior_posterior_items(bf, built, draws=200, seed=2, cache_dir=tmp_path)
    assert bf.extra["prior_cache"] == "miss" and not np.array_equal(other[0].prior, first[0].prior)
    refit = dataclasses.replace(tiny, extra={"cache_key": "k2"})  # another fit: another entry
    bs.prior_posterior_items(refit, built, draws=200, seed=1, cache_dir=tmp_path)
    assert refit.extra["prior_cache"] == "miss" and len(list(tmp_path.glob("prior_lmm_spine_*.npz"))) == 3
    off = dataclasses.replace(tiny, extra={})
    bs.prior_posterior_items(off, built, draws=200, seed=1, cache_dir=None)
    assert off.extra["prior_cache"] == "off"


def test_prior_draws_bad_input(twin):
    with pytest.raises(ValueError, match="at least 10"):
        bs.prior_draws(_built(twin[1]), ["diff_change_end"], draws=5)
    with pytest.raises(ValueError, match="none of the variables"):
        bs.prior_draws(_built(twin[1]), ["nope"], draws=50)


@pytest.fixture(scope="module")
def all_models(twin, tiny, tmp_path_factory):
    """run_bayes_stage with every registered model configured. Sampling and prior sampling are
    replaced by the tiny LMM fit relabelled and normal draws (the real models take minutes), and
    figure files by placeholders; the models themselves are still built on the twin."""
    ds, derived = twin
    freq = frequentist_analysis(derived, ("spine",), mi_imputations=0, seed=1)
    cfg = RunConfig(sites=("spine",), bayes_models=tuple(MODELS), draws=100, tune=100, chains=2, sensitivity=(),
                    power_sims=0)
    built_models = []

    def fake_fit(derived, model, site, *args, **kwargs):
        items = fit_estimands(tiny.fit, site, model)
        return BayesFit(model=model, site=site, fit=tiny.fit, estimands=items, table=bayes_table(items),
                        strategy=tiny.strategy, priors="default", extra={"cache": "off"})

    def fake_prior(built, names, draws=bs.PRIOR_DRAWS, seed=0):
        built_models.append(type(built).__name__)
        rng = np.random.default_rng(seed)
        return xr.Dataset({n: (("chain", "draw", "group"), rng.normal(0, 10, (1, draws, 2))) if n == "pct_change_end"
                           else (("chain", "draw", "contrast"), rng.normal(0, 10, (1, draws, 1))) for n in names},
                          coords={"group": ["non-responder", "responder"], "contrast": ["responder - non-responder"]})

    saved = {}

    def quick_save(fig, directory, name):  # figure files as placeholders: rendering is tested elsewhere
        import matplotlib.pyplot as plt

        saved[name] = fig
        built = fig.build() if isinstance(fig, DeferredFigure) else fig  # the builders run on these fits
        assert built.axes, name
        plt.close(built)
        return {fmt: atomic_write_bytes(Path(directory) / f"{name}.{fmt}", b"figure") for fmt in ("png", "svg")}

    out = tmp_path_factory.mktemp("bayes_stage")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bs, "fit_bayes", fake_fit)
        mp.setattr(bs, "prior_draws", fake_prior)
        mp.setattr(bs, "save_figure", quick_save)
        stage = bs.run_bayes_stage(derived, cfg, freq.estimands, out / "figures", out / "fits", ds.label,
                                   lambda msg: None)
    sections = bs.bayes_sections(stage, cfg)
    html = render_report(Report(title="t", synthetic=True, data_label=ds.label, summary=[], sections=sections,
                                methods=[]), out / "figures")
    return stage, sections, out, html, built_models, saved


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_registered_model_has_a_report_section(all_models, model):
    stage, sections, out, html, _, _ = all_models
    section = {s.key: s for s in sections}[f"bayes_{model}"]
    names = section.figure_names()
    assert f"prior_posterior_{model}_spine" in names and f"rank_{model}_spine" in names
    assert (out / "figures" / f"prior_posterior_{model}_spine.svg").is_file()
    assert (out / "fits" / f"{model}_spine.nc").is_file()
    assert f'<section id="bayes_{model}"' in html and f'data-figure="prior_posterior_{model}_spine"' in html
    assert section.tables and set(section.tables[0].frame["model"]) == {model}
    assert model in set(stage.comparison["bayes_model"])


def test_overview_ppc_compare_and_loo_sections(all_models):
    stage, sections, _, html, built_models, _ = all_models
    keys = [s.key for s in sections]
    assert keys[0] == "bayes" and {"ppc", "compare", "loo"} <= set(keys)
    assert keys.index("ppc") > max(keys.index(f"bayes_{m}") for m in MODELS)
    assert 'data-figure="ppc_spine"' in html and 'data-figure="forest_spine"' in html
    assert len(built_models) == len(MODELS)  # each model was built for its prior draws


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_fit_has_its_diagnostics_figures_beside_its_diagnostics_table(all_models, model):
    """Rank, ESS and energy plots of each fit, drawn by arviz-plots in the figure writer from only
    the groups they read, shown in the model's section right after the fit's diagnostics row."""
    stage, sections, out, html, _, saved = all_models
    names = bs.diagnostic_figure_names(model, "spine")
    assert names == [f"rank_{model}_spine", f"ess_{model}_spine", f"energy_{model}_spine"]
    assert set(names) <= {n for _, _, n in stage.figures}
    section = {s.key: s for s in sections}[f"bayes_{model}"]
    (diag,) = [t for t in section.tables if t.caption.startswith("Convergence diagnostics")]
    assert [n for _, n in diag.figures] == names
    assert diag.frame[["model", "site"]].values.tolist() == [[model, "spine"]]
    for name, make, group in zip(names, ("rank_plot", "ess_plot", "energy_plot"),
                                 ("posterior", "posterior", "sample_stats")):
        fig = saved[name]
        assert isinstance(fig, DeferredFigure) and fig.make.__name__ == make
        (tree,) = fig.args
        assert set(tree.children) == {group}  # only what the figure reads travels to the worker
        assert fig.kwargs["label"].startswith("SYNTHETIC") or "SYNTHETIC" in fig.kwargs["label"].upper()
        assert (out / "figures" / f"{name}.png").is_file()
    text = html[html.index(f'<section id="bayes_{model}"'):]
    text = text[:text.index("</section>")]
    at = text.index(f"Convergence diagnostics, {model} at")
    positions = [text.index(f'data-figure="{n}"') for n in names]
    assert at < positions[0] < positions[1] < positions[2]
    assert "<table" not in text[at:positions[-1]].split("</table>", 1)[1]  # no other table in between


def test_posterior_figures_are_drawn_in_the_figure_writer(all_models):
    """The contrasts, prior-vs-posterior and PPC figures are deferred (built where they are written,
    keyed by their content in the figure cache)."""
    from analysis.report.figure_writer import content_key

    *_, saved = all_models
    for name in ("contrasts_spine", "ppc_spine", "prior_posterior_lmm_spine"):
        assert isinstance(saved[name], DeferredFigure), name
        assert content_key(saved[name]) is not None, name


def test_ppc_replicates_only_the_draws_it_shows(all_models, tiny):
    """The posterior predictive check replicates PPC_DRAWS draws, not every draw x observation (a
    50,000-patient run built chains x draws x 180,000 replicates; issue #18)."""
    from analysis.figures.posterior import PPC_DRAWS

    *_, saved = all_models
    prepared, y_rep, site = saved["ppc_spine"].args
    post = tiny.fit.posterior["posterior"]
    assert post.sizes["chain"] * post.sizes["draw"] > PPC_DRAWS
    assert y_rep.shape == (1, PPC_DRAWS, prepared.n_obs) and site == "spine"
    assert saved["ppc_spine"].kwargs["n_lines"] == PPC_DRAWS
