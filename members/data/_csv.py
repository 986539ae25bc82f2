"""Parse FER2013 CSV files: Kaggle ``emotion,pixels,Usage``, gzip, ``icml_face_data.csv`` and no-Usage CSVs.

The pixels are parsed a chunk of rows at a time: the chunk's pixel strings are joined with a
sentinel value (999, impossible for a pixel) after each row and read by one ``np.fromstring``.
That fast path only accepts a chunk when every character is a digit or a space, no number has
more than 3 digits and the sentinels sit exactly every 2,305 values, which proves every row has
2,304 numbers in 0..255. Any other chunk (bad data, or unusual but valid spacing such as tabs) is
re-read row by row with exact checks, which either names the first bad row or returns the same
pixels, so the fast path never accepts what the exact one would refuse.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import NUM_PIXELS, USAGES, DataError, IMAGE_SIDE, class_list, where

CHUNK_ROWS = 4096
_SENTINEL = 999
_REQUIRED = ("emotion", "pixels")
_GZIP_MAGIC = b"\x1f\x8b"


def read_csv_dataset(path: Path, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read and validate a FER2013-style CSV.

    Args:
        path: The CSV, plain or gzip-compressed (detected from the content, not the name).
        progress: Optional tqdm-like object; ``update(k)`` is called after each chunk of rows.

    Returns:
        ``(x, y, usage_codes, notes)``: uint8 (N, 48, 48), int64 (N,), uint8 (N,) indices into
        ``USAGES``, and notes about the file. Ids are the 0-based data-row indices.

    Raises:
        DataError: Empty file, missing columns, or a bad row (named by line and data row).
    """
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if not magic:
        raise DataError(f"{path}: empty file (no header, no rows)")
    try:
        reader = pd.read_csv(
            path, dtype=str, na_filter=False, skip_blank_lines=False, chunksize=CHUNK_ROWS,
            compression="gzip" if magic == _GZIP_MAGIC else None, engine="c",
        )
        xs, ys, us = [], [], []
        state = _State(path)
        with reader:
            for chunk in reader:
                x, y, u = state.parse_chunk(chunk)
                xs.append(x)
                ys.append(y)
                us.append(u)
                if progress is not None:
                    progress.update(len(chunk))
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header, no rows)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV: {str(exc).strip()} (line 1 is the header)") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable CSV ({type(exc).__name__}: {exc})") from None
    state.finish()
    if state.rows == 0:
        raise DataError(f"{path}: no data rows (the file holds only a header)")
    x = np.concatenate(xs)[: state.rows].reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    y = np.concatenate(ys)[: state.rows]
    usage = np.concatenate(us)[: state.rows]
    return x, y, usage, state.notes


class _State:
    """Column mapping and row bookkeeping across chunks (blank lines are allowed only at the end)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = 0  # data rows read so far, trailing blank rows excluded
        self.seen = 0  # data rows read so far, blank rows included
        self.first_blank: int | None = None
        self.columns: dict[str, str] | None = None
        self.notes: list[str] = []

    def _map_columns(self, chunk: pd.DataFrame) -> dict[str, str]:
        names = {str(c).strip().lstrip("\ufeff").strip().lower(): c for c in chunk.columns}
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            found = [str(c) for c in chunk.columns]
            raise DataError(
                f"{self.path}: missing column(s) {missing}; the header has {found} "
                "(expected emotion,pixels,Usage; Usage is optional)"
            )
        if "usage" not in names:
            self.notes.append("no Usage column: every row is test data (Usage 'PrivateTest')")
        return names

    def parse_chunk(self, chunk: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate one chunk of rows; returns its flat pixels, labels and usage codes."""
        if self.columns is None:
            self.columns = self._map_columns(chunk)
        start = self.seen
        self.seen += len(chunk)
        blank = _blank_rows(chunk, self.columns["emotion"])
        if self.first_blank is not None and not blank.all():
            raise DataError(f"{self.path}, {where(self.first_blank)}: blank line before the end of the file")
        if blank.any():
            first = int(np.argmax(blank))
            if not blank[first:].all():
                raise DataError(f"{self.path}, {where(start + first)}: blank line before the end of the file")
            self.first_blank = start + first
            chunk = chunk.iloc[:first]
        self.rows += len(chunk)
        y = self._labels(chunk[self.columns["emotion"]], start)
        u = self._usages(chunk, start)
        x = parse_pixels(chunk[self.columns["pixels"]].tolist(), self.path, start)
        return x, y, u

    def _labels(self, col: pd.Series, start: int) -> np.ndarray:
        raw = col.str.strip()
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values > 6)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{self.path}, {where(start + i)}: emotion label {raw.iloc[i]!r} is not an integer 0..6 "
                f"({class_list()})"
            )
        return values.astype(np.int64)

    def _usages(self, chunk: pd.DataFrame, start: int) -> np.ndarray:
        if "usage" not in self.columns:
            return np.full(len(chunk), USAGES.index("PrivateTest"), dtype=np.uint8)
        raw = chunk[self.columns["usage"]].str.strip()
        codes = raw.map({name: i for i, name in enumerate(USAGES)})
        bad = codes.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{self.path}, {where(start + i)}: unknown Usage {raw.iloc[i]!r}; expected one of {list(USAGES)}"
            )
        return codes.to_numpy(dtype=np.uint8)

    def finish(self) -> None:
        """Note trailing blank lines, which are ignored."""
        if self.first_blank is not None:
            self.notes.append(f"ignored {self.seen - self.rows} blank line(s) at the end of the file")


def _blank_rows(chunk: pd.DataFrame, label_column: str) -> np.ndarray:
    """Bool mask of blank lines; only rows with an empty label are inspected (pixel strings are long)."""
    blank = (chunk[label_column].str.strip() == "").to_numpy().copy()
    for i in np.flatnonzero(blank):
        blank[i] = all(not str(v).strip() for v in chunk.iloc[i].tolist())
    return blank


def parse_pixels(rows: list[str], path: Path | str, start: int = 0) -> np.ndarray:
    """Pixel strings -> uint8 (len(rows), 2304); ``start`` is the 0-based data row of ``rows[0]``."""
    fast = _parse_fast(rows)
    return fast if fast is not None else _parse_exact(rows, path, start)


def _parse_fast(rows: list[str]) -> np.ndarray | None:
    """One ``np.fromstring`` over the joined rows, or None when the chunk needs the exact path."""
    if not rows:
        return np.zeros((0, NUM_PIXELS), dtype=np.uint8)
    sep = f" {_SENTINEL} "
    text = sep.join(rows) + sep
    if not text.isascii():
        return None
    raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    digit = (raw - np.uint8(48)) <= 9
    if not np.all(digit | (raw == 32)):
        return None
    if np.any(digit[:-3] & digit[1:-2] & digit[2:-1] & digit[3:]):
        return None  # a number of 4+ digits: let the exact path judge it
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(text, dtype=np.int16, sep=" ")
        except (DeprecationWarning, ValueError):
            return None
    width = NUM_PIXELS + 1
    if values.size != len(rows) * width:
        return None
    values = values.reshape(len(rows), width)
    if not np.all(values[:, -1] == _SENTINEL) or values[:, :-1].max() > 255:
        return None
    return values[:, :-1].astype(np.uint8)


def _parse_exact(rows: list[str], path: Path | str, start: int) -> np.ndarray:
    """Row-by-row parse with exact checks; raises DataError at the first bad row."""
    out = np.empty((len(rows), NUM_PIXELS), dtype=np.uint8)
    for i, text in enumerate(rows):
        tokens = text.split()
        if len(tokens) != NUM_PIXELS:
            raise DataError(
                f"{path}, {where(start + i)}: {len(tokens)} pixel values, expected {NUM_PIXELS} "
                f"({IMAGE_SIDE}x{IMAGE_SIDE})"
            )
        for token in tokens:
            if not (token.isascii() and token.isdigit()):
                raise DataError(f"{path}, {where(start + i)}: {_token_problem(token)}")
        values = [int(token) for token in tokens]
        top = max(values)
        if top > 255:
            raise DataError(f"{path}, {where(start + i)}: pixel value {top} outside 0..255")
        out[i] = values
    return out


def _token_problem(token: str) -> str:
    """Why a pixel token that is not plain ASCII digits is refused."""
    try:
        value = float(token)
    except ValueError:
        return f"non-numeric pixel value {token!r}"
    if value.is_integer() and _is_signed_int(token):
        if 0 <= int(token) <= 255:
            return f"pixel value {token!r} must be written with digits only"
        return f"pixel value {token!r} outside 0..255"
    return f"pixel value {token!r} is not an integer 0..255"


def _is_signed_int(token: str) -> bool:
    """True for an optionally signed run of ASCII digits."""
    body = token[1:] if token[:1] in "+-" else token
    return body.isascii() and body.isdigit()
