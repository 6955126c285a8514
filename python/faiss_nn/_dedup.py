"""The threshold join and duplicate groups (:func:`faiss_nn.range_pairs`, :func:`faiss_nn.dedup`,
:func:`faiss_nn.dedup_table`), and the conversion of a ``by`` column into the values that rank
rows for ``keep="max"`` / ``"min"``."""

from __future__ import annotations

import datetime
import decimal
import warnings
from typing import Any, Optional, Tuple

import numpy as np

from . import _faiss_nn as _native
from ._errors import InvalidInputError

KEEP_POLICIES = ("first", "max", "min")
OUTPUT_COLUMNS = ("dup_group", "keep")


def _cpu_note(device: Any, what: str) -> None:
    """The threshold join has no GPU form: a GPU device (checked as any device argument is) is
    noted, and the join runs on the CPU."""
    if device is None or (isinstance(device, str) and device.strip().lower() in ("cpu", "none")):
        return
    # Parsed as every other device argument (an index is never searched here, so nothing opens).
    _native.FlatIndex(1, "l2", device, None, None, "f32")
    warnings.warn(
        f"{what}: the threshold join runs on the CPU (faiss-nn has no GPU threshold join); device={device!r} is not used",
        RuntimeWarning,
        stacklevel=3,
    )


def _check_keep(keep: Any, by: Any) -> str:
    if not isinstance(keep, str) or keep not in KEEP_POLICIES:
        raise InvalidInputError(f"invalid keep: {keep!r}: expected 'first', 'max' or 'min'")
    if keep == "first" and by is not None:
        raise InvalidInputError("invalid keep: 'first' keeps the lowest row number; `by` is for keep='max' or 'min'")
    if keep != "first" and by is None:
        raise InvalidInputError(f"invalid keep: {keep!r} needs `by`, the values (one per row) to rank rows by")
    return keep


def rank_values(values: Any, n: int, what: str = "by") -> Tuple[str, np.ndarray, np.ndarray]:
    """``(kind, values, valid)``: one value per row to rank rows by, as the native code takes
    them. Numbers by value (integers exactly), booleans as 0/1, dates and times by their instant,
    strings, bytes and lists by their length; None, NaN and NaT are missing (never preferred).
    Accepts numpy arrays, pyarrow arrays and chunked arrays, pandas Series, and sequences."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency of the table API only
        pa = None
    if pa is not None and isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _arrow_rank(pa, values, n, what)
    missing = None
    if isinstance(values, np.ma.MaskedArray):
        missing = np.ma.getmaskarray(values)
        values = values.data
    elif hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        # pandas: nullable dtypes become object arrays with pd.NA, tz-aware datetimes arrays of
        # Timestamps; both handled below.
        values = values.to_numpy()
    if isinstance(values, (list, tuple)):
        # Element by element: rows of lists (ranked by length) must not become a 2-D array.
        arr = np.empty(len(values), dtype=object)
        for t, v in enumerate(values):
            arr[t] = v
    else:
        arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    kind, out, valid = _array_rank(arr, n, what)
    if missing is not None:
        valid = valid & ~missing
    return kind, out, valid


def _array_rank(arr: np.ndarray, n: int, what: str) -> Tuple[str, np.ndarray, np.ndarray]:
    if arr.ndim != 1:
        raise InvalidInputError(f"invalid {what}: expected one value per row, got an array of shape {arr.shape}")
    if arr.shape[0] != n:
        raise InvalidInputError(f"invalid {what}: {arr.shape[0]} values for {n} rows; give one per row")
    kind = arr.dtype.kind
    if kind == "b":
        return "int", arr.astype(np.int64), np.ones(n, bool)
    if kind == "i":
        return "int", np.ascontiguousarray(arr, np.int64), np.ones(n, bool)
    if kind == "u":
        return "uint", np.ascontiguousarray(arr, np.uint64), np.ones(n, bool)
    if kind == "f":
        f = np.ascontiguousarray(arr, np.float64)
        return "float", f, ~np.isnan(f)
    if kind in "mM":
        valid = ~np.isnat(arr)
        return "int", np.ascontiguousarray(arr.view(np.int64)), valid
    if kind in "US":
        return "int", np.char.str_len(arr).astype(np.int64), np.ones(n, bool)
    if kind == "O":
        return _object_rank(arr, what)
    raise InvalidInputError(f"invalid {what}: values of dtype {arr.dtype} have no order")


def _object_rank(arr: np.ndarray, what: str) -> Tuple[str, np.ndarray, np.ndarray]:
    """Object arrays (lists of Python values, pandas' nullable columns): lengths of strings,
    bytes and sequences, or numbers; None / NA / NaN missing."""
    n = arr.shape[0]
    valid = np.ones(n, bool)
    lengths = np.zeros(n, np.int64)
    numbers = np.zeros(n, np.float64)
    ints = np.zeros(n, np.int64)
    seen = set()
    for r, v in enumerate(arr):
        if v is None or (isinstance(v, float) and v != v) or type(v).__name__ in ("NAType", "NaTType"):
            valid[r] = False
        elif isinstance(v, (str, bytes, list, tuple, np.ndarray)):
            lengths[r] = len(v)
            seen.add("len")
        elif isinstance(v, (bool, np.bool_, int, np.integer)):
            if not -(2**63) <= int(v) < 2**63:
                raise InvalidInputError(f"invalid {what}: row {r} is {v}, beyond the 64-bit integers")
            ints[r] = int(v)
            numbers[r] = float(v)
            seen.add("int")
        elif isinstance(v, (float, np.floating)):
            numbers[r] = float(v)
            seen.add("float")
        elif isinstance(v, (datetime.datetime, datetime.date, np.datetime64)):
            ints[r] = _instant(v)
            seen.add("int")
        elif isinstance(v, datetime.time):
            ints[r] = ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
            seen.add("int")
        elif isinstance(v, (datetime.timedelta, np.timedelta64)):
            ints[r] = int(np.timedelta64(v, "ns").astype(np.int64))
            seen.add("int")
        elif isinstance(v, decimal.Decimal):
            numbers[r] = float(v)
            seen.add("float")
        else:
            raise InvalidInputError(f"invalid {what}: row {r} is {type(v).__name__}, which has no order")
    if "len" in seen and len(seen) > 1:
        raise InvalidInputError(f"invalid {what}: a mix of texts (ranked by length) and numbers")
    if seen == {"int"}:
        return "int", ints, valid
    if "len" in seen:
        return "int", lengths, valid
    return "float", numbers, valid


def _instant(v: Any) -> int:
    """A date or time as an integer that orders it: nanoseconds since the epoch (UTC for an
    aware time, as given for a naive one), days for a date."""
    if hasattr(v, "value") and hasattr(v, "tz_localize"):  # pandas.Timestamp
        return int(v.value)
    if isinstance(v, np.datetime64):
        return int(v.astype("datetime64[ns]").astype(np.int64))
    if isinstance(v, datetime.datetime):
        aware = v if v.tzinfo is not None else v.replace(tzinfo=datetime.timezone.utc)
        delta = aware - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return v.toordinal()


def _arrow_rank(pa: Any, values: Any, n: int, what: str) -> Tuple[str, np.ndarray, np.ndarray]:
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if len(values) != n:
        raise InvalidInputError(f"invalid {what}: {len(values)} values for {n} rows; give one per row")
    t = values.type
    valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), bool)
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    if getattr(pa.types, "is_string_view", lambda _: False)(t):
        values, t = values.cast(pa.string()), pa.string()
    elif getattr(pa.types, "is_binary_view", lambda _: False)(t):
        values, t = values.cast(pa.binary()), pa.binary()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        out = pc.utf8_length(values)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        out = pc.binary_length(values)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        out = pc.list_value_length(values)
    elif pa.types.is_boolean(t):
        out = values.cast(pa.int64())
    elif pa.types.is_unsigned_integer(t):
        return "uint", values.cast(pa.uint64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.uint64), valid
    elif pa.types.is_integer(t):
        out = values
    elif pa.types.is_floating(t) or pa.types.is_decimal(t):
        f = values.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        return "float", f, valid & ~np.isnan(f)
    elif pa.types.is_date32(t) or pa.types.is_time32(t):
        # Dates, times, timestamps and durations: their stored integer orders them.
        out = values.view(pa.int32())
    elif pa.types.is_date64(t) or pa.types.is_time64(t) or pa.types.is_timestamp(t) or pa.types.is_duration(t):
        out = values.view(pa.int64())
    else:
        raise InvalidInputError(f"invalid {what}: a column of type {t} has no order")
    ints = out.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return "int", np.ascontiguousarray(ints), valid


def _by_arg(keep: str, by: Any, n: int) -> Optional[Tuple[str, np.ndarray, np.ndarray]]:
    return None if keep == "first" else rank_values(by, n)
