"""CDISC ADaM BDS files: detected from their columns, pivoted to one row per subject and visit, the
analysis flags honoured (and the excluded records listed), BMD parameters mapped to sites."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.common.resources import data_path
from analysis.study.adam import (
    DAYS_PER_MONTH,
    DEFAULT_PARAM_MAP,
    avisitn_not_months,
    is_adam_bds,
    param_target,
    pivot_adam,
)
from analysis.study.data import DataValidationError, load_dataset

runner = CliRunner()
PARAMS = {"LSBMD": ("bmd_spine", "Lumbar Spine BMD (g/cm2)"),
          "FNBMD": ("bmd_femoral_neck", "Femoral Neck BMD (g/cm2)"),
          "DAS28CRP": ("das28_crp", "DAS28-CRP")}
ADAM_LABELS = {"USUBJID": "Unique Subject Identifier", "PARAMCD": "Parameter Code", "PARAM": "Parameter",
               "AVAL": "Analysis Value", "AVISITN": "Analysis Visit (N)", "AVISIT": "Analysis Visit",
               "ADY": "Analysis Relative Day", "TRT01P": "Planned Treatment for Period 01",
               "ABLFL": "Baseline Record Flag", "ANL01FL": "Analysis Flag 01", "AGE": "Age", "SEX": "Sex"}


@pytest.fixture(scope="module")
def twin() -> pd.DataFrame:
    return pd.read_csv(data_path("rajak_twin.csv"))


def _adam(twin: pd.DataFrame, params=PARAMS, n_rejected: int = 3) -> pd.DataFrame:
    """The twin as an ADaM BDS: one record per subject x parameter x visit where AVAL is recorded
    (``params``: PARAMCD -> (the twin's column, PARAM)), plus ``n_rejected`` repeat measurements
    flagged ANL01FL = "N" (with other values)."""
    recs = []
    for _, r in twin.iterrows():
        for code, (col, label) in params.items():
            if pd.isna(r[col]):
                continue
            m = int(r["month"])
            recs.append({"STUDYID": "RAJAK", "USUBJID": f"RAJAK-{r['patient_id']}", "PARAMCD": code, "PARAM": label,
                         "AVAL": float(r[col]), "AVISITN": float(m), "AVISIT": "Baseline" if m == 0 else f"Month {m}",
                         "ADY": float(1 + round(m * DAYS_PER_MONTH)), "TRT01P": "Baricitinib 4 mg",
                         "ABLFL": "Y" if m == 0 else "", "ANL01FL": "Y", "AGE": float(r["age"]), "SEX": r["sex"]})
    adam = pd.DataFrame(recs)
    bmd = adam.index[adam["PARAMCD"] == "LSBMD"][5:5 + n_rejected]
    repeats = adam.loc[bmd].assign(AVAL=lambda d: d["AVAL"] + 0.05, ANL01FL="N", ABLFL="")
    return pd.concat([adam, repeats], ignore_index=True)


def _expected(twin: pd.DataFrame) -> pd.DataFrame:
    return (twin.assign(patient_id="RAJAK-" + twin["patient_id"], month=twin["month"].astype(float))
            [["patient_id", "month", "bmd_spine", "bmd_femoral_neck", "das28_crp"]]
            .sort_values(["patient_id", "month"]).reset_index(drop=True))


def _cli(*args):
    return runner.invoke(app, ["validate", *map(str, args)])


def test_default_table_has_the_usual_codes():
    for code, col in {"LSBMD": "bmd_spine", "BMDLS": "bmd_spine", "L1L4BMD": "bmd_spine",
                      "FNBMD": "bmd_femoral_neck", "BMDFN": "bmd_femoral_neck", "THBMD": "bmd_total_hip",
                      "BMDTH": "bmd_total_hip", "TOTHBMD": "bmd_total_hip", "RADBMD": "bmd_radius",
                      "TBBMD": "bmd_total_body", "LSTSCORE": "tscore_spine", "FNTSCR": "tscore_femoral_neck",
                      "DAS28CRP": "das28_crp"}.items():
        assert DEFAULT_PARAM_MAP[code] == col, code
    assert DEFAULT_PARAM_MAP["LSZSCORE"] is None
    assert param_target("BMD_LS") == ("bmd_spine", "code")  # separators ignored
    assert param_target("XYZ", "Total Hip Bone Mineral Density (g/cm^2)") == ("bmd_total_hip", "label")
    assert param_target("XYZ", "Hip, femoral neck BMD") == ("bmd_femoral_neck", "label")
    assert param_target("LSBMDPC", "Percent change in lumbar spine BMD")[0] is None
    assert param_target("HB", "Hemoglobin (g/dL)") == (None, "not BMD")


def test_detection():
    assert is_adam_bds(["STUDYID", "USUBJID", "PARAMCD", "AVAL", "AVISITN"])
    assert is_adam_bds(["usubjid", "param", "aval"])
    assert not is_adam_bds(["patient_id", "month", "bmd_spine"])
    assert not is_adam_bds(["USUBJID", "AVAL", "PARAMCD", "patient_id"])


def test_pivot_gives_back_the_twin(twin):
    adam = _adam(twin)
    piv = pivot_adam(adam, name="adbmd")
    got = piv.frame.sort_values(["patient_id", "month"]).reset_index(drop=True)
    exp = _expected(twin)
    pd.testing.assert_frame_equal(got[exp.columns].astype({c: float for c in exp.columns[2:]}), exp,
                                  check_dtype=False)
    assert list(piv.frame.columns[:5]) == ["patient_id", "month", "bmd_spine", "bmd_femoral_neck", "das28_crp"]
    assert {"TRT01P", "age", "sex"} <= set(piv.frame.columns)
    assert len(piv.excluded) == 3 and all("ANL01FL = 'N'" in e.reason for e in piv.excluded)
    assert piv.excluded[0].where == f"row {len(adam) - 3 + 1}"
    assert any("month from AVISITN" in n for n in piv.notes)


def test_full_validation_of_an_adam_xpt(tmp_path, twin):
    pyreadstat = pytest.importorskip("pyreadstat")
    adam = _adam(twin)
    path = tmp_path / "adbmd.xpt"
    pyreadstat.write_xport(adam, str(path), column_labels=ADAM_LABELS, table_name="ADBMD")
    ds = load_dataset(path)
    exp = _expected(twin)
    pd.testing.assert_frame_equal(ds.frame[exp.columns], exp, check_dtype=False)
    rep = ds.report
    assert rep.n_patients == twin["patient_id"].nunique() and rep.completers == 26
    assert rep.file_format == "adam" and len(rep.excluded) == 3
    assert any("LSBMD -> bmd_spine, FNBMD -> bmd_femoral_neck, DAS28CRP -> das28_crp" in n for n in rep.notes)
    assert (ds.frame["TRT01P"] == "Baricitinib 4 mg").all()
    text = rep.to_text()
    assert "excluded rows (3)" in text and "not flagged for analysis (ANL01FL = 'N') (PARAMCD LSBMD)" in text
    res = _cli(path)
    assert res.exit_code == 0 and "patients: 46" in res.stdout


def test_adam_value_problem_names_the_record(tmp_path, twin):
    pyreadstat = pytest.importorskip("pyreadstat")
    adam = _adam(twin, n_rejected=0)
    i = int(adam.index[(adam["PARAMCD"] == "FNBMD")][7])
    adam.loc[i, "AVAL"] = 8.2
    path = tmp_path / "adbmd.xpt"
    pyreadstat.write_xport(adam, str(path), column_labels=ADAM_LABELS)
    with pytest.raises(DataValidationError) as info:
        load_dataset(path)
    msg = str(info.value)
    assert f"row {i + 1} " in msg
    assert "column 'AVAL' (Analysis Value) of PARAMCD 'FNBMD' as 'bmd_femoral_neck': value 8.2 outside" in msg


def test_one_site_any_site_and_param_map(twin):
    # the twin has no hip: its femoral neck values stand in for a total hip parameter
    one = _adam(twin, {"BMDL24": ("bmd_spine", "L2-L4 spine"), "TOTHBMD": ("bmd_femoral_neck", "Total hip BMD")}, 0)
    default = pivot_adam(one, name="x")  # BMDL24 is no known code and its label names no BMD
    assert [c for c in default.frame.columns if c.startswith("bmd_")] == ["bmd_total_hip"]
    assert any("BMDL24 (L2-L4 spine)" in n for n in default.notes)
    piv = pivot_adam(one, {"BMDL24": "spine"}, name="x")
    assert [c for c in piv.frame.columns if c.startswith("bmd_")] == ["bmd_spine", "bmd_total_hip"]
    exp = _expected(twin)
    got = piv.frame.sort_values(["patient_id", "month"]).reset_index(drop=True)
    merged = exp.merge(got, on=["patient_id", "month"], how="inner", suffixes=("", "_adam"))
    np.testing.assert_allclose(merged["bmd_spine_adam"].astype(float), merged["bmd_spine"])
    only_spine = pivot_adam(one, {"BMDL24": "spine", "TOTHBMD": "ignore"}, name="x")
    assert "bmd_total_hip" not in only_spine.frame.columns
    assert any("TOTHBMD" in n and "ignored" in n for n in only_spine.notes)


def test_param_text_without_paramcd(twin):
    adam = _adam(twin, n_rejected=0).drop(columns="PARAMCD")
    piv = pivot_adam(adam, name="x")
    assert {"bmd_spine", "bmd_femoral_neck"} <= set(piv.frame.columns)
    assert piv.targets["DAS28-CRP"] == "das28_crp"  # separators ignored: the code DAS28CRP


def test_tscores_mapped_and_zscores_ignored(twin):
    adam = _adam(twin, n_rejected=0)
    extra = adam[adam["PARAMCD"] == "LSBMD"].assign(PARAMCD="LSTSCORE", PARAM="Lumbar spine T-score",
                                                    AVAL=lambda d: (d["AVAL"] - 1.0) / 0.12)
    z = extra.assign(PARAMCD="LSZSCORE", PARAM="Lumbar spine Z-score")
    piv = pivot_adam(pd.concat([adam, extra, z], ignore_index=True), name="x")
    assert "tscore_spine" in piv.frame.columns and piv.targets["LSZSCORE"] is None
    assert any("LSZSCORE (Lumbar spine Z-score)" in n for n in piv.notes)


def test_month_from_ady_when_avisitn_is_a_visit_number(twin):
    adam = _adam(twin, n_rejected=0)
    adam["AVISITN"] = adam["AVISITN"].map({0.0: 1.0, 3.0: 2.0, 6.0: 3.0, 12.0: 4.0})
    adam["AVISIT"] = adam["AVISITN"].map(lambda v: f"Visit {v:g}")
    piv = pivot_adam(adam, name="x")
    assert any(n.startswith("month from ADY") and "AVISITN was not read as months" in n for n in piv.notes)
    months = np.sort(piv.frame["month"].unique())
    np.testing.assert_allclose(months, [0, 3, 6, 12], atol=0.02)
    with pytest.raises(DataValidationError, match="AVISITN does not count months .* no ADY"):
        pivot_adam(adam.drop(columns="ADY"), name="x")


def test_avisitn_rule():
    avn = pd.Series([0.0, 6.0, 12.0])
    base = pd.Series([True, False, False])
    rows = pd.Series([True, True, True])
    assert avisitn_not_months(avn, base, rows) is None
    assert "not a whole number" in avisitn_not_months(avn + 0.5, base, rows)
    assert "has AVISITN 1, not 0" in avisitn_not_months(avn.replace(0.0, 1.0), base, rows)
    assert "does not count months" in avisitn_not_months(avn, base, rows, avisit=pd.Series(["Baseline", "Week 6",
                                                                                              "Week 12"]))
    assert "does not match" in avisitn_not_months(avn, base, rows, avisit=pd.Series(["Baseline", "Month 3",
                                                                                      "Month 12"]))
    rel = pd.Series([0.0, 6 * 7 / DAYS_PER_MONTH, 12 * 7 / DAYS_PER_MONTH])  # the numbers are weeks
    assert "ADY puts AVISITN 6 at 1.4 months" in avisitn_not_months(avn, base, rows, rel_months=rel)


def test_ady_records_before_baseline_are_excluded_and_listed(twin):
    adam = _adam(twin, n_rejected=0).drop(columns=["AVISITN", "AVISIT"])
    screening = adam[adam["ABLFL"] == "Y"].head(2).assign(ABLFL="", ADY=-14.0, AVAL=lambda d: d["AVAL"] + 0.1)
    piv = pivot_adam(pd.concat([adam, screening], ignore_index=True), name="x")
    early = [e for e in piv.excluded if "before the baseline record" in e.reason]
    assert len(early) == 2 and early[0].month < 0


def test_errors(twin):
    adam = _adam(twin, n_rejected=0)
    with pytest.raises(DataValidationError, match=r"without a BMD parameter \(PARAMCDs found: DAS28CRP\)"):
        pivot_adam(adam[adam["PARAMCD"] == "DAS28CRP"], name="x")
    both = pd.concat([adam, adam[adam["PARAMCD"] == "LSBMD"].assign(PARAMCD="BMDLS")], ignore_index=True)
    with pytest.raises(DataValidationError, match="'LSBMD' and 'BMDLS' would both fill bmd_spine"):
        pivot_adam(both, name="x")
    with pytest.raises(DataValidationError, match="PARAMCD 'NOPE', which is not in the file"):
        pivot_adam(adam, {"NOPE": "spine"}, name="x")
    with pytest.raises(DataValidationError, match="a site is a lower-case name"):
        pivot_adam(adam, {"LSBMD": "Lumbar Spine!"}, name="x")
    i = int(adam.index[adam["ABLFL"] == ""][0])
    dup = pd.concat([adam, adam.iloc[[i]]], ignore_index=True)
    with pytest.raises(DataValidationError, match=f"row {i + 1} and row {len(dup)}: two analysed records"):
        pivot_adam(dup, name="x")
    base = pd.concat([adam, adam.iloc[[0]]], ignore_index=True)
    with pytest.raises(DataValidationError, match=f"row 1 and row {len(base)}: two baseline records"):
        pivot_adam(base, name="x")
    older = adam.copy()
    older.loc[older.index[5], "AGE"] += 1
    with pytest.raises(DataValidationError, match="column 'AGE' changes within subject"):
        pivot_adam(older, name="x")
    with pytest.raises(DataValidationError, match="without AVISITN or ADY"):
        pivot_adam(adam.drop(columns=["AVISITN", "ADY"]), name="x")


def test_cli_adam_errors_and_param(tmp_path, twin):
    adam = _adam(twin, n_rejected=0)
    nobmd = tmp_path / "adeff.csv"
    adam[adam["PARAMCD"] == "DAS28CRP"].to_csv(nobmd, index=False)
    res = _cli(nobmd)
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "without a BMD parameter (PARAMCDs found: DAS28CRP)" in lines[0]
    renamed = tmp_path / "adbmd.csv"
    adam.replace({"PARAMCD": {"LSBMD": "SPN", "FNBMD": "NCK"}}).assign(PARAM="").to_csv(renamed, index=False)
    res = _cli(renamed, "--param", "SPN=spine", "--param", "NCK=femoral_neck")
    assert res.exit_code == 0, res.stderr
    assert "SPN -> bmd_spine, NCK -> bmd_femoral_neck" in res.stdout
    res = _cli(renamed, "--param", "SPN=spine")
    assert res.exit_code == 2 and "missing required column 'bmd_femoral_neck'" in res.stderr
    assert "--param CODE=site" in res.stderr and len(res.stderr.strip().splitlines()) == 1
