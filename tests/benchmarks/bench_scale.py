"""Benchmark of rajak on registry-sized studies: time and peak memory against the number of patients
(a script, not a test; issue #18).

For each size (default 500, 5,000 and 50,000 patients) a two-arm trial with four visits (months
0, 6, 12, 24) and two sites (spine, femoral neck) is simulated with the project's own simulator
(:func:`models.simulate_trial.simulate_trial`, seed 1) and written as CSV; then each step runs as a
fresh ``rajak`` process (the console script next to this interpreter), so the figures are what a
user sees (interpreter start, imports, compilation and output included):

- ``validate``: ``rajak validate FILE --group arm --visit visit --time day --time-unit days``;
- ``bayes-lmm``: ``rajak fit --data FILE <design> --site spine --draws 500 --chains 2 --tune 500
  --json`` (the marginal-likelihood LMM: fit and summary); its JSON timings split the fit into
  compilation, sampling and post-processing (the patients' effects, log-likelihoods and the
  diagnostics: ``post / sample`` is the share the issue bounds by 25%);
- ``freq-reml``: ``rajak frequentist --data FILE <design> --imputations 0 --json`` (the frequentist
  analysis as it is; ``--skip-frequentist`` leaves it out);
- ``run`` (with ``--run``): ``rajak run --data FILE <design> --draws 500 --chains 2 --tune 500`` with the
  plan's default analyses; its peak is the resident memory of the whole process tree (the figure
  writer's and the power study's workers included), sampled four times a second, and the detail
  column gives the largest single process.

Each row prints wall time and peak resident memory of the process (``os.wait4``'s ``ru_maxrss``),
and for the second and later sizes the growth of both relative to the previous size next to the
growth of the number of patients (linear growth: time ratio ~ patient ratio)::

    .venv/bin/python tests/benchmarks/bench_scale.py
    .venv/bin/python tests/benchmarks/bench_scale.py --sizes 500,5000 --skip-frequentist
    .venv/bin/python tests/benchmarks/bench_scale.py --sizes 50000,200000 --only validate
    RAJAK_PER_PATIENT=always .venv/bin/python tests/benchmarks/bench_scale.py --sizes 5000

(``RAJAK_PER_PATIENT=always`` computes every fit's per-patient quantities, as before issue #18.)

Measured (2 cores shared with other jobs, so the wall times are upper bounds; seed 1)::

    step       patients    rows   wall s  peak GB  detail
    validate        500    1823      2.8     0.14
    bayes-lmm       500    1823     12.4     0.38  compile 2.5 s, sample 1.1 s, post 0.04 s (3%)
    freq-reml       500    1823      7.1     0.21
    validate       5000   18037      2.6     0.16
    bayes-lmm      5000   18037     17.0     0.40  compile 1.9 s, sample 8.2 s, post 0.06 s (1%)
    freq-reml      5000   18037     10.4     0.29
    validate      50000  180114      6.1     0.28
    bayes-lmm     50000  180114     78.5     0.51  compile 0.9 s, sample 70.6 s, post 0.07 s (0%)
    freq-reml     50000  180114     34.6     0.96

Before (same machine, 5,000 patients): ``rajak fit`` 23.7 s and 2.35 GB, of which sampling 1.7 s
and post-processing ~17 s (the dense one-hot effects and R-hat/ESS over 10,000 patient effects);
``rajak validate`` 1.8 s; at 50,000 patients ``rajak validate`` 16.4 s and ``rajak fit`` out of
memory (a 48.6 GiB one-hot matrix).

Reading delimited text without a Python list per record and without ``io.StringIO``'s copy of the
text (:mod:`analysis.study.readers`): ``rajak validate`` at 50,000 patients (7.7 MB of CSV) 3.9-5.4 s
and 0.26 GB (before 6.1-10.2 s and 0.27-0.28 GB; the reading itself 124 -> 21 MB of Python
allocations); at 5,000 patients 1.6-2.7 s and 0.16 GB; 500 patients (interpreter and imports) 0.14 GB.
What is left grows with the file (~14 MB per MB of CSV): the validated frame is built and copied
whole (design inference, three canonical forms, the per-patient structure checks), so the loader does
not stream. The canonical forms no longer copy the file's other columns (copy-on-write) and a time in
days is converted without building the whole canonical frame: ``rajak validate`` 0.27 -> 0.26 GB at
50,000 patients, 0.54 -> 0.52 GB at 200,000 (what is left is pandas' and Arrow's transient string
work on the whole frame: groupbys on the patient ids, the group labels, the schema checks).

``rajak run`` at 50,000 patients (2 chains x 500 draws, default analyses; process tree sampled
every 0.25 s; 2 cores shared with other jobs). Before: 6.3 GB (main process 3.3 GB, a figure worker
2.9 GB) by the end of the Bayesian stage, from the observed-trajectories figures (one matplotlib
line per patient: 100,000 artists built, pickled and drawn as PNG and SVG) and the posterior
predictive check (every draw x observation replicated); then 4.6 GB in the main process in the
delta sensitivity analysis (500 imputations x 50,000 patients x 4 visits adjusted whole, with
temporaries), 4.1 GB in delta_bayes (every draw's patient effects and their temporaries), and the
reference-based analysis' jackknife built its 50,000 leave-one-out index arrays at once (20 GB: the
run was killed by the system, exit -9). After: trajectories draw 1,000 patients' lines per panel, the
PPC replicates 60 draws, the delta adjusts and keeps the endpoint only, delta_bayes works by chunks of
draws, the jackknife makes its samples one at a time, the priors analysis draws its prior predictive
for a seeded 2,000-patient sample above that size, and the default jackknife becomes the conditional-mean
bootstrap (B = 200) above 5,000 patients (the jackknife needs n + 1 REML fits).

With every default analysis (completers_vs_all, delta, delta_bayes, tipping, reference_based, priors;
2026-12-07, ``--sizes 50000 --run --skip-frequentist``, 2 cores partly shared)::

    validate      50000  180114      2.2     0.25
    bayes-lmm     50000  180114     21.8     0.51  compile 0.7 s, sample 16.9 s, post 0.02 s (0%)
    run           50000  180114    589.8     4.58  largest process 3.81 GB

(load 1.6 s, frequentist 22 s, figures 1.9 s, Bayesian 46 s, sensitivity 491 s, power 21 s; exit 0).
Before these changes the same run was killed by the system at 21.9 GB, and without
``reference_based`` it peaked at 9.9 GB in the priors analysis.

Streamed validation (2026-12-07, ``--sizes 500,5000,50000,200000 --only validate``; 2 cores shared with
the calibration study). Delimited text is parsed and checked a chunk of 50,000 rows at a time
(:mod:`analysis.study.row_checks`), the checks that need a patient's rows group patients by integer codes
rather than their id text, and the file's bytes and text are let go once its rows are checked::

    validate        500    1823      1.2     0.14
    validate       5000   18037      1.2     0.16
    validate      50000  180114      1.9     0.23
    validate     200000  719664      5.4     0.46

Before, measured the same way (the previous commit, same files): 3.0-3.6 s and 0.26-0.27 GB at 50,000
patients, 10.6 s and 0.53 GB at 200,000. The study is now simulated in a child process: a process
forked from a large parent starts with the parent's resident size in ``ru_maxrss`` (``exec`` does not
reset it), so with the 200,000-patient study held in this process the same validation measured 0.69 GB;
the earlier 50,000-patient figures above are little affected (0.25-0.28 GB there, 0.26-0.27 GB in a
process started from a small one). What is left at 200,000
patients (0.34 GB above the interpreter and imports, for 33 MB of CSV and a 76 MB validated frame) is
the whole-frame checks' transient work and the allocator keeping freed memory (Arrow's default
mimalloc pool: 0.43-0.50 GB; ``ARROW_DEFAULT_MEMORY_POOL=system`` 0.39 GB).

``rajak run`` at 50,000 patients with every default analysis after the change (``--sizes 50000 --run
--only validate,run``, quiet machine): validate 1.6 s and 0.23 GB; run exit 0 in 603.6 s, 4.63 GB for
the process tree (largest process 3.85 GB), as before (589.8 s, 4.58 GB): the run's peak is the
sensitivity stage's, not the loading's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DESIGN = ["--group", "arm", "--visit", "visit", "--time", "day", "--time-unit", "days"]
FIT = ["--site", "spine", "--draws", "500", "--chains", "2", "--tune", "500", "--json"]
RUN = ["--draws", "500", "--chains", "2", "--tune", "500", "--force"]  # the default analyses otherwise


def _rajak() -> str:
    exe = Path(sys.executable).parent / "rajak"
    if not exe.is_file():
        raise SystemExit(f"no rajak console script next to {sys.executable}; install the package first")
    return str(exe)


def simulate_csv(n: int, path: Path, seed: int = 1) -> int:
    """Write the simulated trial of ``n`` patients (two sites, four visits); return its rows."""
    from models.simulate_trial import TrialTruth, simulate_trial

    truth = TrialTruth(slopes={"spine": {"placebo": -0.012, "active": 0.010},
                               "femoral_neck": {"placebo": -0.007, "active": 0.004}},
                       baseline={"spine": 0.95, "femoral_neck": 0.75})
    frame = simulate_trial(n, truth, seed=seed)
    frame.to_csv(path, index=False)
    return len(frame)


def simulate_csv_in_child(n: int, path: Path, seed: int = 1) -> int:
    """:func:`simulate_csv` in a child process, so that this process stays small: a child forked from a
    large parent starts with the parent's resident size in its ``ru_maxrss``, which ``exec`` does not
    reset, so the simulated study held here would be counted in every step's peak."""
    out = subprocess.run([sys.executable, __file__, "--write-csv", str(n), str(path), str(seed)],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def run_measured(args: list[str], cwd: Path) -> tuple[float, float, int, str, str]:
    """Run ``rajak ARGS``; return (wall seconds, peak RSS in GB, exit status, stdout, stderr)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([_rajak(), *args], cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss / 2**20, proc.returncode, out.read().decode(), err.read().decode()


def _tree_rss_gb(pid: int) -> tuple[float, float]:
    """(total, largest single) resident memory in GB of ``pid`` and its descendants (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    sizes, todo = [], [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                sizes += [int(ln.split()[1]) / 2**20 for ln in f if ln.startswith("VmRSS")]
        except OSError:
            pass
    return sum(sizes), max(sizes, default=0.0)


def run_tree_measured(args: list[str], cwd: Path) -> tuple[float, float, float, int, str]:
    """Run ``rajak ARGS`` sampling the resident memory of its process tree (the figure writer's and
    the power study's workers included) four times a second; return (wall seconds, peak total GB,
    peak of the largest process GB, exit status, stderr)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([_rajak(), *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        total = single = 0.0
        while proc.poll() is None:
            tot, one = _tree_rss_gb(proc.pid)
            total, single = max(total, tot), max(single, one)
            time.sleep(0.25)
        wall = time.perf_counter() - t0
        err.seek(0)
        return wall, total, single, proc.returncode, err.read().decode()


def main() -> None:
    if sys.argv[1:2] == ["--write-csv"]:  # the child of simulate_csv_in_child
        print(simulate_csv(int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,5000,50000", help="patients per study, comma-separated")
    parser.add_argument("--skip-frequentist", action="store_true", help="leave out the frequentist row")
    parser.add_argument("--keep", type=Path, default=None, help="directory for the CSV files and outputs")
    parser.add_argument("--run", action="store_true",
                        help="add a row for the whole `rajak run` (default analyses; 2 chains x 500 draws; "
                             "peak of its process tree)")
    parser.add_argument("--only", default=None, help="only these steps, comma-separated (e.g. validate)")
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    only = None if opts.only is None else set(opts.only.split(","))
    work = opts.keep or Path(tempfile.mkdtemp(prefix="rajak-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    print(f"{'step':10s} {'patients':>8s} {'rows':>7s} {'wall s':>8s} {'peak GB':>8s}  detail", flush=True)
    for n in sizes:
        csv = work / f"trial_{n}.csv"
        n_rows = simulate_csv_in_child(n, csv)
        steps = [("validate", ["validate", str(csv), *DESIGN]),
                 ("bayes-lmm", ["fit", "--data", str(csv), *DESIGN, *FIT])]
        if not opts.skip_frequentist:
            steps.append(("freq-reml", ["frequentist", "--data", str(csv), *DESIGN, "--imputations", "0", "--json"]))
        if opts.run:
            steps.append(("run", ["run", "--data", str(csv), *DESIGN, *RUN, "--output-dir", str(work / "runs"),
                                  "--run-id", f"run_{n}"]))
        for name, args in steps:
            if only is not None and name not in only:
                continue
            if name == "run":
                wall, peak, single, code, err = run_tree_measured(args, work)
                detail = (f"largest process {single:.2f} GB" if code == 0 else
                          f"EXIT {code}: {err.strip().splitlines()[-1] if err.strip() else ''}")
                rows.append({"step": name, "n": n, "wall": wall, "peak": peak})
                print(f"{name:10s} {n:8d} {n_rows:7d} {wall:8.1f} {peak:8.2f}  {detail}", flush=True)
                continue
            wall, peak, code, out, err = run_measured(args, work)
            detail = "" if code == 0 else f"EXIT {code}: {err.strip().splitlines()[-1] if err.strip() else ''}"
            if code == 0 and name == "bayes-lmm":
                t = json.loads(out)["timings"]
                diag = json.loads(out)["diagnostics"]
                post = t.get("postprocess", float("nan"))
                detail = (f"compile {t['compile']:.1f} s, sample {t['sample']:.1f} s, post {post:.2f} s "
                          f"(post/sample {post / t['sample']:.0%}); max R-hat {diag['max_rhat']:.3f}")
            rows.append({"step": name, "n": n, "wall": wall, "peak": peak})
            print(f"{name:10s} {n:8d} {n_rows:7d} {wall:8.1f} {peak:8.2f}  {detail}", flush=True)
    print("\ngrowth per step (ratio to the previous size: patients, time, memory)")
    for name in dict.fromkeys(r["step"] for r in rows):
        mine = [r for r in rows if r["step"] == name]
        for a, b in zip(mine, mine[1:]):
            print(f"{name:10s} {a['n']:>6d} -> {b['n']:<6d} patients x{b['n'] / a['n']:.0f}  "
                  f"time x{b['wall'] / a['wall']:.1f}  memory x{b['peak'] / a['peak']:.1f}")
    print(f"\nfiles in {work}")


if __name__ == "__main__":
    main()
