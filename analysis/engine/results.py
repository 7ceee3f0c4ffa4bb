"""A fitted posterior with its settings, timings and diagnostics, and its netCDF file format.

:class:`FitResult` is what :func:`analysis.engine.sampling.sample` returns; :meth:`FitResult.save`
writes it atomically as netCDF-4 (a ``DataTree`` with the settings, diagnostics and timings as JSON
root attributes) and :func:`load_fit` reads it back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from analysis.engine.diagnostics import Diagnostics

__all__ = ["FIT_FORMAT", "FitResult", "jsonable", "load_fit"]

#: Version of the on-disk fit format (a root attribute of every saved fit).
FIT_FORMAT = 1


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    return str(obj)


@dataclass
class FitResult:
    """A posterior with the settings that produced it and its diagnostics.

    Attributes
    ----------
    posterior : xarray.DataTree
        ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data`` groups.
    settings : dict
        Sampler, draws, tune, chains, cores, seed, target_accept, low_rank, library versions,
        compile path and the model's description.
    wall_time : float
        Seconds spent in :func:`sample` (compile + sampling + post-processing + diagnostics).
    diagnostics : Diagnostics
    timings : dict of str to float
        ``compile``, ``sample``, ``postprocess`` (the model's post-processing and the diagnostics)
        and ``total`` seconds.
    """

    posterior: xr.DataTree
    settings: dict[str, Any]
    wall_time: float
    diagnostics: Diagnostics
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.diagnostics.passed

    def summary(self, var_names: list[str] | None = None, ci_prob: float = 0.95) -> Any:
        """``arviz_stats.summary`` (equal-tailed ``ci_prob`` interval) of the diagnostic variables."""
        import arviz_stats as az

        names = var_names or list(self.diagnostics.var_names)
        return az.summary(self.posterior, var_names=names, ci_prob=ci_prob, ci_kind="eti")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fit atomically as netCDF-4 (h5netcdf); settings and diagnostics go to root attrs.

        Object-typed sampler statistics (nutpie's ``divergence_message``) are stored as strings.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        dt = self.posterior.copy()
        for group in list(dt.children):
            ds = dt[group].to_dataset()
            obj = [n for n, v in ds.data_vars.items() if v.dtype == object]
            if obj:
                as_str = np.vectorize(lambda x: "" if x is None else str(x), otypes=[str])
                ds = ds.assign({n: ds[n].copy(data=as_str(ds[n].values)) for n in obj})
                dt[group] = ds
        dt.attrs = {
            **dt.attrs,
            "rajak_fit_format": FIT_FORMAT,
            "rajak_settings": json.dumps(jsonable(self.settings)),
            "rajak_diagnostics": json.dumps(jsonable(self.diagnostics.to_dict())),
            "rajak_timings": json.dumps(jsonable(self.timings)),
            "rajak_wall_time": float(self.wall_time),
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            dt.to_netcdf(tmp, engine="h5netcdf")  # written beside the target, then renamed: atomic
            os.replace(tmp, path)
        except ImportError as err:  # h5netcdf >= 1.8 needs h5py installed separately
            raise ImportError(f"saving fits needs h5py next to h5netcdf: {err}") from err
        finally:
            tmp.unlink(missing_ok=True)
        return path


def load_fit(path: str | os.PathLike) -> FitResult:
    """Read a fit written by :meth:`FitResult.save`."""
    dt = xr.open_datatree(Path(path), engine="h5netcdf")
    try:
        dt = dt.load()
    finally:
        dt.close()
    attrs = dict(dt.attrs)
    if "rajak_settings" not in attrs:
        raise ValueError(f"{path} is not a rajak fit (no rajak_settings attribute)")
    for key in [k for k in attrs if k.startswith("rajak_")]:
        dt.attrs.pop(key, None)
    return FitResult(
        posterior=dt,
        settings=json.loads(attrs["rajak_settings"]),
        wall_time=float(attrs["rajak_wall_time"]),
        diagnostics=Diagnostics.from_dict(json.loads(attrs["rajak_diagnostics"])),
        timings=json.loads(attrs.get("rajak_timings", "{}")),
    )
