"""The label and partition files of CelebA (either layout, see :mod:`hpnet.data.celeba`): reading and checks.

Every file is read as UTF-8 text (:func:`read_text`); labels -1/1 (or 0/1) become 0/1 characters
per row (:func:`parse_labels`) and one array at the end (:func:`labels_array`). An image listed
twice or an attribute named twice is refused naming both places, and every malformed line with
one :class:`~hpnet.errors.HPNetError` line naming its file and line.  ``_read_attr_txt``,
``_read_attr_csv`` and ``_read_partition`` read a whole file; :func:`read_text`,
:func:`read_csv_rows`, :func:`parse_labels`, :func:`labels_array` and :func:`check_header` are shared
with :mod:`hpnet.data.csvdata`.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from hpnet.errors import HPNetError

LAYOUTS = {
    "txt": ("list_attr_celeba.txt", "list_eval_partition.txt"),
    "csv": ("list_attr_celeba.csv", "list_eval_partition.csv"),
}
_LABELS = {"-1", "0", "1"}
_PARTITIONS = {"0": 0, "1": 1, "2": 2}


def _label_value(token: str, where: str, column: str) -> str:
    try:
        value = float(token)
    except ValueError:
        raise HPNetError(f"{where}: column {column}: label {token!r} is not a number") from None
    if value not in (-1.0, 0.0, 1.0):
        raise HPNetError(f"{where}: column {column}: label {token!r} is not -1, 0 or 1")
    return "1" if value == 1.0 else "0"


def parse_labels(tokens: Sequence[str], columns: Sequence[str], where: str) -> str:
    """Label tokens (-1/0/1, also ``1.0``) -> a string of 0/1 characters, one per column.

    A bad token raises naming ``where`` (file: line) and its column. Strings keep 200k-row files fast;
    :func:`labels_array` turns them into one array.
    """
    if _LABELS >= set(tokens):  # the common spellings: no per-token work
        return "".join(tokens).replace("-1", "0")
    return "".join(_label_value(t.strip(), where, c) for t, c in zip(tokens, columns))


def labels_array(rows: list[str], columns: int) -> np.ndarray:  # (N, K) uint8 in {0, 1}
    codes = np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8)
    return (codes - ord("0")).reshape(len(rows), columns)


def read_text(path: Path) -> str:
    """The file as UTF-8 text (a BOM allowed). Bytes that are not UTF-8, and NUL bytes (which no label
    file holds, and which no path may hold), are refused naming their line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # the BOM is not counted
        line = data.count(b"\n", 0, start) + 1
        raise HPNetError(f"{path}: line {line}: not a text file ({exc.reason} at byte {start})") from None
    nul = text.find("\0")
    if nul >= 0:
        line = len((text[:nul] + "x").splitlines())  # numbered as str.splitlines and csv number lines
        raise HPNetError(f"{path}: line {line}: a NUL byte; is this a damaged or binary file?")
    return text


def _read_lines(path: Path) -> list[str]:
    return read_text(path).splitlines()


def _check_name(name: str, where: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise HPNetError(f"{where}: image name {name!r} is not a plain file name")
    return name


def check_header(names: Sequence[str], where: str, unit: str, first: int = 1) -> None:
    """Refuse a name given twice, with both positions (``unit`` ``first``, ``first + 1``, ...)."""
    if len(set(names)) == len(names):
        return
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=first):
        if name in seen:
            raise HPNetError(f"{where}: {name!r} appears twice in the header ({unit} {seen[name]} and {position})")
        seen[name] = position


def _plain(names: Collection[str]) -> bool:
    """True when every name (of a set or dict: fast membership) is a plain file name."""
    joined = "\n".join(names)
    return "/" not in joined and "\\" not in joined and not any(bad in names for bad in ("", ".", ".."))


def _check_names(path: Path, names: Sequence[str], numbers: Sequence[int], rule: str) -> None:
    """Every image name plain and listed once; else raises naming the first bad line (and for a repeat,
    the first one). One set and one join when all is well: 200k-row files stay fast."""
    unique = set(names)
    if len(unique) == len(names) and _plain(unique):
        return
    seen: dict[str, int] = {}
    for name, number in zip(names, numbers):
        where = f"{path}: line {number}"
        _check_name(name, where)
        if name in seen:
            raise HPNetError(f"{where}: image {name} is listed again (first on line {seen[name]}); {rule}")
        seen[name] = number


def _width_error(path: Path, header_line: int, number: int, names: int, values: int, first_row: bool) -> HPNetError:
    """A row whose value count is not the header's: the first row's disagreement is blamed on the header."""
    if first_row:
        return HPNetError(f"{path}: line {header_line}: the header names {names} attributes but line {number} "
                          f"has {values} values")
    return HPNetError(f"{path}: line {number}: expected an image name and {names} values, got {values} values")


def _count_and_header(path: Path, lines: list[str]) -> tuple[int, list[str]]:
    if not lines:
        raise HPNetError(f"{path}: empty file, expected a count line, a header line of attribute names "
                         f"and a row per image")
    count = lines[0].strip()
    if not (count.isascii() and count.isdigit()):  # isdigit alone passes '²', which int() refuses
        raise HPNetError(f"{path}: line 1: expected the image count, got {lines[0]!r}")
    names = lines[1].split() if len(lines) > 1 else []
    if not names:
        header = lines[1] if len(lines) > 1 else ""
        raise HPNetError(f"{path}: line 2: expected the header line of attribute names, got {header!r}")
    check_header(names, f"{path}: line 2", "names")
    return int(count), names


def _read_attr_txt(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    lines = _read_lines(path)
    count, names = _count_and_header(path, lines)
    width = len(names) + 1
    files, rows, numbers = [], [], []
    for number, line in enumerate(lines[2:], start=3):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != width:
            raise _width_error(path, 2, number, len(names), len(tokens) - 1, not files)
        files.append(tokens[0])
        rows.append(parse_labels(tokens[1:], names, f"{path}: line {number}"))
        numbers.append(number)
    if not files:
        raise HPNetError(f"{path}: no image rows after the header (line 2)")
    _check_names(path, files, numbers, "each image must appear once")  # a repeated row, before the count it breaks
    if count != len(files):
        raise HPNetError(f"{path}: the count line says {count} images but the file has {len(files)} rows")
    return names, files, labels_array(rows, len(names))


def read_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) for every non-blank row, the header included."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        return [(reader.line_num, [c.strip() for c in row]) for row in reader if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise HPNetError(f"{path}: line {reader.line_num}: not a readable CSV file ({exc})") from None


def _read_attr_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    rows = read_csv_rows(path)
    if not rows:
        raise HPNetError(f"{path}: empty file, expected the header image_id,5_o_Clock_Shadow,...")
    header_line, header = rows[0]
    check_header(header, f"{path}: line {header_line}", "columns")
    names = header[1:]
    files, labels, numbers = [], [], []
    for number, fields in rows[1:]:
        if len(fields) != len(names) + 1:
            raise _width_error(path, header_line, number, len(names), len(fields) - 1, not files)
        files.append(fields[0])
        labels.append(parse_labels(fields[1:], names, f"{path}: line {number}"))
        numbers.append(number)
    if not files:
        raise HPNetError(f"{path}: no image rows after the header (line {header_line})")
    _check_names(path, files, numbers, "each image must appear once")
    return names, files, labels_array(labels, len(names))


def _partition_rows(path: Path, layout: str) -> list[tuple[int, list[str]]]:
    if layout == "txt":
        return [(n, line.split()) for n, line in enumerate(_read_lines(path), start=1) if line.strip()]
    rows = read_csv_rows(path)
    if rows and len(rows[0][1]) == 2 and rows[0][1][1] in _PARTITIONS:  # a data row where the header belongs
        raise HPNetError(f"{path}: line {rows[0][0]}: expected the header image_id,partition, "
                         f"got {','.join(rows[0][1])!r}")
    return rows[1:]


def _read_partition(path: Path, layout: str) -> dict[str, int]:
    if not path.is_file():
        raise HPNetError(f"missing partition file {path} (the {layout} layout needs it next to "
                         f"{LAYOUTS[layout][0]})")
    sep = "," if layout == "csv" else " "
    rows = _partition_rows(path, layout)
    if not rows:
        raise HPNetError(f"{path}: no partition rows, expected one per image like '000001.jpg{sep}0'")
    parts = {}
    for number, fields in rows:
        if len(fields) != 2 or fields[1] not in _PARTITIONS:
            raise HPNetError(f"{path}: line {number}: expected an image name and a partition 0, 1 or 2 "
                             f"(train, valid, test), got {sep.join(fields)!r}")
        parts[fields[0]] = _PARTITIONS[fields[1]]
    if len(parts) != len(rows) or not _plain(parts):
        _check_names(path, [f[0] for _, f in rows], [n for n, _ in rows], "each image must have one partition")
    return parts
