"""TFDS builders for the local public-format datasets, readable without TensorFlow.

The builders write `array_record` (default) or `parquet` shards, the two formats that
`tfds.data_source` reads with random access and no TensorFlow (`tfds.load` / `as_dataset`
need TensorFlow and are not used here). `tensorflow-datasets` is an optional dependency,
imported only when a function of this module is called.

    path = prepare_tfds("gsm8k", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
                        data_dir="/data/tfds")
    train = read_tfds("gsm8k", "train", data_dir="/data/tfds")   # Sequence[TaskExample]

Each builder is registered in TFDS as `bonjax_<format>` (e.g. `bonjax_math`), keeps file order
(shuffling disabled, so index i is the i-th kept row), and stores each split's load summary
(rows read, kept, skipped by reason) in the dataset's `metadata.json`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import pathlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from bonjax.data.example import TaskExample
from bonjax.data.formats import ROW_PARSERS
from bonjax.data.json_rows import PathLike
from bonjax.data.loaders import load_format
from bonjax.data.row_errors import check_on_error

TFDS_NAME_PREFIX = "bonjax_"
FILE_FORMATS = ("array_record", "parquet")
BUILDER_VERSION = "1.0.0"
# Format -> module that TFDS needs to write and read it.
_FORMAT_MODULES = {"array_record": "array_record", "parquet": "pyarrow"}
_OPTIONAL_TEXT_FIELDS = ("answer", "tests", "entry_point")
_INSTALL_HINT = ("TFDS builders need the optional packages `tensorflow-datasets` and "
                 "`array_record` (or `pyarrow` for parquet): pip install "
                 "'tensorflow-datasets>=4.9.4' 'array_record>=0.5'. TensorFlow itself is not "
                 "needed.")


def import_tfds() -> Any:
  """Imports tensorflow_datasets, or raises ImportError saying what to install."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(_INSTALL_HINT) from e
  return tfds


def _check_file_format(file_format: str) -> None:
  if file_format not in FILE_FORMATS:
    raise ValueError(f"file_format={file_format!r}: must be one of {FILE_FORMATS} (formats "
                     "tfds.data_source reads without TensorFlow)")
  module = _FORMAT_MODULES[file_format]
  if importlib.util.find_spec(module) is None:
    raise ImportError(f"file_format={file_format!r} needs the `{module}` package: "
                      f"pip install {module}")


def tfds_name(dataset: str) -> str:
  """TFDS registry name of the builder for `dataset` (e.g. "math" -> "bonjax_math")."""
  return TFDS_NAME_PREFIX + dataset


def example_to_record(example: TaskExample) -> dict[str, Any]:
  """Flattens an example into the builders' feature dict (None -> "" plus a has_ flag).

  Raises:
    TypeError: metadata is not JSON-serialisable.
  """
  record = {"id": example.id, "prompt": example.prompt,
            "metadata_json": json.dumps(dict(example.metadata), sort_keys=True)}
  for field in _OPTIONAL_TEXT_FIELDS:
    value = getattr(example, field)
    record[field] = "" if value is None else value
    record[f"has_{field}"] = value is not None
  return record


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def record_to_example(record: Mapping[str, Any]) -> TaskExample:
  """Inverse of `example_to_record` for a record read back from TFDS (text as bytes)."""
  optional = {field: _text(record[field]) if bool(record[f"has_{field}"]) else None
              for field in _OPTIONAL_TEXT_FIELDS}
  return TaskExample(id=_text(record["id"]), prompt=_text(record["prompt"]),
                     metadata=json.loads(_text(record["metadata_json"])), **optional)


def _features(tfds: Any) -> Any:
  spec = {"id": tfds.features.Text(), "prompt": tfds.features.Text(),
          "metadata_json": tfds.features.Text()}
  for field in _OPTIONAL_TEXT_FIELDS:
    spec[field] = tfds.features.Text()
    spec[f"has_{field}"] = tfds.features.Scalar(dtype=np.bool_)
  return tfds.features.FeaturesDict(spec)


@functools.cache
def builder_classes() -> dict[str, type]:
  """Defines (once per process) and returns the builder class of each format.

  Defining the classes registers them with TFDS, so `tfds.builder("bonjax_math", ...)` and
  `tfds.data_source(...)` find them afterwards.

  Returns:
    format name -> GeneratorBasedBuilder subclass.
  """
  tfds = import_tfds()

  class TaskExampleBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Builds splits of TaskExample records from local public-format files."""

    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = {BUILDER_VERSION: "TaskExample records from local JSON/JSONL files."}
    FORMAT = ""
    # These builders download nothing, so they have no checksums file beside their code; a
    # None code path tells TFDS so and skips its package-path lookup, which needs the
    # undeclared `importlib_resources` module for packages installed in editable mode.
    code_path = None

    def __init__(self, *, split_paths: Mapping[str, PathLike | Sequence[PathLike]] | None = None,
                 on_error: str = "skip", **kwargs: Any):
      check_on_error(on_error)
      self._split_paths = dict(split_paths or {})
      self._on_error = on_error
      super().__init__(**kwargs)

    def _info(self) -> Any:
      return tfds.core.DatasetInfo(
          builder=self, description=f"{self.FORMAT} tasks as bonjax TaskExample records.",
          features=_features(tfds), disable_shuffling=True, metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict]]]:
      del dl_manager  # local files only
      if not self._split_paths:
        raise ValueError(f"{self.name}: split_paths is empty; pass e.g. "
                         "split_paths={'train': 'train.jsonl'} to build the dataset")
      return {split: self._generate_examples(split, paths)
              for split, paths in self._split_paths.items()}

    def _generate_examples(self, split: str,
                           paths: PathLike | Sequence[PathLike]) -> Iterator[tuple[int, dict]]:
      loaded = load_format(self.FORMAT, paths, on_error=self._on_error)
      summary = loaded.summary
      self.info.metadata[f"{split}_load_summary"] = {
          "rows_read": summary.rows_read, "rows_kept": summary.rows_kept,
          "skipped_by_reason": dict(summary.skipped_by_reason),
          "problems": [str(p) for p in summary.problems]}
      for index, example in enumerate(loaded):
        yield index, example_to_record(example)

  classes = {}
  for dataset in ROW_PARSERS:
    class_name = "Bonjax" + dataset.capitalize()
    classes[dataset] = type(class_name, (TaskExampleBuilder,),
                            {"name": tfds_name(dataset), "FORMAT": dataset,
                             "__module__": __name__,
                             "__doc__": f"TFDS builder for {dataset} TaskExample records."})
  return classes


def make_builder(dataset: str, data_dir: PathLike, *,
                 split_paths: Mapping[str, PathLike | Sequence[PathLike]] | None = None,
                 file_format: str = "array_record", on_error: str = "skip") -> Any:
  """Instantiates the TFDS builder of `dataset`.

  Args:
    dataset: a format name ("math", "gsm8k", "mbpp", "humaneval").
    data_dir: TFDS data directory (the builder writes to <data_dir>/bonjax_<dataset>/<version>).
    split_paths: split name -> files/directories to load; needed only to prepare.
    file_format: "array_record" or "parquet".
    on_error: "skip" or "raise", applied to malformed rows while preparing.

  Returns:
    a `tfds.core.GeneratorBasedBuilder`.
  """
  if dataset not in ROW_PARSERS:
    raise ValueError(f"dataset={dataset!r}: unknown format; known: {sorted(ROW_PARSERS)}")
  _check_file_format(file_format)
  builder_cls = builder_classes()[dataset]
  return builder_cls(data_dir=os.fspath(data_dir), split_paths=split_paths,
                     file_format=file_format, on_error=on_error)


def prepare_tfds(dataset: str, split_paths: Mapping[str, PathLike | Sequence[PathLike]],
                 data_dir: PathLike, *, file_format: str = "array_record",
                 on_error: str = "skip", overwrite: bool = False) -> pathlib.Path:
  """Builds the TFDS dataset of `dataset` from local files.

  Args:
    dataset: a format name.
    split_paths: split name -> files/directories, e.g. {"train": "train.jsonl"}.
    data_dir: TFDS data directory.
    file_format: "array_record" (default) or "parquet".
    on_error: "skip" or "raise" for malformed rows (see `load_format`).
    overwrite: rebuild even if this version was already prepared in `data_dir` (otherwise an
      existing build is reused as is, whatever `split_paths` says).

  Returns:
    the directory holding the prepared version (dataset_info.json and the shards).
  """
  tfds = import_tfds()
  builder = make_builder(dataset, data_dir, split_paths=split_paths, file_format=file_format,
                         on_error=on_error)
  mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(download_mode=mode))
  return pathlib.Path(os.fspath(builder.data_dir))


class TfdsExampleSource(Sequence[TaskExample]):
  """Random-access TaskExample view of a TFDS data source (array_record or parquet)."""

  def __init__(self, data_source: Any):
    self._source = data_source

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> TaskExample:  # type: ignore[override]
    if not isinstance(index, int):
      raise TypeError(f"index must be an int, got {type(index).__name__}")
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} examples")
    return record_to_example(self._source[index])

  def __getitems__(self, indices: Sequence[int]) -> list[TaskExample]:
    """Batched read (one call into the underlying source)."""
    return [record_to_example(r) for r in self._source.__getitems__([int(i) for i in indices])]


def read_tfds(dataset: str, split: str, data_dir: PathLike) -> TfdsExampleSource:
  """Opens a prepared split through `tfds.data_source` (no TensorFlow).

  Args:
    dataset: a format name.
    split: split name, or any TFDS split expression ("train[:10]").
    data_dir: the TFDS data directory given to `prepare_tfds`.

  Returns:
    a random-access sequence of TaskExample in file order.
  """
  tfds = import_tfds()
  builder_classes()  # registers the bonjax_* names with TFDS
  source = tfds.data_source(tfds_name(dataset), split=split, data_dir=os.fspath(data_dir),
                            download=False)
  return TfdsExampleSource(source)


def load_summaries(dataset: str, data_dir: PathLike) -> dict[str, Any]:
  """The load summaries recorded while preparing `dataset` in `data_dir`.

  Returns:
    split -> {"rows_read", "rows_kept", "skipped_by_reason", "problems"}.
  """
  tfds = import_tfds()
  version_dir = pathlib.Path(data_dir) / tfds_name(dataset) / BUILDER_VERSION
  metadata = tfds.builder_from_directory(os.fspath(version_dir)).info.metadata or {}
  suffix = "_load_summary"
  return {key[:-len(suffix)]: value for key, value in metadata.items() if key.endswith(suffix)}
