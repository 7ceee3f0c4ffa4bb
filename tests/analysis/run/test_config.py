"""The run configuration: validation and one-line errors."""

import pytest

from analysis.run.config import ConfigError, RunConfig, load_config


def test_defaults_use_the_twin():
    cfg = load_config()
    assert cfg.data is None and cfg.responder.kind == "eular" and cfg.sites is None and cfg.endpoint is None


def test_toml_plan_and_overrides(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('seed = 7\nsites = ["spine"]\n[responder]\nkind = "das28_fall"\nthreshold = 1.2\n')
    cfg = load_config(plan, seed=9)
    assert cfg.seed == 9 and cfg.sites == ("spine",) and cfg.responder.kind == "das28_fall"
    assert "fall > 1.2" in cfg.responder.rule().describe()


@pytest.mark.parametrize("text,fragment", [
    ("sede = 7\n", "setting 'sede': unknown setting"),
    ('[responder]\nkind = "magic"\n', "setting 'responder.kind'"),
    ("seed = -1\n", "setting 'seed'"),
    ("seed = \n", "not valid TOML"),
])
def test_bad_plans(tmp_path, text, fragment):
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(plan)
    assert fragment in str(info.value) and str(plan) in str(info.value) and "\n" not in str(info.value)


def test_missing_plan(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.toml")


def test_digest_ignores_output_location():
    assert RunConfig(output_dir="a").digest() == RunConfig(output_dir="b").digest()
    assert RunConfig(seed=1).digest() != RunConfig(seed=2).digest()


def test_atomic_write_leaves_readable_file_and_no_temp(tmp_path):
    import stat

    from analysis.common.io import atomic_write_text

    p = atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    assert p.read_text() == "hello"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert [f.name for f in p.parent.iterdir()] == ["x.txt"]


@pytest.mark.parametrize("text,fragment", [
    ("power_ns = [30, 4]\n", "at least 6"),
    ("power_ns = [30, 30]\n", "distinct"),
    ('power_analyses = ["lmm", "anova"]\n', "unknown power analysis 'anova'"),
    ("power_sims = -1\n", "setting 'power_sims'"),
    ("power_dropout = 1.0\n", "setting 'power_dropout'"),
])
def test_bad_power_settings(tmp_path, text, fragment):
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(plan)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_power_stage_on_by_default_and_switched_off_three_ways():
    assert RunConfig().power_enabled and RunConfig().power_ns == (30, 60, 90, 120)
    assert RunConfig(power_ns=(90, 30)).power_ns == (30, 90)
    for off in ({"power_sims": 0}, {"power_ns": ()}, {"power_analyses": ()}):
        assert not RunConfig(**off).power_enabled
