r"""One simulated study, analysed: seeds, data, every analysis at every site; and chunks of studies.

Seeds and reproducibility
-------------------------
Simulation :math:`k` at sample size :math:`n` uses ``SeedSequence(seed).spawn(k + 1)[k]`` and its
children: child 0 picks the design-prior draw, child 1 (then ``spawn(n + 1)[n]``) the data, child 2
(then ``spawn(n + 1)[n]``) the sampler, i.e. ``SeedSequence(seed, spawn_key=(k, 1, n))`` etc.
Every result depends only on ``(seed, k, n)`` and the study, never on the worker, chunking or
order, so local processes, one process and a Dask cluster give identical numbers.

A :class:`Chunk` is a few simulations at one :math:`n`; :func:`run_chunk` is the worker entry
point (picklable, importable on Dask workers) that returns their tidy raw rows
(:mod:`analysis.power.raw`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.power.analyses import completers_rows, lmm_row, mmrm_row, row_error
from analysis.power.bayes_rule import bayes_row
from analysis.power.data_study import data_study_rows
from analysis.power.design import PowerDesign
from analysis.power.frames import power_frame
from analysis.power.gaussian import simulate_gaussian
from analysis.power.prior import DesignPrior
from analysis.power.raw import POWER_FORMAT, tidy_rows
from analysis.power.settings import PowerSettings
from models.simulate import SIMULATOR_VERSION

__all__ = ["Chunk", "StudySpec", "run_chunk", "simulation_seed_sequence", "study_rows"]


def simulation_seed_sequence(seed: int, sim: int, n: int | None = None, stream: int = 1) -> np.random.SeedSequence:
    """``SeedSequence`` of simulation ``sim``: ``(seed, spawn_key=(sim, stream, n))``.

    ``stream`` 0 is the design-prior draw (no ``n``), 1 the data, 2 the Bayesian sampler;
    ``SeedSequence(seed, spawn_key=(k, s, n))`` equals ``SeedSequence(seed).spawn(k + 1)[k]
    .spawn(s + 1)[s].spawn(n + 1)[n]``.
    """
    key = (int(sim), int(stream)) if n is None else (int(sim), int(stream), int(n))
    return np.random.SeedSequence(int(seed), spawn_key=key)


def _int_seed(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, np.uint32)[0])


@dataclass(frozen=True)
class StudySpec:
    """Everything a worker needs (pickled to processes and Dask workers).

    Attributes
    ----------
    design : PowerDesign
        Already resolved (dropout calibrated).
    analyses : tuple of str
    settings : PowerSettings
    prior : DesignPrior or None
    seed : int
        Root seed.
    cores : int
        nutpie threads per Bayesian refit.
    """

    design: PowerDesign
    analyses: tuple[str, ...]
    settings: PowerSettings
    prior: DesignPrior | None
    seed: int
    cores: int = 1

    def key(self) -> str:
        """Hash of everything that determines the raw results (the resume key)."""
        spec = {"format": POWER_FORMAT, "simulator": SIMULATOR_VERSION, "design": self.design.key_dict(),
                "analyses": sorted(self.analyses),
                "settings": self.settings.key_dict() if "bayes" in self.analyses else {},
                "prior": None if self.prior is None else self.prior.key(), "seed": int(self.seed)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def study_rows(spec: StudySpec, n: int, sim: int) -> list[dict[str, Any]]:
    """Simulate study ``sim`` with ``n`` patients and run every analysis at every site.

    Returns
    -------
    list of dict
        One raw row per site and analysis (two for ``completers``; for a design from data one per
        contrast of the design too, :func:`analysis.power.data_study.data_study_rows`), with the
        study's counts (analysed, responders, non-responders, completers, fraction lost) and, for
        assurance, the design-prior draw.
    """
    from models.simulate import simulate

    pdz = spec.design
    design = pdz.design
    prior_info: dict[str, Any] = {}
    values: dict[str, float] = {}
    if spec.prior is not None:
        idx, values = spec.prior.draw(np.random.default_rng(simulation_seed_sequence(spec.seed, sim, None, 0)))
        if pdz.generator != "data":
            design = design.with_updates(**values)
        prior_info = {"prior_draw": idx, **{f"prior.{k}": v for k, v in values.items()}}
    data_seed = _int_seed(simulation_seed_sequence(spec.seed, sim, n, 1))
    sampler_seed = _int_seed(simulation_seed_sequence(spec.seed, sim, n, 2))
    if pdz.generator == "data":  # a design from the user's data: one row per contrast too
        return data_study_rows(spec, n, sim, data_seed, sampler_seed, values, prior_info)
    if pdz.generator == "gaussian":
        data = simulate_gaussian(design, n, data_seed, pdz.dropout)
    else:
        study = simulate(design.with_updates(n_patients=n), data_seed)
        data = study.data
        if pdz.grouping == "true":
            truth = study.patients.set_index("patient_id")["response_type"] == "responder"
            data = data.assign(responder=data["patient_id"].map(truth))
    endpoint = pdz.endpoint_month
    rows: list[dict[str, Any]] = []
    for site in pdz.sites:
        frame = power_frame(data, site, pdz.strategy, pdz.rule)
        by_patient = frame.drop_duplicates("patient_id")
        n_completers = int(((frame["month"].astype(float) == endpoint) & frame["baseline"].notna()).sum())
        end_ids = data.loc[(data["month"].astype(float) == endpoint) & data[f"bmd_{site}"].notna(), "patient_id"]
        base = {"n": n, "sim": sim, "site": site, "n_analysed": int(len(by_patient)),
                "n_responders": int((by_patient["responder"] == 1.0).sum()),
                "n_nonresponders": int((by_patient["responder"] == 0.0).sum()),
                "n_completers": n_completers, "lost_fraction": 1.0 - end_ids.nunique() / n, **prior_info}
        for analysis in spec.analyses:
            if analysis == "completers":
                for name, res in completers_rows(frame, endpoint):
                    rows.append({**base, "analysis": name, **res})
                continue
            t0 = time.perf_counter()
            try:
                if analysis == "lmm":
                    res = lmm_row(frame)
                elif analysis == "mmrm":
                    res = mmrm_row(frame, endpoint)
                else:
                    res = bayes_row(frame, site, spec.settings, sampler_seed, spec.cores, endpoint)
                res = {"ok": True, **res}
            except Exception as err:  # noqa: BLE001 - a failed fit is a result (no success)
                res = {"ok": False, "message": row_error(err)}
            rows.append({**base, "analysis": analysis, **res, "seconds": time.perf_counter() - t0})
    return rows


@dataclass(frozen=True)
class Chunk:
    """Simulations ``sims`` at sample size ``n`` of the study ``spec`` (one task for a worker)."""

    spec: StudySpec
    n: int
    sims: tuple[int, ...]


def run_chunk(chunk: Chunk) -> pd.DataFrame:
    """Worker entry point: every simulation of ``chunk`` (picklable, importable on Dask workers)."""
    rows: list[dict[str, Any]] = []
    for sim in chunk.sims:
        rows.extend(study_rows(chunk.spec, chunk.n, sim))
    return tidy_rows(rows)
