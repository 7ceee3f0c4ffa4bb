"""The HTML report: self-contained, every referenced figure and table exists, and it renders in a
real headless browser without console errors."""

import os
import re
import shutil
import subprocess

import pandas as pd
import pytest

from analysis.run.config import RunConfig
from analysis.run.pipeline import run
from analysis.report import Report, Section, render_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run(RunConfig(output_dir=str(out), run_id="rep", draws=150, tune=150, chains=2, power_ns=(30, 60),
                         power_sims=10, power_workers=1)).run_dir


def test_report_is_self_contained(run_dir):
    html = (run_dir / "report.html").read_text()
    # no external resources: every src is a data URI, no stylesheet or script links
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "<script" not in html and "http://" not in html and "https://" not in html


def test_every_referenced_figure_and_table_exists(run_dir):
    html = (run_dir / "report.html").read_text()
    figs = set(re.findall(r'data-figure="([^"]+)"', html))
    assert {"retention", "trajectories_observed", "contrasts_spine", "forest_spine", "ppc_spine",
            "trajectories_posterior_femoral_neck", "prior_posterior_lmm_spine", "prior_posterior_lmm_femoral_neck",
            "power_curve"} <= figs
    for name in figs:
        assert (run_dir / "figures" / f"{name}.png").is_file() and (run_dir / "figures" / f"{name}.svg").is_file()
    for name in re.findall(r"\(tables/([a-z_]+)\.csv\)", html):
        assert (run_dir / "tables" / f"{name}.csv").is_file(), name


def test_synthetic_banner(run_dir):
    html = (run_dir / "report.html").read_text()
    assert 'id="synthetic-banner"' in html and "SYNTHETIC DATA" in html


def test_missing_figure_is_an_error(tmp_path):
    rep = Report(title="t", synthetic=False, data_label="x", summary=[], methods=[],
                 sections=[Section("s", "S", figures=[("cap", "nope")])])
    with pytest.raises(FileNotFoundError, match="nope.png"):
        render_report(rep, tmp_path)


def test_failures_are_shown_at_the_top(tmp_path):
    rep = Report(title="t", synthetic=False, data_label="x", summary=["s"], methods=[],
                 sections=[Section("a", "A", status="fail")], failures=["lmm spine: R-hat 1.08 > 1.01"])
    html = render_report(rep, tmp_path)
    assert html.index('id="failures"') < html.index('id="summary"')
    assert "R-hat 1.08" in html and "(FAILED DIAGNOSTICS)" in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (CI installs it)")
def test_renders_in_headless_chromium(run_dir, tmp_path):
    assert CHROMIUM, "CI must install chromium (see .ci/run)"
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={shot}", "--window-size=1200,3000", (run_dir / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 50_000  # a real page, not a blank one
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert console == []


def test_small_samples_fail_loudly(run_dir):
    """150 draws x 2 chains cannot reach bulk ESS 400: the failure is at the top of the report, in the
    manifest and in summary.txt."""
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["diagnostics"]["failures"]
    html = (run_dir / "report.html").read_text()
    assert 'id="failures"' in html and "ess_bulk" in html
    assert (run_dir / "summary.txt").read_text().startswith("!!! DIAGNOSTICS FAILED")
    assert (run_dir / "fits" / "lmm_spine.nc").is_file()


def _section(html, key):
    text = html[html.index(f'<section id="{key}"'):]
    return text[:text.index("</section>")]


def test_prior_vs_posterior_in_the_bayesian_sections(run_dir):
    html = (run_dir / "report.html").read_text()
    section = _section(html, "bayes_lmm")
    assert 'data-figure="prior_posterior_lmm_spine"' in section and "Prior vs posterior" in section
    tab = pd.read_csv(run_dir / "tables" / "bayes_prior_posterior_lmm.csv")
    assert set(tab["site"]) == {"spine", "femoral_neck"} and len(tab) == 8
    assert (tab["prior_sd"] > 3 * tab["posterior_sd"]).all()


def test_power_section_states_design_and_smallest_n(run_dir):
    import json

    html = (run_dir / "report.html").read_text()
    section = _section(html, "power")
    assert "Sample size for the next study" in section and "twin&#39;s calibrated design" in section
    assert "Dropout:" in section and "without the final DXA" in section
    power = pd.read_csv(run_dir / "tables" / "power.csv")
    assert set(power["n"]) == {30, 60} and set(power["site"]) == {"spine", "femoral_neck"}
    assert power["data"].str.contains("SYNTHETIC").all()
    smallest = pd.read_csv(run_dir / "tables" / "power_smallest_n.csv")
    for _, r in smallest.iterrows():  # the report states the smallest n (or that the grid does not reach 80%)
        expected = (f"smallest n with power &gt;= 80% is {int(r['n_min'])}" if pd.notna(r["n_min"])
                    else f"power {r['power_at_max_n']:.2f} at n = 60")
        assert expected in section
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["power"]["seed"] == manifest["seeds"]["power"] == manifest["config"]["seed"]
    assert manifest["power"]["cache"] == "miss" and manifest["timings"]["power_s"] > 0
    assert "Sample size for the next study" in (run_dir / "summary.txt").read_text()


def test_every_configured_analysis_has_a_section(run_dir):
    """The default plan's analyses, each in its own section: frequentist (with MI), each sensitivity
    analysis (tipping heat map; prior predictive checks and power-scaling sensitivity under 'priors'),
    the Bayesian model, PPC, LOO, Bayesian vs frequentist and the power study."""
    import json

    html = (run_dir / "report.html").read_text()
    config = json.loads((run_dir / "manifest.json").read_text())["config"]
    keys = re.findall(r'<section id="([a-z_]+)"', html)
    expected = (["data", "replication", "completers", "mixed_models"]
                + (["estimand"] if "reference_based" in config["sensitivity"] else [])
                + [f"sensitivity_{name}" for name in config["sensitivity"]] + ["sensitivity_forest", "bayes"]
                + [f"bayes_{m}" for m in config["bayes_models"]] + ["ppc", "compare", "loo", "power", "methods"])
    assert keys == expected
    estimand = _section(html, "estimand")  # the estimand in ICH E9(R1) terms heads the sensitivity analyses
    assert "intercurrent events" in estimand and "discontinued" in estimand and "population" in estimand
    assert f"MI (m={config['mi_imputations']}" in _section(html, "mixed_models")
    assert 'data-figure="sensitivity_tipping"' in _section(html, "sensitivity_tipping")
    priors = _section(html, "sensitivity_priors")
    assert 'data-figure="priors_prior_predictive_spine"' in priors and "likelihood" in priors  # psense columns


def test_diagnostics_plots_for_every_fit(run_dir):
    """Every Bayesian fit of the run has its rank, ESS and energy plots (arviz-plots), in its model's
    section right after its diagnostics table, and on disk."""
    import html as html_lib
    import json

    from analysis.study.estimands import SITE_LABELS

    html = (run_dir / "report.html").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = manifest["config"]
    fits = [(m, s) for m in config["bayes_models"] for s in config["sites"]]
    assert fits and {f"{m}_{s}" for m, s in fits} == set(manifest["diagnostics"]["fits"])
    for model, site in fits:
        section = _section(html, f"bayes_{model}")
        table = section.index(html_lib.escape(f"Convergence diagnostics, {model} at {SITE_LABELS[site]}"))
        block = section[table:section.index("</div>", table)]  # the table and the figures that follow it
        for kind in ("rank", "ess", "energy"):
            name = f"{kind}_{model}_{site}"
            assert f'data-figure="{name}"' in block, name
            assert (run_dir / "figures" / f"{name}.png").is_file() and (run_dir / "figures" / f"{name}.svg").is_file()
