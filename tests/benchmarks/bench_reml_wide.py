"""Benchmark of the wide-array REML fitter (a script, not a test): ``WideReml`` vs ``fit_mmrm``.

Simulated data: n = 200 patients in two arms, m = 5 visits, design with p = 12 columns (intercept,
4 visit effects, arm, 4 arm-by-visit, baseline, arm-by-baseline), unstructured covariance, ~20%
monotone dropout plus ~4% intermittent gaps. Prints the wall time of

1. one full ``WideReml`` fit (cold start; best of ``--repeats`` after one warm-up);
2. ``--refits`` jackknife refits (one patient left out each), warm-started from the full fit;
3. one ``fit_mmrm(..., covariance="us")`` fit of the same data (best of ``--repeats``),

and the largest differences between the two full fits. Targets: full fit < 0.5 s, 200 refits
<= 8 s, on one core (both fitters limit BLAS to one thread themselves).

Usage::

    .venv/bin/python tests/benchmarks/bench_reml_wide.py
    .venv/bin/python tests/benchmarks/bench_reml_wide.py --refits 200 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from analysis.frequentist.mmrm import fit_mmrm
from analysis.sensitivity.ice.reml_wide import WideReml


def simulate(n: int = 200, m: int = 5, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wide design ``x`` (n, m, 12), outcome ``y`` (n, m) and mask (n, m)."""
    rng = np.random.default_rng(seed)
    arm = (np.arange(n) % 2).astype(float)
    base = rng.normal(size=n)
    cols = [np.ones((n, m))]
    cols += [np.broadcast_to(np.arange(m) == j, (n, m)).astype(float) for j in range(1, m)]
    cols += [np.repeat(arm[:, None], m, axis=1)]
    cols += [arm[:, None] * (np.arange(m) == j) for j in range(1, m)]
    cols += [np.repeat(base[:, None], m, axis=1), np.repeat((arm * base)[:, None], m, axis=1)]
    x = np.stack(cols, axis=2)
    sd = np.linspace(0.03, 0.05, m)
    corr = 0.8 ** np.abs(np.subtract.outer(np.arange(m), np.arange(m)))
    sigma = corr * np.outer(sd, sd)
    y = x @ rng.normal(0.0, 0.02, size=x.shape[2]) + 1.0 + rng.multivariate_normal(np.zeros(m), sigma, n)
    last = np.where(rng.random(n) < 0.2, rng.integers(1, m, size=n), m)
    mask = (np.arange(m)[None, :] < last[:, None]) & ~(rng.random((n, m)) < 0.04)
    mask[:, 0] = True
    y[~mask] = np.nan
    return x, y, mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refits", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    x, y, mask = simulate()
    n, m, p = x.shape
    print(f"n={n} m={m} p={p}: {mask.sum()} observations, {len(np.unique(mask, axis=0))} patterns, "
          f"{(~mask[:, -1]).mean():.0%} without the last visit")

    model = WideReml(x, y, mask)
    model.fit()  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        full = WideReml(x, y, mask).fit()
        times.append(time.perf_counter() - t0)
    print(f"WideReml full fit (construct + cold fit): {min(times) * 1e3:8.1f} ms  "
          f"({full.n_iter} iterations, converged={full.converged})")

    t0 = time.perf_counter()
    iters, ok = [], 0
    for i in range(min(args.refits, n)):
        fit = model.fit(rows=np.delete(np.arange(n), i), start=full.sigma)
        iters.append(fit.n_iter)
        ok += fit.converged
    jk = time.perf_counter() - t0
    print(f"WideReml {len(iters)} jackknife refits (warm):  {jk:8.3f} s    "
          f"({jk / len(iters) * 1e3:.2f} ms each, {np.mean(iters):.1f} iterations on average, "
          f"{ok}/{len(iters)} converged)")

    i, j = np.nonzero(mask)
    data = pd.DataFrame({"pid": i, "visit": j, "y": y[i, j], **{f"c{k}": x[i, j, k] for k in range(p)}})
    formula = "y ~ 0 + " + " + ".join(f"c{k}" for k in range(p))
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = fit_mmrm(data, formula, subject="pid", visit="visit", covariance="us")
        times.append(time.perf_counter() - t0)
    print(f"fit_mmrm one fit (us, Satterthwaite):      {min(times) * 1e3:8.1f} ms  "
          f"(x{len(iters)} would take ~{min(times) * len(iters):.1f} s)")

    sig, beta = ref.covariance.to_numpy(), ref.coef.to_numpy()
    print(f"agreement: max|dbeta|/max|beta| = {np.abs(full.beta - beta).max() / np.abs(beta).max():.2e}, "
          f"max|dSigma|/max|Sigma| = {np.abs(full.sigma - sig).max() / np.abs(sig).max():.2e}, "
          f"|dloglik| = {abs(full.loglik - ref.loglik):.2e}")


if __name__ == "__main__":
    main()
