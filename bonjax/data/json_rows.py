"""Raw rows from local JSON / JSONL files (optionally gzip-compressed), with their line numbers.

Supported layouts:
  * `*.jsonl`, `*.jsonl.gz`: one JSON value per line; blank lines are not rows.
  * `*.json`, `*.json.gz`: one JSON document: either a list of rows, or a single row (the
    Hendrycks MATH release stores one problem per `.json` file in `<split>/<type>/`).
  * a directory: every file above beneath it, in sorted path order.

Reading never raises on bad content: each unreadable piece is yielded as a `RowProblem` with
the file and the 1-based line where it starts, and the caller decides what to do with it. JSON
nested deeper than the parser's recursion limit is such a problem, and so is a file that holds
no row at all (empty, blank lines only, or `[]`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pathlib
import sys
import zlib
from typing import Any, Iterator, Sequence, Union

from bonjax.data.row_errors import Reason, RowProblem

PathLike = Union[str, os.PathLike]

_LINE_SUFFIXES = (".jsonl", ".jsonl.gz")
_DOCUMENT_SUFFIXES = (".json", ".json.gz")
_JSON_WHITESPACE = " \t\n\r"
# Errors a (possibly truncated or corrupt) gzip stream or a failing disk can raise mid-read.
_READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclasses.dataclass(frozen=True)
class RawRow:
  """One parsed JSON value and where it came from.

  Attributes:
    value: the parsed JSON value (not yet checked to be an object).
    path: file the row came from.
    line: 1-based line where the row starts.
    ordinal: 0-based position of the row within its file (malformed rows count too, so the
      ordinal of a good row does not change when another row is fixed or broken).
    source_name: the file's name relative to the directory given (or its base name for a
      file given directly), without its .json/.jsonl/.gz suffixes.
    single_document: True when the file holds exactly this one row (a bare JSON object).
  """

  value: Any
  path: str
  line: int
  ordinal: int
  source_name: str
  single_document: bool = False


def _strip_suffixes(name: str) -> str:
  for suffix in _LINE_SUFFIXES + _DOCUMENT_SUFFIXES:
    if name.endswith(suffix):
      return name[:-len(suffix)]
  return name


def _is_data_file(path: pathlib.Path) -> bool:
  return path.is_file() and path.name.endswith(_LINE_SUFFIXES + _DOCUMENT_SUFFIXES)


def list_data_files(paths: PathLike | Sequence[PathLike]) -> list[tuple[pathlib.Path, str]]:
  """Expands files and directories into (file, source_name) pairs.

  Args:
    paths: one path or several; directories are searched recursively.

  Returns:
    (file path, source name) pairs: directory contents in sorted order, files as given.

  Raises:
    FileNotFoundError: a path does not exist, or a directory holds no JSON/JSONL file.
    ValueError: a file's name does not end in a supported suffix.
  """
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  out = []
  for given in map(pathlib.Path, paths):
    if given.is_dir():
      found = sorted(p for p in given.rglob("*") if _is_data_file(p))
      if not found:
        raise FileNotFoundError(f"{given}: directory holds no "
                                f"{'/'.join(_DOCUMENT_SUFFIXES + _LINE_SUFFIXES)} file")
      out.extend((p, _strip_suffixes(p.relative_to(given).as_posix())) for p in found)
    elif given.is_file():
      if not given.name.endswith(_LINE_SUFFIXES + _DOCUMENT_SUFFIXES):
        raise ValueError(f"{given}: unsupported file name; expected one of "
                         f"{_LINE_SUFFIXES + _DOCUMENT_SUFFIXES}")
      out.append((given, _strip_suffixes(given.name)))
    else:
      raise FileNotFoundError(f"{given}: no such file or directory")
  return out


def _open_binary(path: pathlib.Path):
  return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _decode_json_error(error: json.JSONDecodeError) -> str:
  return f"{error.msg} (column {error.colno})"


def _too_deep() -> str:
  return f"JSON nested too deeply to parse (Python's recursion limit, {sys.getrecursionlimit()})"


def read_line_rows(path: pathlib.Path, source_name: str) -> Iterator[RawRow | RowProblem]:
  """Yields the rows of a JSONL file, one per non-blank line.

  Args:
    path: a `.jsonl` or `.jsonl.gz` file.
    source_name: name used for example ids.

  Yields:
    RawRow for each line that parses, RowProblem for each that does not; a read failure
    (e.g. truncated gzip) yields one UNREADABLE_FILE problem and ends the file.
  """
  line_number = 0
  ordinal = 0
  try:
    with _open_binary(path) as f:
      for line_number, raw in enumerate(f, start=1):
        if not raw.strip():
          continue
        try:
          # utf-8-sig drops a byte-order mark some editors write at the start of the file.
          text = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
        except UnicodeDecodeError as e:
          yield RowProblem(str(path), line_number, Reason.BAD_ENCODING,
                           f"invalid UTF-8 at byte {e.start} of the line")
          ordinal += 1
          continue
        try:
          value = json.loads(text)
        except json.JSONDecodeError as e:
          yield RowProblem(str(path), line_number, Reason.BAD_JSON, _decode_json_error(e))
        except RecursionError:
          yield RowProblem(str(path), line_number, Reason.BAD_JSON, _too_deep())
        else:
          yield RawRow(value, str(path), line_number, ordinal, source_name)
        ordinal += 1
  except _READ_ERRORS as e:
    yield RowProblem(str(path), line_number + 1, Reason.UNREADABLE_FILE,
                     f"{type(e).__name__}: {e}; the rest of the file was not read")


def _skip_whitespace(text: str, pos: int) -> int:
  while pos < len(text) and text[pos] in _JSON_WHITESPACE:
    pos += 1
  return pos


class _LineCounter:
  """Maps increasing character offsets to 1-based line numbers in linear total time."""

  def __init__(self, text: str):
    self._text = text
    self._pos = 0
    self._line = 1

  def line_at(self, pos: int) -> int:
    self._line += self._text.count("\n", self._pos, pos)
    self._pos = pos
    return self._line


def _iter_array(text: str, start: int, path: str,
                source_name: str) -> Iterator[RawRow | RowProblem]:
  """Yields the elements of the JSON array whose '[' is at `start`."""
  decoder = json.JSONDecoder()
  lines = _LineCounter(text)
  pos = _skip_whitespace(text, start + 1)
  ordinal = 0
  if pos < len(text) and text[pos] == "]":
    pos += 1
  else:
    while True:
      line = lines.line_at(pos)
      try:
        value, pos = decoder.raw_decode(text, pos)
      except json.JSONDecodeError as e:
        # Past a syntax error the element boundaries are unknown, so the file ends here.
        yield RowProblem(path, e.lineno, Reason.BAD_JSON,
                         f"{_decode_json_error(e)}; the rest of the file was not read")
        return
      except RecursionError:
        yield RowProblem(path, line, Reason.BAD_JSON,
                         f"{_too_deep()}; the rest of the file was not read")
        return
      yield RawRow(value, path, line, ordinal, source_name)
      ordinal += 1
      pos = _skip_whitespace(text, pos)
      if pos < len(text) and text[pos] == ",":
        pos = _skip_whitespace(text, pos + 1)
        continue
      if pos < len(text) and text[pos] == "]":
        pos += 1
        break
      yield RowProblem(path, lines.line_at(pos), Reason.BAD_JSON,
                       "expected ',' or ']' after a list element; the rest of the file "
                       "was not read")
      return
  pos = _skip_whitespace(text, pos)
  if pos < len(text):
    yield RowProblem(path, lines.line_at(pos), Reason.BAD_JSON,
                     "extra data after the closing ']'")


def read_document_rows(path: pathlib.Path, source_name: str) -> Iterator[RawRow | RowProblem]:
  """Yields the rows of a JSON document: each element of a top-level list, or the one value.

  Args:
    path: a `.json` or `.json.gz` file.
    source_name: name used for example ids.

  Yields:
    RawRow / RowProblem as `read_line_rows`; a syntax error inside a list ends the file.
  """
  try:
    with _open_binary(path) as f:
      data = f.read()
  except _READ_ERRORS as e:
    yield RowProblem(str(path), 1, Reason.UNREADABLE_FILE, f"{type(e).__name__}: {e}")
    return
  try:
    text = data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    yield RowProblem(str(path), line, Reason.BAD_ENCODING,
                     f"invalid UTF-8 at byte {e.start}; the file was not read")
    return
  start = _skip_whitespace(text, 0)
  if start == len(text):
    return  # No row: `read_rows` reports the empty file.
  if text[start] == "[":
    yield from _iter_array(text, start, str(path), source_name)
    return
  line = text.count("\n", 0, start) + 1
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    yield RowProblem(str(path), e.lineno, Reason.BAD_JSON, _decode_json_error(e))
    return
  except RecursionError:
    yield RowProblem(str(path), line, Reason.BAD_JSON, _too_deep())
    return
  yield RawRow(value, str(path), line, 0, source_name, single_document=True)


def read_rows(paths: PathLike | Sequence[PathLike]) -> Iterator[RawRow | RowProblem]:
  """Iterates over every row of every file under `paths` (see the module docstring).

  Args:
    paths: files and/or directories.

  Returns:
    an iterator of RawRow or RowProblem, in file order then row order.

  Raises:
    FileNotFoundError, ValueError: as `list_data_files`, before any row is read.
  """
  files = list_data_files(paths)

  def rows() -> Iterator[RawRow | RowProblem]:
    for path, source_name in files:
      read = read_line_rows if path.name.endswith(_LINE_SUFFIXES) else read_document_rows
      empty = True
      for item in read(path, source_name):
        empty = False
        yield item
      if empty:
        yield RowProblem(str(path), 1, Reason.EMPTY_FILE,
                         "the file holds no rows (empty, blank, or an empty list)")

  return rows()
