"""Benchmark of the Bayesian MMRM and the joint two-site model on the twin (a script, not a test).

Data: the RAJAK twin (``analysis.data.load_twin``), responder status from
``analysis.groups.assign_groups(derive(frame), "last_observed")`` (patients left undefined are
dropped). Fits: nutpie, 4 chains x 1000 draws after 1000 tuning, 2 cores, target_accept 0.9.

Prints

1. per model (MMRM spine and femoral neck, change in g/cm^2; joint model): the wall time of a
   fresh process (interpreter start to fitted result and diagnostics) with a warm compile cache,
   the fit's own timings (compile / sampling / total), min bulk and tail ESS, max R-hat,
   divergences, min E-BFMI and the verdict, for several sampler seeds;
2. with ``--joint-geometry``: the joint model's two covariance parameterisations (``separate``
   = HalfNormal SDs x ``pm.LKJCorr`` factor, ``packed`` = ``pm.LKJCholeskyCov``) on the twin and
   on twin-like cohorts from ``models.simulate`` (46 patients, default design), the figures
   behind ``models.joint.COVARIANCE_BENCHMARK``.

The figures depend on the machine and on its load; run it on an idle machine.

Usage::

    .venv/bin/python tests/benchmarks/bench_models.py                    # part 1, seeds 0-2
    .venv/bin/python tests/benchmarks/bench_models.py --seeds 5
    .venv/bin/python tests/benchmarks/bench_models.py --joint-geometry --cohorts 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"draws": 1000, "tune": 1000, "chains": 4, "cores": 2}
MODELS = ("mmrm_spine", "mmrm_femoral_neck", "joint")


def _twin_frame(study_data=None):
    """Long data with a boolean ``responder`` (twin, or a simulated cohort's data)."""
    from analysis.clinical import derive
    from analysis.data import load_twin
    from analysis.groups import assign_groups

    raw = load_twin().frame if study_data is None else study_data
    frame = assign_groups(derive(raw), "last_observed").frame
    frame = frame[frame["analysis_group"].notna()].copy()
    frame["responder"] = frame["analysis_group"] == "responder"
    return frame


def _build(name: str, frame, covariance: str = "separate"):
    if name.startswith("mmrm_"):
        from models.mmrm import build_mmrm_model

        return build_mmrm_model(frame, name.removeprefix("mmrm_"), "abs")
    from models.joint import build_joint_model

    return build_joint_model(frame, covariance=covariance)


def _summary(fit) -> dict:
    d = fit.diagnostics
    return {
        "compile_s": fit.timings["compile"],
        "sample_s": fit.timings["sample"],
        "fit_total_s": fit.timings["total"],
        "cache_hit": fit.settings["compile_cache_hit"],
        "min_ess_bulk": d.min_ess_bulk,
        "worst_ess_bulk": d.worst_ess_bulk,
        "min_ess_tail": d.min_ess_tail,
        "max_rhat": d.max_rhat,
        "worst_rhat": d.worst_rhat,
        "divergences": d.n_divergences,
        "ebfmi_min": min(d.ebfmi),
        "passed": d.passed,
    }


def _child_fit(name: str, seed: int) -> None:
    """One fit in this (fresh) process; prints a JSON line."""
    import models  # noqa: F401  (compile caches first)
    from analysis.fitting import sample

    fit = sample(_build(name, _twin_frame()), seed=seed, **SETTINGS)
    print("RESULT " + json.dumps(_summary(fit)), flush=True)


def _run_child(name: str, seed: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child-fit", name, "--seed", str(seed)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(lines[-1][7:])


def timing(seeds: int) -> dict[str, list[dict]]:
    print("== 1. twin, fresh process per fit, warm compile cache, 4 x 1000 after 1000 ==")
    print(
        f"{'model':<20}{'seed':>5}{'wall s':>8}{'compile':>8}{'sample':>8}{'fit s':>7}"
        f"{'min bulk':>9}{'min tail':>9}{'max R-hat':>10}{'div':>5}{'BFMI':>6}  verdict / worst"
    )
    out: dict[str, list[dict]] = {}
    for name in MODELS:
        _run_child(name, 0)  # warm the compile cache (and the OS file cache)
        rows = []
        for seed in range(seeds):
            wall, r = _run_child(name, seed)
            r["wall_s"] = wall
            rows.append(r)
            print(
                f"{name:<20}{seed:>5}{wall:>8.2f}{r['compile_s']:>8.2f}{r['sample_s']:>8.2f}"
                f"{r['fit_total_s']:>7.2f}{r['min_ess_bulk']:>9.0f}{r['min_ess_tail']:>9.0f}"
                f"{r['max_rhat']:>10.3f}{r['divergences']:>5}{r['ebfmi_min']:>6.2f}  "
                f"{'PASS' if r['passed'] else 'FAIL'} ({r['worst_ess_bulk']}, {r['worst_rhat']})",
                flush=True,
            )
        out[name] = rows
        print(
            f"{name:<20}{'med':>5}{statistics.median(r['wall_s'] for r in rows):>8.2f}"
            f"{'':>24}{statistics.median(r['min_ess_bulk'] for r in rows):>9.0f}"
        )
    return out


def joint_geometry(cohorts: int, seeds: int) -> dict[str, dict[str, float]]:
    import models  # noqa: F401
    from analysis.fitting import sample
    from models.simulate import Design, simulate

    print(f"\n== 2. joint model covariance parameterisation: twin + {cohorts} simulated cohorts, "
          f"sampler seeds 0-{seeds - 1}, 4 x 1000 after 1000 ==")
    print(f"{'covariance':<12}{'min bulk':>9}{'med bulk':>9}{'min tail':>9}{'max R-hat':>10}"
          f"{'div':>5}{'min BFMI':>9}{'pass':>8}{'sample s':>9}")
    frames = [_twin_frame()] + [
        _twin_frame(simulate(Design(), seed=100 + k).data) for k in range(cohorts)
    ]
    table = {}
    for cov in ("separate", "packed"):
        model = _build("joint", frames[0], cov)
        rows = []
        for frame in frames:
            model.set_data(frame)
            for seed in range(seeds):
                fit = sample(model, seed=seed, **SETTINGS)
                rows.append((fit.diagnostics, fit.timings["sample"]))
        d = [r[0] for r in rows]
        summary = {
            "min_ess_bulk": min(x.min_ess_bulk for x in d),
            "median_min_ess_bulk": statistics.median(x.min_ess_bulk for x in d),
            "min_ess_tail": min(x.min_ess_tail for x in d),
            "max_rhat": max(x.max_rhat for x in d),
            "divergences": sum(x.n_divergences for x in d),
            "min_ebfmi": min(min(x.ebfmi) for x in d),
            "passed": sum(x.passed for x in d),
            "fits": len(d),
            "sample_s": statistics.median(r[1] for r in rows),
        }
        table[cov] = summary
        print(
            f"{cov:<12}{summary['min_ess_bulk']:>9.0f}{summary['median_min_ess_bulk']:>9.0f}"
            f"{summary['min_ess_tail']:>9.0f}{summary['max_rhat']:>10.3f}"
            f"{summary['divergences']:>5}{summary['min_ebfmi']:>9.2f}"
            f"{summary['passed']:>5}/{len(d):<2}{summary['sample_s']:>9.2f}",
            flush=True,
        )
    print("(ESS / R-hat over the reported variables incl. the patient effects u)")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds per model")
    parser.add_argument("--joint-geometry", action="store_true",
                        help="covariance parameterisation comparison of the joint model only")
    parser.add_argument("--cohorts", type=int, default=4, help="simulated cohorts (geometry)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-fit", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_fit:
        _child_fit(args.child_fit, args.seed)
        return
    result = (
        {"joint_geometry": joint_geometry(args.cohorts, args.seeds)}
        if args.joint_geometry
        else {"timing": timing(args.seeds)}
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
