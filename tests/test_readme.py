"""The README's Python blocks run, in order, as one script (so the scripting guide never goes stale)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md block {i + 1}", "exec"), namespace)
    assert (tmp_path / "figures" / "contrasts.png").is_file()
    assert namespace["bf"].fit.diagnostics.n_draws == 500


def test_readme_toml_plan_is_a_valid_configuration():
    import tomllib

    from analysis.run.config import RunConfig

    plans = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    assert len(plans) >= 2
    configs = [RunConfig(**tomllib.loads(plan)) for plan in plans]  # every plan in the README validates
    main = next(c for c, p in zip(configs, plans) if "das28_fall" in p)
    assert main.sites == ("spine",) and main.responder.kind == "das28_fall"
    est = next(c for c in configs if c.estimand is not None)  # the estimand plan
    assert est.estimand.strategy == {"discontinued": "JR", "bone_therapy": "hypothetical:MAR",
                                     "death": "while_on_treatment"}
    assert est.reference_based.imputation_model == "rbmi"
