"""The shipped twin: byte-identical regeneration, the calibration table, the calibration search."""

import math

import pytest

from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.rajak.published import paper_analysis, published_figures, replication_table
from analysis.common.resources import data_path
from analysis.rajak.twin import calibrate, load_provenance, twin_csv_text, twin_distance
from models.simulate import SIMULATOR_VERSION, Design


@pytest.fixture(scope="module")
def provenance():
    return load_provenance()


@pytest.fixture(scope="module")
def achieved():
    return paper_analysis(derive(load_twin().frame))


def test_regeneration_is_byte_identical(provenance):
    design = Design.from_dict(provenance["design"])
    assert twin_csv_text(design, provenance["seed"]).encode() == data_path("rajak_twin.csv").read_bytes()


def test_provenance_is_complete(provenance):
    assert provenance["synthetic"] is True
    assert "SYNTHETIC" in provenance["description"]
    assert provenance["simulator_version"] == SIMULATOR_VERSION
    for key in ("seed", "design", "parameter_sources", "targets", "achieved", "assumptions", "calibration_search"):
        assert key in provenance
    assert provenance["calibration_search"]["n_evaluated"] > 1000


def test_achieved_values_recomputed_from_the_file(provenance, achieved):
    # the JSON's achieved values are what the shipped CSV gives, not hand-entered numbers
    for key, value in provenance["achieved"].items():
        if isinstance(value, float):
            assert achieved[key] == pytest.approx(value, abs=1e-6), key
        else:
            assert achieved[key] == value, key


def test_calibration_table_meets_targets(achieved):
    table = replication_table(achieved).set_index("figure")
    assert table["close"].all(), table.loc[~table["close"]].to_string()
    assert achieved["n_recruited"] == 46 and achieved["n_completers"] == 26
    assert abs(achieved["spine_pct_change_nonresponders"] - (-2.12)) < 0.3
    for fig in published_figures():
        if fig.kind == "p":
            assert abs(math.log10(achieved[fig.key]) - math.log10(fig.value)) < 0.3, fig.key
    assert achieved["p_spine_responders"] > 0.05


def test_twin_is_labelled_synthetic():
    ds = load_twin()
    assert ds.synthetic and "SYNTHETIC" in ds.label
    assert "SYNTHETIC" in ds.report.to_text()


def test_distance_is_zero_at_the_targets():
    exact = {f.key: f.value for f in published_figures() if f.value is not None}
    exact["spine_responders_stable"] = 0.5
    for key in ("das28_crp", "cdai", "prednisolone", "alp"):
        exact[f"mean_change_{key}"] = -1.0
    assert twin_distance(exact) == 0.0
    worse = dict(exact, p_cdai=0.07)  # one decade off costs (1 / 0.15)^2
    assert twin_distance(worse) == pytest.approx((1 / 0.15) ** 2)
    wrong_way = dict(exact, mean_change_alp=+1.0)
    assert twin_distance(wrong_way) == pytest.approx(25.0)


def test_search_reproduces_the_shipped_choice(provenance):
    """Rerunning the search on the winning grid point over seeds around the winner finds it again."""
    design = Design.from_dict(provenance["design"])
    seed = provenance["seed"]
    grid = {k: (v,) for k, v in {
        "spine.slope_nonresponder_pct": design.spine.slope_nonresponder_pct,
        "responder_fraction": design.responder_fraction,
    }.items()}
    res = calibrate(seeds=range(max(seed - 15, 0), seed + 15), grid=grid, base=design)
    assert res.best.seed == seed
    assert res.best.distance == pytest.approx(provenance["distance"])


def test_default_design_is_the_twin_design(provenance):
    assert Design.from_dict(provenance["design"]) == Design()


def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def test_every_design_parameter_has_a_source(provenance):
    """Each leaf of the design is named in PARAMETER_SOURCES (exactly, as 'group.*', '*.field', a
    'group.prefix_*' pattern or its whole group), and the twin's JSON carries the current sources."""
    import fnmatch

    from models.simulate import PARAMETER_SOURCES

    keys = list(PARAMETER_SOURCES)
    missing = [leaf for leaf in _leaves(Design().to_dict())
               if not any(fnmatch.fnmatchcase(leaf, k) or leaf.split(".")[0] == k for k in keys)]
    assert not missing, f"no source for {missing}"
    assert provenance["parameter_sources"] == PARAMETER_SOURCES
