"""The completers analysis: every row equals the R-convention test computed by hand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.study.estimands import difference_name, estimand_name
from analysis.frequentist.completers import completers_analysis


def _study():
    # responders: R1..R4 with % change +1, +2, 0, +3; non-responders N1..N3: -2, -4, -3; U1 dropout
    rows = []
    changes = {"R1": 1.0, "R2": 2.0, "R3": 0.0, "R4": 3.0, "N1": -2.0, "N2": -4.0, "N3": -3.0}
    for pid, pct in changes.items():
        resp = pid.startswith("R")
        rows.append(dict(patient_id=pid, month=0, bmd_spine=1.000, bmd_femoral_neck=0.800,
                         das28_crp=5.5, sex="F", alp_u_l=80.0))
        rows.append(dict(patient_id=pid, month=12, bmd_spine=round(1.0 * (1 + pct / 100), 3),
                         bmd_femoral_neck=0.800, das28_crp=3.0 if resp else 5.4, sex="F", alp_u_l=76.0 if resp else 80.0))
    rows.append(dict(patient_id="U1", month=0, bmd_spine=0.9, bmd_femoral_neck=0.7, das28_crp=5.0, sex="F", alp_u_l=70.0))
    return derive(pd.DataFrame(rows))


def test_within_and_between_rows_match_closed_forms():
    res = completers_analysis(_study(), sites=("spine",))
    assert sorted(res.analysis_set) == ["N1", "N2", "N3", "R1", "R2", "R3", "R4"]
    assert res.excluded == ["U1"]
    r = np.array([1.0, 2.0, 0.0, 3.0])
    n = np.array([-2.0, -4.0, -3.0])
    t = res.row(estimand_name("spine", "responder", "pct"), "One Sample")
    assert t["estimate"] == pytest.approx(r.mean())
    assert t["se"] == pytest.approx(r.std(ddof=1) / 2)
    assert t["df"] == 3 and t["n"] == 4
    assert t["p"] == pytest.approx(stats.ttest_1samp(r, 0).pvalue)
    w = res.row(estimand_name("spine", "non-responder", "pct"), "Wilcoxon")
    assert w["statistic"] == 0.0 and w["p"] == pytest.approx(0.25) and w["exact"]  # 2 * 1/8
    assert w["estimate"] == pytest.approx(-3.0)  # Hodges-Lehmann pseudomedian of -2, -4, -3
    welch = res.row(difference_name("spine", "pct"), "Welch")
    assert welch["estimate"] == pytest.approx(r.mean() - n.mean())
    assert welch["p"] == pytest.approx(stats.ttest_ind(r, n, equal_var=False).pvalue)
    mw = res.row(difference_name("spine", "pct"), "Wilcoxon")
    assert mw["statistic"] == 12.0  # every responder above every non-responder: W = 4 * 3
    assert mw["p"] == pytest.approx(2 / 35)  # exact: 2 / C(7, 3)
    absrow = res.row(estimand_name("spine", "all", "abs"), "One Sample")
    assert absrow["n"] == 7
    assert absrow["estimate"] == pytest.approx(np.mean([0.01, 0.02, 0.0, 0.03, -0.02, -0.04, -0.03]))


def test_secondary_endpoints():
    res = completers_analysis(_study(), sites=("spine",))
    t = res.row("alkaline phosphatase (U/l), all completers, change to month 12", "One Sample")
    assert t["estimate"] == pytest.approx(-4 * 4 / 7)
    w = res.row("DAS28-CRP, all completers, change to month 12", "Wilcoxon")
    assert w["n"] == 7


def test_unknown_strategy_adds_group_rows():
    res = completers_analysis(_study(), sites=("spine",), strategy="unknown")
    assert "unknown" not in set(res.table["group"])  # U1 is not a completer: no unknown completers
    assert "separate 'unknown' group" in res.strategy


def test_too_few_observations_is_recorded_not_raised():
    d = _study()
    d = d[~d["patient_id"].isin(["N2", "N3"])]
    res = completers_analysis(d, sites=("spine",))
    row = res.table[(res.table["group"] == "non-responder") & (res.table["measure"] == "pct")].iloc[0]
    assert row["test"] == "not computed" and "not enough" in row["note"]


def test_twin_table_is_tidy_and_complete():
    res = completers_analysis(derive(load_twin().frame))
    t = res.table
    assert set(t["analysis"]) == {"within", "between", "secondary"}
    # 2 sites x 3 measures x (3 groups x 2 tests + 2 between tests) + 4 secondary x 2
    assert len(t) == 2 * 3 * 8 + 8
    assert t.loc[t["test"].str.startswith("Wilcoxon"), "ci_low"].notna().all()
    d = res.to_dict()
    assert len(d["rows"]) == len(t)
