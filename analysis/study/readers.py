"""Reading a study file as it comes: delimited text, Excel, Parquet, SAS, SPSS and Stata.

:func:`read_file` returns the raw table (:class:`RawTable`): the cells without interpretation, the
format, the file's bytes (for the hash), the column labels a SAS/SPSS/Stata file carries (so that
messages can name a column by its label too), value labels, notes on how it was read, and where
each row is in the file. Validation against the data contract is ``data``'s job; pivoting a CDISC
ADaM file is ``adam``'s. Every way a file can be unreadable raises :class:`DataValidationError`
with one line naming the file and the reason. The file is only read.

Delimited text (``.csv``, ``.tsv``, ``.txt``): the delimiter (``,`` ``;`` tab ``|``) is the one
that splits the header into two or more fields; where several do, the one that splits every line
into the header's number of fields; where several still do, the one whose data cells contain none
of the others (a decimal comma aside). ``csv.Sniffer`` is not used: it guesses where this rule
reports the ambiguity. The decimal mark is a point, or a comma when the numeric-looking cells use
commas and none uses a point (never with ``,`` as delimiter); cells of both kinds are an ambiguity.
Either can be given instead (``delimiter=``, ``decimal=``).

Excel (``.xlsx``, ``.xlsm``) is read with openpyxl: pure Python, pandas' own engine for xlsx,
and it writes the files the tests read (python-calamine only reads).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.study.problems import DataValidationError, ExcludedRow

__all__ = ["CHUNK_ROWS", "DELIMITERS", "EXTENSIONS", "RawTable", "detect_decimal", "detect_delimiter", "read_file"]

#: Rows per chunk when delimited text is read as a stream (``read_file(..., stream=True)``): the cells
#: of one chunk are held as text at a time, so reading and validating a file costs memory for its
#: validated columns plus one chunk, not for every cell as text.
CHUNK_ROWS = 50_000

TEXT_EXTENSIONS = (".csv", ".tsv", ".txt")
STAT_FORMATS = {  # extension -> (pyreadstat reader, what the file is, short format name)
    ".xpt": ("read_xport", "SAS transport (XPT)", "xpt"),
    ".sas7bdat": ("read_sas7bdat", "SAS (sas7bdat)", "sas7bdat"),
    ".sav": ("read_sav", "SPSS (.sav)", "sav"),
    ".zsav": ("read_sav", "SPSS (.zsav)", "sav"),
    ".dta": ("read_dta", "Stata (.dta)", "dta"),
}
EXTENSIONS = (*TEXT_EXTENSIONS, ".xlsx", ".xlsm", ".parquet", ".pq", *STAT_FORMATS)
DELIMITERS = (",", ";", "\t", "|")
_NA_TEXT = {"", "NA", "NaN", "nan", "N/A", "NULL"}
_POINT_NUMBER = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")
_COMMA_NUMBER = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")


def _show_delim(d: str) -> str:
    return "tab" if d == "\t" else repr(d)


@dataclass
class RawTable:
    """A file's table before validation.

    Parameters
    ----------
    frame
        The cells: text as read (missing as NaN), numbers as the format stores them.
    fmt
        Short format name: ``csv`` (any delimited text), ``xlsx``, ``parquet``, ``xpt``,
        ``sas7bdat``, ``sav``, ``dta``; ``adam`` after pivoting an ADaM file.
    raw
        The file's bytes (the dataset's hash is taken of them).
    labels
        Column labels stored in the file (SAS, SPSS, Stata), ``{column: label}``.
    value_labels
        Value labels stored in the file (SPSS, Stata), ``{column: {code: label}}``.
    notes
        How the file was read, where that is worth saying (delimiter, decimal comma, sheet).
    unit, first
        Rows are named ``f"{unit} {index + first}"``: ``line`` from 2 for text (line 1 is the
        header), ``row`` from 1 for tables without a header line, the sheet row for Excel.
    excluded
        Records left out by a rule of the reader (ADaM analysis flags), listed in the report.
    hint
        Added to a "missing required column" error (what the file offered instead).
    row_numbers
        The file's number of each row, where rows were skipped (empty sheet rows); else ``first``.
    parse
        A streamed table (delimited text read with ``stream=True``): ``parse(columns)`` yields the
        rows in chunks (:meth:`chunks`), and ``frame`` holds the header only (no rows).
    """

    frame: pd.DataFrame
    fmt: str
    raw: bytes
    labels: dict[str, str] = field(default_factory=dict)
    value_labels: dict[str, dict[Any, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unit: str = "row"
    first: int = 1
    excluded: list[ExcludedRow] = field(default_factory=list)
    hint: str = ""
    row_numbers: list[int] | None = None
    parse: Callable[[list[str] | None], Iterator[pd.DataFrame]] | None = field(default=None, repr=False)

    @property
    def streamed(self) -> bool:
        """Whether the rows are read chunk by chunk (:meth:`chunks`) rather than held in ``frame``."""
        return self.parse is not None

    def chunks(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """The rows in chunks (one, ``frame``, unless the table is streamed), each indexed by the rows'
        positions in the whole table, so that :meth:`where` names them; a new pass over the file each
        call.

        Parameters
        ----------
        columns
            Only these columns (the file's names).

        Raises
        ------
        DataValidationError
            Where the file stops being readable (a record with too many fields).
        """
        if self.parse is None:
            yield self.frame if columns is None else self.frame[columns]
        else:
            yield from self.parse(columns)

    def whole(self) -> RawTable:
        """This table with every row in ``frame`` (itself when it is not streamed)."""
        if self.parse is None:
            return self
        return replace(self, frame=pd.concat(list(self.chunks())), parse=None)

    def where(self, idx: int, column: str | None = None) -> str:
        """Where row ``idx`` of the frame is in the file.

        Parameters
        ----------
        idx
            The frame's row index.
        column
            The column, where the place depends on it (a pivoted ADaM cell comes from its own record).

        Returns
        -------
        str
            ``"line 12"``, ``"row 40"``.
        """
        n = self.row_numbers[int(idx)] if self.row_numbers is not None else int(idx) + self.first
        return f"{self.unit} {n}"

    def describe(self, column: str, as_: str | None = None) -> str:
        """A column as messages name it.

        Parameters
        ----------
        column
            The column's name in this table.
        as_
            The contract name it was mapped to, if any.

        Returns
        -------
        str
            ``column 'AVAL' (Analysis Value)``, or ``column 'LS' as 'bmd_spine'`` when mapped.
        """
        label = self.labels.get(column)
        text = f"column '{column}'" + (f" ({label})" if label else "")
        return text + (f" as '{as_}'" if as_ and as_ != column else "")


def read_file(path: str | Path, *, encoding: str = "utf-8", sheet: str | int | None = None,
              delimiter: str | None = None, decimal: str | None = None, stream: bool = False) -> RawTable:
    """Read a study file of any supported format.

    Parameters
    ----------
    path
        ``.csv``/``.tsv``/``.txt`` (delimited text), ``.xlsx``/``.xlsm``, ``.parquet``, ``.xpt``,
        ``.sas7bdat``, ``.sav``, ``.dta``.
    encoding
        Text encoding of a delimited text file (a UTF-16 byte-order mark is honoured).
    sheet
        Excel sheet by name or 0-based index (default: the first); a name that is all digits and
        not a sheet's name is an index.
    delimiter, decimal
        Delimited text only: the field delimiter and the decimal mark, instead of detecting them.
    stream
        Delimited text: parse the cells in chunks of :data:`CHUNK_ROWS` rows when asked
        (:meth:`RawTable.chunks`) instead of all at once; other formats are read whole.

    Returns
    -------
    RawTable
        The uninterpreted table, its format, bytes, labels and notes.

    Raises
    ------
    DataValidationError
        One line naming the file and why it cannot be read.
    """
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise DataValidationError(f"{name}: file not found")
    if p.is_dir():
        raise DataValidationError(f"{name}: is a directory, not a data file")
    ext = p.suffix.lower()
    if ext == ".xls":
        raise DataValidationError(f"{name}: legacy Excel .xls files are not read; save it as .xlsx")
    if ext not in EXTENSIONS:
        raise DataValidationError(f"{name}: unknown extension '{p.suffix or '(none)'}' (expected "
                                  f"{', '.join(e for e in EXTENSIONS if e not in ('.pq', '.zsav', '.xlsm'))})")
    if sheet is not None and ext not in (".xlsx", ".xlsm"):
        raise DataValidationError(f"{name}: a sheet was given, but only Excel files have sheets")
    if (delimiter or decimal) and ext not in TEXT_EXTENSIONS:
        raise DataValidationError(f"{name}: a delimiter or decimal mark was given, but this is not a text file")
    raw = p.read_bytes()
    if not raw or raw.isspace():  # (raw.strip() would copy the file)
        raise DataValidationError(f"{name}: empty file")
    if ext in TEXT_EXTENSIONS:
        table = _read_text(raw, name, ext, encoding, delimiter, decimal, stream)
    elif ext in (".xlsx", ".xlsm"):
        table = _read_xlsx(raw, name, sheet)
    elif ext in (".parquet", ".pq"):
        table = _read_parquet(raw, name)
    else:
        table = _read_stat(p, raw, name, ext)
    if table.frame.shape[0] == 0 and table.parse is None:
        raise DataValidationError(f"{name}: empty file (a header but no data rows)")
    unnamed = [c for c in table.frame.columns if str(c).startswith("Unnamed:")]
    if unnamed:
        raise DataValidationError(f"{name}: a column has no name (header position "
                                  f"{table.frame.columns.get_loc(unnamed[0]) + 1})")
    return table


# --- delimited text ---------------------------------------------------------------------------------


def _decode(raw: bytes, name: str, encoding: str) -> str:
    default = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    if default and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding, default = "utf-16", False  # a byte-order mark says which: unambiguous
    if raw[:4] == b"PAR1" or (default and b"\x00" in raw[:4096]):
        raise DataValidationError(f"{name}: not a CSV file (binary content; if it is text in another "
                                  f"encoding, give it, e.g. --encoding utf-16)")
    try:
        text = raw.decode("utf-8-sig" if default else encoding)
    except UnicodeDecodeError as err:
        raise DataValidationError(
            f"{name}: unreadable encoding: byte 0x{raw[err.start]:02x} at position {err.start} is not valid "
            f"{encoding} (save the file as UTF-8 or give its encoding)") from None
    except LookupError:
        raise DataValidationError(f"{name}: unknown encoding {encoding!r}") from None
    if "\x00" in text:
        raise DataValidationError(f"{name}: not a CSV file (NUL characters after decoding as {encoding})")
    return text


def _iter_records(text: str, delimiter: str) -> Iterator[list[str]]:
    """The non-empty records of delimited text, one at a time (a whole file's records as Python lists
    would take some fifteen times the file's size)."""
    reader = csv.reader(_TextFile(text), delimiter=delimiter)
    try:
        for rec in reader:
            if rec and any(cell.strip() for cell in rec):
                yield rec
    except csv.Error:
        return  # an unterminated quote: the records before it decide


class _TextFile:
    """Decoded text as a read-only file, read in slices of the one string (``io.StringIO`` would
    keep a copy of four bytes a character while pandas reads it)."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def read(self, size: int | None = -1) -> str:
        end = len(self.text) if size is None or size < 0 else self.pos + size
        out = self.text[self.pos:end]
        self.pos += len(out)
        return out

    def readline(self, size: int | None = -1) -> str:
        nl = self.text.find("\n", self.pos)
        end = len(self.text) if nl < 0 else nl + 1
        if size is not None and size >= 0:
            end = min(end, self.pos + size)
        out = self.text[self.pos:end]
        self.pos += len(out)
        return out

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line


def _records(text: str, delimiter: str, limit: int | None = None) -> list[list[str]]:
    return list(_iter_records(text, delimiter) if limit is None else islice(_iter_records(text, delimiter), limit))


def detect_delimiter(text: str, name: str, ext: str) -> str:
    """The field delimiter of delimited text (see the module docstring for the rule).

    Parameters
    ----------
    text
        The decoded file.
    name
        The file's name, for messages.
    ext
        Its extension (``.tsv`` prefers a tab where a tab is one of several consistent delimiters).

    Returns
    -------
    str
        The delimiter.

    Raises
    ------
    DataValidationError
        Where two or more delimiters fit equally well, or none fits every line.
    """
    head = text if len(text) < 1_000_000 else text[:1_000_000].rsplit("\n", 1)[0]
    splits = {d: _records(head, d, limit=200) for d in DELIMITERS}
    fields = {d: len(recs[0]) if recs else 0 for d, recs in splits.items()}
    candidates = [d for d in DELIMITERS if fields[d] >= 2]
    if not candidates:
        return ","  # one column: the contract names what is missing
    if len(candidates) == 1:
        return candidates[0]
    consistent = [d for d in candidates if all(len(r) == fields[d] for r in splits[d][1:])]
    if ext == ".tsv" and "\t" in consistent:
        return "\t"
    if len(consistent) > 1:  # keep those whose cells hold no other delimiter (decimal commas aside)
        def clean(d: str) -> bool:
            others = [o for o in consistent if o != d]
            return not any(o in c and not _COMMA_NUMBER.match(c.strip())
                           for r in splits[d][1:] for c in r for o in others)
        consistent = [d for d in consistent if clean(d)] or consistent
    if len(consistent) == 1:
        return consistent[0]
    shown = " and ".join(f"{_show_delim(d)} ({fields[d]} fields)" for d in (consistent or candidates))
    why = "each splits every line into the header's number of fields" if consistent else \
        "each splits the header, but neither splits every line alike"
    raise DataValidationError(f"{name}: ambiguous delimiter: {shown} {why} (give it, e.g. --delimiter ';')")


def detect_decimal(records: Iterable[list[str]], delimiter: str, name: str) -> str:
    """The decimal mark of delimited text: ``.``, or ``,`` when the numeric-looking cells use
    commas and none uses a point.

    Parameters
    ----------
    records
        The parsed records, header first (a list, or an iterator read one record at a time).
    delimiter
        The delimiter (a comma delimiter means a decimal point).
    name
        The file's name, for messages.

    Returns
    -------
    str
        ``"."`` or ``","``.

    Raises
    ------
    DataValidationError
        Where some numbers use a point and others a comma.
    """
    if delimiter == ",":
        return "."
    records = iter(records)
    header = next(records, None)
    if header is None:
        return "."
    first: dict[str, tuple[str, int, str]] = {}
    for line, rec in enumerate(records, start=2):
        for j, cell in enumerate(rec):
            c = cell.strip()
            kind = "." if _POINT_NUMBER.match(c) else "," if _COMMA_NUMBER.match(c) else None
            if kind and kind not in first:
                first[kind] = (c, line, header[j] if j < len(header) else f"field {j + 1}")
        if len(first) == 2:
            (pv, pl, pc), (cv, cl, cc) = first["."], first[","]
            raise DataValidationError(
                f"{name}: ambiguous decimal mark: {cv!r} (line {cl}, column '{cc}') has a decimal comma but "
                f"{pv!r} (line {pl}, column '{pc}') a decimal point (give it, e.g. --decimal ',')")
    return "," if "," in first else "."


def _read_text(raw: bytes, name: str, ext: str, encoding: str, delimiter: str | None,
               decimal: str | None, stream: bool = False) -> RawTable:
    text = _decode(raw, name, encoding)
    if delimiter is not None and delimiter not in DELIMITERS:
        delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter.lower(), delimiter)
        if delimiter not in DELIMITERS:
            raise DataValidationError(f"{name}: unsupported delimiter {delimiter!r} (one of , ; tab |)")
    if decimal is not None and decimal not in (".", ","):
        raise DataValidationError(f"{name}: unsupported decimal mark {decimal!r} (. or ,)")
    delim = delimiter or detect_delimiter(text, name, ext)
    if decimal == "," and delim == ",":
        raise DataValidationError(f"{name}: a comma cannot be both the delimiter and the decimal mark")
    mark = decimal or detect_decimal(_iter_records(text, delim), delim, name)
    notes = []
    if delim != "," or mark == ",":
        notes.append(f"read as {_show_delim(delim)}-separated text with a decimal "
                     f"{'comma' if mark == ',' else 'point'}" + (" (detected)" if not (delimiter and decimal) else ""))

    def parse(columns: list[str] | None = None, chunksize: int | None = -1,
              nrows: int | None = None) -> Iterator[pd.DataFrame]:
        chunksize = CHUNK_ROWS if chunksize == -1 else chunksize  # read when parsing (tests make it small)
        try:
            reader = pd.read_csv(_TextFile(text), sep=delim, dtype=str, keep_default_na=False, skipinitialspace=True,
                                 usecols=columns, chunksize=chunksize, nrows=nrows)
            for chunk in ([reader] if chunksize is None else reader):
                yield _cells(chunk, mark)
        except pd.errors.EmptyDataError:
            raise DataValidationError(f"{name}: empty file") from None
        except pd.errors.ParserError as err:
            raise DataValidationError(
                f"{name}: not a readable CSV file ({str(err).strip().splitlines()[-1]})") from None

    if stream:
        first = next(parse(nrows=1, chunksize=None))
        if first.shape[0] == 0:
            raise DataValidationError(f"{name}: empty file (a header but no data rows)")
        return RawTable(first.iloc[:0], "csv", raw, notes=notes, unit="line", first=2, parse=parse)
    return RawTable(next(parse(chunksize=None)), "csv", raw, notes=notes, unit="line", first=2)


def _cells(df: pd.DataFrame, mark: str) -> pd.DataFrame:
    """Parsed text cells with the missing-value words as missing and decimal commas as points."""
    df = df.replace({v: np.nan for v in _NA_TEXT})
    if mark == ",":
        def _point(s: pd.Series) -> pd.Series:
            t = s.astype(object)
            hit = t.map(lambda v: isinstance(v, str) and bool(_COMMA_NUMBER.match(v.strip())))
            return t.where(~hit, t[hit].map(lambda v: v.strip().replace(",", ".")))
        df = df.apply(_point)
    return df


# --- Excel ------------------------------------------------------------------------------------------


def _sheet_list(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _pick_sheet(wb: Any, sheet: str | int | None, name: str) -> Any:
    names = list(wb.sheetnames)
    if sheet is None:
        ws = wb[names[0]]
    elif isinstance(sheet, str) and sheet in names:
        ws = wb[sheet]
    elif isinstance(sheet, int) or (isinstance(sheet, str) and sheet.strip().isdigit()):
        i = int(sheet)
        if not 0 <= i < len(names):
            raise DataValidationError(f"{name}: no sheet at index {i} (0-based; the file has {len(names)} "
                                      f"sheet{'s' if len(names) != 1 else ''}: {_sheet_list(names)})")
        ws = wb[names[i]]
    else:
        raise DataValidationError(f"{name}: no sheet named {sheet!r} (sheets: {_sheet_list(names)})")
    if not hasattr(ws, "iter_rows"):
        raise DataValidationError(f"{name}: sheet {ws.title!r} is a chart, not a table (sheets: {_sheet_list(names)})")
    return ws


def _cell(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip()
        return np.nan if v in _NA_TEXT else v
    return np.nan if v is None else v


def _read_xlsx(raw: bytes, name: str, sheet: str | int | None) -> RawTable:
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - a dependency of the package
        raise DataValidationError(f"{name}: reading Excel files needs openpyxl (pip install openpyxl)") from None
    if raw[:2] != b"PK":
        raise DataValidationError(f"{name}: not a valid Excel .xlsx file (not a zip archive)")
    try:
        wb = openpyxl.load_workbook(io.BytesIO(raw), read_only=False, data_only=True)
    except Exception as err:  # zipfile, XML and openpyxl's own errors for broken workbooks
        raise DataValidationError(f"{name}: not a valid Excel .xlsx file ({type(err).__name__})") from None
    try:
        ws = _pick_sheet(wb, sheet, name)
        rows = [tuple(_cell(v) for v in r) for r in ws.iter_rows(values_only=True)]
        title, names = ws.title, list(wb.sheetnames)
    finally:
        wb.close()

    def filled(r: tuple) -> bool:
        return any(not (isinstance(v, float) and np.isnan(v)) for v in r)

    start = next((i for i, r in enumerate(rows) if filled(r)), None)
    if start is None:
        raise DataValidationError(f"{name}: sheet {title!r} is empty")
    numbers = [i + 1 for i in range(start + 1, len(rows)) if filled(rows[i])]  # sheet rows, 1-based
    width = max(len(rows[n - 1]) for n in [start + 1, *numbers])
    header = tuple(rows[start]) + (np.nan,) * (width - len(rows[start]))
    body = [tuple(rows[n - 1]) + (np.nan,) * (width - len(rows[n - 1])) for n in numbers]
    keep, cols = [], []
    for j, h in enumerate(header):
        empty_h = isinstance(h, float) and np.isnan(h)
        has_data = any(not (isinstance(r[j], float) and np.isnan(r[j])) for r in body)
        if empty_h and not has_data:
            continue
        if empty_h:
            raise DataValidationError(f"{name}: a column has no name (sheet {title!r}, header position {j + 1})")
        col = f"{h:g}" if isinstance(h, float) else str(h)
        if col in cols:
            raise DataValidationError(f"{name}: column '{col}' appears more than once (sheet {title!r})")
        keep.append(j)
        cols.append(col)
    df = pd.DataFrame([[r[j] for j in keep] for r in body], columns=cols, dtype=object)
    notes = [f"sheet {title!r} read" + (f" (sheets: {_sheet_list(names)})" if len(names) > 1 else "")] \
        if len(names) > 1 or sheet is not None else []
    return RawTable(df, "xlsx", raw, notes=notes, unit="row", row_numbers=numbers)


# --- Parquet ----------------------------------------------------------------------------------------


def _read_parquet(raw: bytes, name: str) -> RawTable:
    try:
        df = pd.read_parquet(io.BytesIO(raw))
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise DataValidationError(f"{name}: not a valid Parquet file ({type(err).__name__})") from None
    text_cols = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])
                 and not pd.api.types.is_bool_dtype(df[c])]
    df[text_cols] = df[text_cols].replace({"": np.nan})
    return RawTable(df, "parquet", raw)


# --- SAS, SPSS, Stata -------------------------------------------------------------------------------


def _read_stat(p: Path, raw: bytes, name: str, ext: str) -> RawTable:
    func, kind, fmt = STAT_FORMATS[ext]
    try:
        import pyreadstat
    except ImportError:  # pragma: no cover - a dependency of the package
        raise DataValidationError(f"{name}: reading {kind} files needs pyreadstat (pip install pyreadstat)") from None
    try:
        df, meta = getattr(pyreadstat, func)(str(p))
    except Exception as err:  # ReadstatError, PyreadstatError, OSError, UnicodeDecodeError ...
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataValidationError(f"{name}: not a readable {kind} file ({why})") from None
    labels = {str(c): str(lab) for c, lab in (getattr(meta, "column_names_to_labels", None) or {}).items()
              if lab and str(lab).strip() and str(lab) != str(c)}
    value_labels = dict(getattr(meta, "variable_value_labels", None) or {})
    for c in df.columns:
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            df[c] = df[c].map(_cell)
    return RawTable(df, fmt, raw, labels=labels, value_labels=value_labels)
