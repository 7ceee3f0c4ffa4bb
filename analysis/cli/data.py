"""``rajak validate`` (check a file against the data contract) and ``rajak twin`` (the synthetic twin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from analysis.cli.common import EXIT_BAD_INPUT, err, info, parse_map, parse_params
from analysis.run.config import ConfigError
from analysis.study.data import DataValidationError, load_dataset
from analysis.study.design import (
    DesignError,
    ResolvedDesign,
    parse_covariates,
    parse_sites,
)

__all__ = ["design_text", "twin", "validate"]


def validate(
    file: Annotated[Path, typer.Argument(help="Data file, one row per patient-visit: CSV/TSV/TXT (delimiter and "
                                              "decimal mark detected), XLSX, Parquet, SAS (.xpt, .sas7bdat), "
                                              "SPSS (.sav), Stata (.dta); or a CDISC ADaM BDS file (pivoted).")],
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN (repeatable).")] = None,
    sheet: Annotated[Optional[str], typer.Option(
        help="Excel sheet: name, or 0-based index (default: the first).")] = None,
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", help="ADaM: PARAMCD=site, e.g. BMDL24=spine, CODE=tscore_spine or CODE=ignore (repeatable).")] = None,
    delimiter: Annotated[Optional[str], typer.Option(
        help="Text files: the delimiter (, ; tab |) instead of detecting it.")] = None,
    decimal: Annotated[Optional[str], typer.Option(
        help="Text files: the decimal mark (. or ,) instead of detecting it.")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of a CSV file.")] = "utf-8",
    endpoint_month: Annotated[float, typer.Option(help="Month that defines a completer.")] = 12,
    all_problems: Annotated[bool, typer.Option("--all", help="List every problem, one per line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the validation report as JSON.")] = False,
    id_: Annotated[Optional[str], typer.Option("--id", help="Design: the subject-identifier column.")] = None,
    time: Annotated[Optional[str], typer.Option(help="Design: the time column.")] = None,
    time_unit: Annotated[Optional[str], typer.Option(
        "--time-unit", help="Design: unit of the time column: months, days, years or date.")] = None,
    visit: Annotated[Optional[str], typer.Option(
        help="Design: the nominal-visit column (default: windows of the times, each at its nearest whole month).")] = None,
    site: Annotated[Optional[list[str]], typer.Option(
        "--site", help="Design: a BMD site, NAME=COLUMN (e.g. total_body=bmd), repeatable.")] = None,
    group: Annotated[Optional[str], typer.Option(
        help="Design: the group column (an arm), 'none' (single arm) or 'responder' (derived).")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Design: the reference level of the group.")] = None,
    endpoint: Annotated[Optional[float], typer.Option(
        help="Design: the endpoint visit in months (default: the last visit; RAJAK-style files: --endpoint-month).")] = None,
    covariates: Annotated[Optional[str], typer.Option(
        help="Design: baseline covariates, a,b,... or none (default: those of age, sex, bmi present).")] = None,
) -> None:
    """Check a data file against the data contract of its study design and summarise it."""
    try:
        if time_unit is not None and time_unit not in _TIME_UNITS:
            raise DesignError(f"--time-unit {time_unit!r}: use one of {', '.join(_TIME_UNITS)}")
        ds = load_dataset(file, parse_map(map_), encoding=encoding, sheet=sheet,
                          param_map=parse_params(param), delimiter=delimiter, decimal=decimal,
                          endpoint_month=endpoint_month, id=id_, time=time, time_unit=time_unit, visit=visit,
                          sites=parse_sites(site) if site else None, group=group, reference=reference,
                          endpoint=endpoint, covariates=parse_covariates(covariates))
    except DesignError as exc:
        err(f"{file}: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    except DataValidationError as exc:
        if all_problems:
            for p in exc.problems:
                err(p.message)
        else:
            err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)
    except ConfigError as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)
    if as_json:
        out = ds.report.to_dict()
        if ds.design is not None:
            out["design"] = ds.design.to_dict()
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        if ds.design is not None:
            typer.echo(design_text(ds.design))
        typer.echo(ds.report.to_text())


_TIME_UNITS = ("months", "days", "years", "date")


def design_text(resolved: ResolvedDesign) -> str:
    """The design lines ``rajak validate`` prints before the summary: the design in the study's own
    words, then what it resolved to on the data."""
    levels = ", ".join(resolved.group_levels) or "none (single arm)"
    ref = f"   reference: {resolved.reference}" if resolved.reference else ""
    return "\n".join([
        "design: " + resolved.design.describe(),
        "  sites: " + ", ".join(f"{s} ({resolved.design.sites.get(s, 'bmd_' + s)})" for s in resolved.sites),
        "  visits (months): " + ", ".join(f"{v:g}" for v in resolved.visits)
        + f"   endpoint: month {resolved.endpoint:g}",
        f"  groups: {levels}{ref}",
        "  covariates: " + (", ".join(resolved.covariates) or "none"),
    ])


def twin(
    seed: Annotated[Optional[int], typer.Option(help="Seed (default: the shipped twin's seed).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the twin CSV here (provenance JSON beside it).")] = None,
    report: Annotated[bool, typer.Option("--report", help="Print the calibration table (published | twin).")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Run the calibration search, then write to --out.")] = False,
    seeds: Annotated[int, typer.Option(help="Seeds searched per grid point by --calibrate.")] = 1000,
) -> None:
    """Regenerate the synthetic RAJAK twin, or show how it matches the published figures."""
    from analysis.rajak import twin as tw
    from models.simulate import Design

    if not (report or out or calibrate):
        err("say what to do: --report, --out FILE (regenerate) or --calibrate --out FILE")
        raise typer.Exit(EXIT_BAD_INPUT)
    if calibrate:
        if out is None:
            err("--calibrate needs --out FILE (the shipped twin is never overwritten implicitly)")
            raise typer.Exit(EXIT_BAD_INPUT)
        info(f"calibrating: {len(tw.CALIBRATION_GRID)} grid parameters x {seeds} seeds ...")
        res = tw.calibrate(range(seeds), progress=lambda d, n: info(f"  {d}/{n}"))
        design, seed = res.best.design, res.best.seed
        search = {"grid": {k: list(v) for k, v in res.grid.items()}, "seeds": list(res.seeds),
                  "n_evaluated": res.n_evaluated, "distance": res.best.distance}
        tw.write_twin(design, seed, out, out.with_suffix(".json"), search=search)
        info(f"wrote {out} and {out.with_suffix('.json')} (seed {seed}, distance {res.best.distance:.2f})")
    elif out is not None:
        prov = tw.load_provenance()
        design = Design.from_dict(prov["design"])
        use_seed = prov["seed"] if seed is None else seed
        tw.write_twin(design, use_seed, out, out.with_suffix(".json"),
                      search=prov.get("calibration_search") if use_seed == prov["seed"] else None)
        info(f"wrote {out} and {out.with_suffix('.json')} (SYNTHETIC twin, seed {use_seed})")
    if report:
        from analysis.rajak.published import paper_analysis, replication_table
        from analysis.study.clinical import derive
        from analysis.study.data import load_twin

        ds = load_twin() if out is None else load_dataset(out, synthetic=True)
        table = replication_table(paper_analysis(derive(ds.frame)))
        typer.echo(f"SYNTHETIC RAJAK twin ({ds.source}): published figure vs the paper's analysis on the twin")
        typer.echo(table.rename(columns={"this_analysis": "twin"}).drop(columns=["description", "kind"])
                   .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
