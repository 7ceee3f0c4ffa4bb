"""The ``[estimand]`` table of a run plan (analysis.run.estimand_config): TOML parses into the five
ICH E9(R1) attributes, strategies per ICE type (canonical, aliases read), the ICE source and delta
rules; bad settings are one line; the estimand table and methods text in the design's words."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest
from pydantic import ValidationError

from analysis.run.estimand_config import (ATTRIBUTES, DeltaRule, EstimandConfig, estimand_table, estimand_text,
                                          parse_estimand)
from analysis.study.design import GroupSpec, ResolvedDesign, StudyDesign
from analysis.study.ice_table import IceTable
from analysis.study.problems import DataValidationError

PLAN = """
[estimand]
population = "postmenopausal women with osteopenia"
default_strategy = "mar"
strategy.discontinued = "J2R"
strategy."Bone therapy" = "hypothetical"
strategy.death = "while on treatment"

[estimand.ice]
file = "ice.csv"
type_column = "EVENT"
reasons = {"Adverse Event" = "discontinued", "completed" = "none"}
reason_column = "DCSREAS"

[[estimand.delta]]
value = -0.01
visit = 24
group = "Active"
ice_type = "discontinued"

[[estimand.delta]]
value = 0.005
"""


def _design(levels=("active", "placebo"), reference="placebo", sites=("spine", "total_hip")) -> ResolvedDesign:
    group = GroupSpec(kind="column", column="arm", reference=reference) if levels else GroupSpec(kind="none")
    return ResolvedDesign(design=StudyDesign(sites={s: f"bmd_{s}" for s in sites}, group=group), sites=sites,
                          visits=(0.0, 6.0, 12.0, 24.0), endpoint=24.0, group_levels=levels,
                          reference=reference if levels else None, covariates=())


def _ice() -> IceTable:
    return IceTable(pd.DataFrame({"patient_id": ["S1", "S2", "S3", "S4"], "month": [6.0, 12.0, 24.0, 12.0],
                                  "ice_type": ["discontinued", "discontinued", "glucocorticoid", "discontinued"],
                                  "strategy": [None, None, None, "MAR"]}), "ice.csv")


def test_toml_table_parses():
    cfg = EstimandConfig(**tomllib.loads(PLAN)["estimand"])
    assert cfg.population == "postmenopausal women with osteopenia" and cfg.variable is None
    assert cfg.strategy == {"discontinued": "JR", "bone_therapy": "hypothetical:MAR", "death": "while_on_treatment"}
    assert cfg.default_strategy == "MAR" and cfg.strategy_of("Glucocorticoid") == "MAR"
    assert cfg.ice.file == "ice.csv" and cfg.ice.source == "file" and cfg.ice.derive
    assert cfg.ice.reasons == {"adverse event": "discontinued", "completed": "none"}
    assert cfg.delta == (DeltaRule(value=-0.01, visit=24, group="active", ice_type="discontinued"),
                         DeltaRule(value=0.005))
    assert cfg.delta[0].matches(24, "ACTIVE", "discontinued") and not cfg.delta[0].matches(12, "active", "discontinued")
    assert cfg.delta[1].matches(6, None, "death")
    assert cfg.delta[0].describe() == "-0.01 at month 24 in group active after discontinued"
    assert parse_estimand(tomllib.loads(PLAN)["estimand"]) == cfg
    assert EstimandConfig().ice.source == "derived"
    assert EstimandConfig(ice={"derive": False}).ice.source == "none"


@pytest.mark.parametrize("toml, expected", [
    ('strategy.discontinued = "J3R"', ["estimand.strategy", "unknown strategy 'J3R'", "hypothetical:LMCF"]),
    ('strategy.death = "composite"', ["composite strategy", "BMD is continuous"]),
    ('default_strategy = "worst case"', ["estimand.default_strategy", "unknown strategy"]),
    ('estimator = "mmrm"', ["estimand.estimator", "unknown setting"]),
    ('ice.reasons = {"AE" = "discontinued"}', ["estimand.ice", "no reason_column"]),
    ('ice.type_column = "EVENT"', ["estimand.ice", "both type_column and month_column"]),
    ('strategy."2nd fracture" = "JR"', ["ICE type '2nd fracture' is not a name"]),
    ('delta = [{visit = 12}]', ["estimand.delta.0.value", "Field required"]),
])
def test_bad_settings_are_one_line(toml, expected):
    data = tomllib.loads(toml)
    with pytest.raises(ValidationError):
        EstimandConfig(**data)
    with pytest.raises(DataValidationError) as exc:
        parse_estimand(data, "plan.toml")
    line = str(exc.value)
    assert "\n" not in line and line.startswith("plan.toml: setting 'estimand")
    for part in expected:
        assert part in line, (part, line)


def test_estimand_table_defaults_from_the_design():
    table = estimand_table(EstimandConfig(strategy={"discontinued": "JR", "fracture": "hypothetical:CIR"}),
                           _design(), _ice())
    assert list(table.columns) == ["attribute", "description"]
    assert list(dict.fromkeys(table["attribute"])) == list(ATTRIBUTES)
    d = dict(zip(table["attribute"], table["description"]))
    assert d["treatment"] == "active vs placebo"
    assert d["population"] == "all patients with a baseline and a group (active, placebo)"
    assert d["variable"] == "change from baseline in spine and total hip BMD at month 24"
    assert d["summary"] == "difference in means (active \u2212 placebo)"
    ice = table.loc[table["attribute"] == "intercurrent events", "description"].tolist()
    assert ice[0].startswith("discontinued (3 patients): ")
    assert ice[0].endswith("JR for 2, MAR for 1")  # per-row strategies differ within the type
    assert ice[1] == "glucocorticoid (1 patient): missing at random (MAR), values observed after the event kept"
    assert ice[2] == ("fracture (no patients): hypothetical, values after the event set aside and imputed by copy "
                      "increments in reference (CIR)")


def test_estimand_table_uses_the_plans_words_and_single_arm_defaults():
    cfg = EstimandConfig(population="women on aromatase inhibitors", summary="median change")
    d = dict(zip(*estimand_table(cfg, _design(), None).to_dict("list").values()))
    assert d["population"] == "women on aromatase inhibitors" and d["summary"] == "median change"
    assert d["intercurrent events"] == "none recorded"
    single = estimand_table(None, _design(levels=(), sites=("total_hip",)), IceTable.empty())
    s = dict(zip(single["attribute"], single["description"]))
    assert s["population"] == "all patients with a baseline visit"
    assert s["treatment"] == "the study treatment (single arm)" and s["summary"] == "mean change from baseline"
    three = estimand_table(None, _design(levels=("high", "low", "placebo")), None)
    t = dict(zip(three["attribute"], three["description"]))
    assert t["treatment"] == "high, low vs placebo"
    assert t["summary"] == "difference in means (high \u2212 placebo); difference in means (low \u2212 placebo)"


def test_estimand_text_paragraphs():
    cfg = parse_estimand(tomllib.loads(PLAN)["estimand"])
    paragraphs = estimand_text(cfg, _design(), _ice())
    assert len(paragraphs) == 3
    assert paragraphs[0].startswith("The estimand follows ICH E9(R1). Treatment: active vs placebo.")
    assert "postmenopausal women with osteopenia" in paragraphs[0]
    assert "discontinued (3 patients" in paragraphs[1] and "while on treatment" in paragraphs[1]
    assert "Events were taken from ice.csv." in paragraphs[1]
    assert "-0.01 at month 24 in group active after discontinued" in paragraphs[2]
    none = estimand_text(None, _design(), None)
    assert len(none) == 2 and none[1].startswith("No intercurrent events were recorded")
