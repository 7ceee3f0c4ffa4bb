r"""A power study: :func:`run_power`, the simulate-analyse loop over the sample-size grid.

A power study simulates many copies of the next study at each sample size :math:`n` of a grid
(:class:`~analysis.power.design.PowerDesign`), analyses every copy as the real study would be
analysed (:mod:`analysis.power.analyses`, :mod:`analysis.power.bayes_rule`), and reports the
fraction of copies in which an analysis "succeeds" (its decision rule fires,
:mod:`analysis.power.summary`). With fixed design parameters that fraction is the **power**; with
parameters drawn from a design prior for every simulated study (:mod:`analysis.power.prior`) it is
the **assurance**.

The simulations are cut into chunks (:class:`~analysis.power.simulated_study.Chunk`), run in this
process, on local processes or on a Dask cluster (:mod:`analysis.power.execution`), and with
``out=`` kept on disk so that an interrupted study resumes where it stopped. Seeds depend only on
``(seed, k, n)`` (:mod:`analysis.power.simulated_study`), so every way of running gives the same
numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pandas as pd

from analysis.power.analyses import ANALYSES
from analysis.power.design import SITES, PowerDesign
from analysis.power.execution import ProgressBar, ResultStore, check_scheduler, execute
from analysis.power.prior import DesignPrior
from analysis.power.raw import tidy_rows
from analysis.power.results import PowerResult
from analysis.power.settings import PowerSettings
from analysis.power.simulated_study import Chunk, StudySpec
from models.simulate import SIMULATOR_VERSION

__all__ = ["run_power"]


def run_power(design: PowerDesign, sims: int, seed: int = 0, *, analyses: Sequence[str] = ("lmm",),
              settings: PowerSettings | None = None, prior: DesignPrior | None = None,
              out: str | os.PathLike | None = None, scheduler: str | None = None, workers: int | None = None,
              chunk_size: int | None = None, progress: bool | None = None,
              on_chunk: Callable[[pd.DataFrame], None] | None = None,
              log: Callable[[str], None] | None = None, target: float = 0.8) -> PowerResult:
    """Simulate ``sims`` studies at every sample size of ``design`` and analyse each one.

    Parameters
    ----------
    design : PowerDesign
    sims : int
        Simulated studies per sample size.
    seed : int
        Root seed (one ``SeedSequence`` child per simulation, :mod:`analysis.power.simulated_study`).
    analyses : sequence of str
        Any of :data:`~analysis.power.analyses.ANALYSES`.
    settings : PowerSettings, optional
    prior : DesignPrior, optional
        Draw the design parameters per simulation (assurance) instead of fixing them (power).
    out : path, optional
        Directory for resumable results and the outputs (:meth:`PowerResult.save`).
    scheduler : str, optional
        ``"tcp://HOST:PORT"`` of a Dask distributed scheduler; otherwise local processes.
    workers : int, optional
        Local processes (default: CPU count; 1 runs in this process).
    chunk_size : int, optional
        Simulations per task (default 10 with ``bayes``, else 25).
    progress : bool, optional
        Progress bar on stderr (default: when stderr is a terminal).
    on_chunk : callable, optional
        Called with each finished chunk's rows (after they are saved).
    log : callable, optional
        Receives one-line messages (e.g. how many simulations were already done).
    target : float
        Target power for the smallest-n table written to ``out``.

    Returns
    -------
    PowerResult

    Raises
    ------
    ValueError
        On invalid arguments, or an ``out`` directory holding another study.
    """
    import sys

    settings = settings or PowerSettings()
    analyses = tuple(dict.fromkeys(analyses))
    if not analyses or any(a not in ANALYSES for a in analyses):
        raise ValueError(f"analyses must be a non-empty subset of {ANALYSES}, got {list(analyses)}")
    if int(sims) < 1:
        raise ValueError(f"sims must be at least 1, got {sims}")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if scheduler is not None:
        check_scheduler(scheduler)
    if design.generator == "data" and prior is not None:
        design.data_model.with_updates(**prior.draws.iloc[0].to_dict())  # its columns must be the model's
    if prior is not None:
        for col in prior.draws.columns:
            site = col.split(".", 1)[0]
            if site in SITES and site not in design.sites and log:
                log(f"note: the design prior sets {col}, a site that is not analysed")
    sims = int(sims)
    design = design.resolved()
    cpu = os.cpu_count() or 1
    workers = int(workers) if workers is not None else cpu
    if settings.cores is not None:
        cores = settings.cores
    elif scheduler is not None:
        cores = 1
    else:
        cores = max(1, cpu // workers)
    spec = StudySpec(design, analyses, settings, prior, int(seed), cores)
    description = {"design": design.to_dict(), "analyses": list(analyses), "settings": settings.to_dict(),
                   "prior": None if prior is None else {"source": prior.source, "key": prior.key(),
                                                        "n_draws": len(prior.draws)},
                   "seed": int(seed), "simulator_version": SIMULATOR_VERSION}
    store = ResultStore(out, spec, description) if out is not None else None
    existing = store.load() if store is not None else None
    done: set[tuple[int, int]] = set()
    if existing is not None:
        done = set(zip(existing["n"].astype(int), existing["sim"].astype(int)))
    size = int(chunk_size) if chunk_size else (10 if "bayes" in analyses else 25)
    chunks: list[Chunk] = []
    for n in design.n:
        todo = [k for k in range(sims) if (n, k) not in done]
        chunks += [Chunk(spec, n, tuple(todo[i:i + size])) for i in range(0, len(todo), size)]
    total = sims * len(design.n)
    n_todo = sum(len(c.sims) for c in chunks)
    if log and existing is not None:
        log(f"{total - n_todo} of {total} simulations already done in {store.dir}; running {n_todo}")
    if progress is None:
        progress = sys.stderr.isatty()
    frames: list[pd.DataFrame] = []
    if chunks:
        runner = execute(chunks, scheduler, workers)
        kind = "assurance" if prior is not None else "power"
        with ProgressBar(total, total - n_todo, bool(progress), f"{kind} ({', '.join(analyses)})") as bar:
            try:
                for chunk, df in runner:
                    if store is not None:
                        store.write(df, chunk)
                    frames.append(df)
                    bar.advance(len(chunk.sims))
                    if on_chunk is not None:
                        on_chunk(df)
            finally:
                close = getattr(runner, "close", None)
                if close is not None:
                    close()
    parts = ([existing] if existing is not None else []) + frames
    raw = pd.concat(parts, ignore_index=True) if parts else tidy_rows([])
    raw = raw[raw["n"].isin(design.n) & (raw["sim"] < sims)]
    order = ["n", "sim", "site"] + (["contrast"] if "contrast" in raw.columns else []) + ["analysis"]
    raw = raw.sort_values(order, kind="stable").reset_index(drop=True)
    result = PowerResult(raw=raw, design=design, analyses=analyses, settings=settings, prior=prior,
                         seed=int(seed), sims=sims)
    if out is not None:
        result.save(out, target)
    return result
