"""Benchmark of models 2-5 (Bayesian MMRM, joint two-site, activity, robust) on the twin (a
script, not a test).

Data: the RAJAK twin (``analysis.study.data.load_twin``) as ``rajak fit`` sees it
(``analysis.bayes.fit.analysis_frame``: ``last_observed`` strategy, undefined patients dropped),
each model built by the registry (``analysis.bayes.fit.MODELS``, default prior set, spine).
Fits: nutpie, 4 chains x 1000 draws after 1000 tuning, 2 cores, target_accept 0.9.

Prints

1. per model (``mmrm``, ``joint``, ``activity``, ``robust``), like ``bench_lmm.py`` does for the
   LMM: the wall time of a fresh process (interpreter start to fitted result and diagnostics)
   with a warm compile cache (median of several sampler seeds) and with an empty one (a
   temporary ``RAJAK_CACHE_DIR``), the fit's own timings (compile / sampling), min bulk and
   tail ESS, max R-hat, divergences, min E-BFMI, the verdict and the process's peak memory
   (``resource.getrusage``);
2. with ``--joint-geometry``: the joint model's two covariance parameterisations (``separate``
   = HalfNormal SDs x the LKJ factor of ``models.lkj``, ``packed`` = ``pm.LKJCholeskyCov``) on the twin and
   on twin-like cohorts from ``models.simulate`` (46 patients, default design), the figures
   behind ``models.joint.COVARIANCE_BENCHMARK``;
3. with ``--robust-geometry``: the robust model's parameterisations (latent patient effects,
   with and without nutpie's low-rank mass matrix, and the default non-centred scale mixture)
   on the twin at both sites, the figures behind ``models.trajectory.ROBUST_BENCHMARK``.

The figures depend on the machine and on its load; run it on an idle machine.

Usage::

    .venv/bin/python tests/benchmarks/bench_models.py                    # part 1, seeds 0-2
    .venv/bin/python tests/benchmarks/bench_models.py --seeds 5 --models robust joint
    .venv/bin/python tests/benchmarks/bench_models.py --no-cold          # warm cache only
    .venv/bin/python tests/benchmarks/bench_models.py --joint-geometry --cohorts 4
    .venv/bin/python tests/benchmarks/bench_models.py --robust-geometry --seeds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"draws": 1000, "tune": 1000, "chains": 4, "cores": 2}
MODELS = ("mmrm", "joint", "activity", "robust")


def _twin_frame(study_data=None):
    """Long data with a boolean ``responder`` (twin, or a simulated cohort's data)."""
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin
    from analysis.study.groups import assign_groups

    raw = load_twin().frame if study_data is None else study_data
    frame = assign_groups(derive(raw), "last_observed").frame
    frame = frame[frame["analysis_group"].notna()].copy()
    frame["responder"] = frame["analysis_group"] == "responder"
    return frame


def _build(name: str, frame, covariance: str = "separate"):
    from models.joint import build_joint_model

    return build_joint_model(frame, covariance=covariance)


def _summary(fit) -> dict:
    d = fit.diagnostics
    return {
        "compile_s": fit.timings["compile"],
        "sample_s": fit.timings["sample"],
        "fit_total_s": fit.timings["total"],
        "cache_hit": fit.settings["compile_cache_hit"],
        "compile_path": fit.settings["compile_path"],
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
    """One fit of a registry model in this (fresh) process; prints a JSON line."""
    import resource

    import models  # noqa: F401  (compile caches first)
    from analysis.bayes.fit import MODELS as REGISTRY
    from analysis.bayes.fit import analysis_frame
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin
    from analysis.engine.sampling import sample
    from models.priors import prior_set

    frame, _ = analysis_frame(derive(load_twin().frame))
    built = REGISTRY[name](frame, "spine", prior_set("weakly_informative", "spine"))
    fit = sample(built, seed=seed, **SETTINGS)
    out = _summary(fit)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out), flush=True)


def _run_child(name: str, seed: int, cache_dir: str | None = None) -> tuple[float, dict]:
    env = dict(os.environ)
    if cache_dir is not None:
        env["RAJAK_CACHE_DIR"] = cache_dir
        env.pop("PYTENSOR_FLAGS", None)  # models.runtime derives it from RAJAK_CACHE_DIR
        env.pop("NUMBA_CACHE_DIR", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child-fit", name, "--seed", str(seed)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(lines[-1][7:])


def _row(label: str, wall: float, r: dict) -> str:
    return (
        f"{label:<16}{wall:>8.2f}{r['compile_s']:>8.2f}{r['sample_s']:>8.2f}"
        f"{r['min_ess_bulk']:>9.0f}{r['min_ess_tail']:>9.0f}{r['max_rhat']:>10.3f}"
        f"{r['divergences']:>5}{r['ebfmi_min']:>6.2f}{r['peak_mb']:>8.0f}  "
        f"{'PASS' if r['passed'] else 'FAIL'} ({r['worst_ess_bulk']}, {r['worst_rhat']})"
    )


def timing(models: tuple[str, ...], seeds: int, cold: bool = True) -> dict[str, dict]:
    print("== 1. twin (spine), fresh process per fit, 4 x 1000 after 1000 ==")
    print(
        f"{'model / run':<16}{'wall s':>8}{'compile':>8}{'sample':>8}{'min bulk':>9}"
        f"{'min tail':>9}{'max R-hat':>10}{'div':>5}{'BFMI':>6}{'peak MB':>8}  verdict (worst)"
    )
    out: dict[str, dict] = {}
    for name in models:
        rows: dict[str, list] = {"warm": []}
        if cold:
            with tempfile.TemporaryDirectory(prefix="rajak-cold-") as tmp:
                wall, r = _run_child(name, 0, tmp)
            r["wall_s"] = wall
            rows["cold"] = [r]
            print(_row(f"{name} cold", wall, r), flush=True)
        _run_child(name, 0)  # warm the project cache (and the OS file cache)
        for seed in range(seeds):
            wall, r = _run_child(name, seed)
            r["wall_s"] = wall
            rows["warm"].append(r)
            print(_row(f"{name} warm s{seed}", wall, r), flush=True)
        warm = rows["warm"]
        summary = {
            "warm_wall_s": statistics.median(r["wall_s"] for r in warm),
            "cold_wall_s": rows["cold"][0]["wall_s"] if cold else None,
            "min_ess_bulk": min(r["min_ess_bulk"] for r in warm),
            "max_rhat": max(r["max_rhat"] for r in warm),
            "divergences": sum(r["divergences"] for r in warm),
            "peak_mb": max(r["peak_mb"] for rs in rows.values() for r in rs),
            "passed": sum(r["passed"] for r in warm),
        }
        out[name] = {"summary": summary, "runs": rows}
        print(
            f"{name}: warm wall {summary['warm_wall_s']:.2f} s (median of {seeds}), cold wall "
            + (f"{summary['cold_wall_s']:.2f} s" if cold else "not run")
            + f"; min bulk ESS {summary['min_ess_bulk']:.0f}, max R-hat {summary['max_rhat']:.3f}, "
            f"{summary['divergences']} divergences, {summary['passed']}/{seeds} passed, "
            f"peak RSS {summary['peak_mb']:.0f} MB",
            flush=True,
        )
    return out


def joint_geometry(cohorts: int, seeds: int) -> dict[str, dict[str, float]]:
    import models  # noqa: F401
    from analysis.engine.sampling import sample
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


ROBUST_CONFIGS = (
    ("centred_intercept", False),
    ("centred_intercept", True),
    ("marginal", False),
)


def robust_geometry(seeds: int) -> dict[str, dict[str, float]]:
    import models  # noqa: F401
    from analysis.bayes.fit import analysis_frame
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin
    from analysis.engine.sampling import sample
    from models.trajectory import build_trajectory_model

    print(f"\n== 3. robust (Student-t) model on the twin, spine and femoral neck, sampler seeds "
          f"0-{seeds - 1}, 4 x 1000 after 1000 ==")
    print(f"{'parameterisation':<30}{'min bulk':>9}{'max bulk':>9}{'max R-hat':>10}{'div':>5}"
          f"{'min BFMI':>9}{'pass':>8}{'sample s':>9}")
    frame, _ = analysis_frame(derive(load_twin().frame))
    table = {}
    for param, low_rank in ROBUST_CONFIGS:
        rows = []
        for site in ("spine", "femoral_neck"):
            model = build_trajectory_model(frame, site, likelihood="student_t",
                                           parameterisation=param)
            for seed in range(seeds):
                fit = sample(model, seed=seed, low_rank=low_rank, **SETTINGS)
                rows.append((fit.diagnostics, fit.timings["sample"]))
        d = [r[0] for r in rows]
        name = param + (" + low_rank" if low_rank else "")
        summary = {
            "min_ess_bulk": min(x.min_ess_bulk for x in d),
            "max_min_ess_bulk": max(x.min_ess_bulk for x in d),
            "max_rhat": max(x.max_rhat for x in d),
            "divergences": sum(x.n_divergences for x in d),
            "min_ebfmi": min(min(x.ebfmi) for x in d),
            "passed": sum(x.passed for x in d),
            "fits": len(d),
            "sample_s": statistics.median(r[1] for r in rows),
        }
        table[name] = summary
        print(
            f"{name:<30}{summary['min_ess_bulk']:>9.0f}{summary['max_min_ess_bulk']:>9.0f}"
            f"{summary['max_rhat']:>10.3f}{summary['divergences']:>5}{summary['min_ebfmi']:>9.2f}"
            f"{summary['passed']:>5}/{len(d):<2}{summary['sample_s']:>9.2f}",
            flush=True,
        )
    print("(ESS / R-hat over the reported variables incl. the patient effects u)")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds per model")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="models of part 1")
    parser.add_argument("--no-cold", action="store_true", help="skip the empty-cache runs")
    parser.add_argument("--joint-geometry", action="store_true",
                        help="covariance parameterisation comparison of the joint model only")
    parser.add_argument("--robust-geometry", action="store_true",
                        help="parameterisation comparison of the robust model only")
    parser.add_argument("--cohorts", type=int, default=4, help="simulated cohorts (geometry)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-fit", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_fit:
        _child_fit(args.child_fit, args.seed)
        return
    if args.joint_geometry:
        result = {"joint_geometry": joint_geometry(args.cohorts, args.seeds)}
    elif args.robust_geometry:
        result = {"robust_geometry": robust_geometry(args.seeds)}
    else:
        result = {"timing": timing(tuple(args.models), args.seeds, cold=not args.no_cold)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
