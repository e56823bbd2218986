"""TFDS builders: array_record / parquet round trips through tfds.data_source, no TensorFlow."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bonjax.data import tfds_builders
from bonjax.data.feed import iterate_batches
from bonjax.data.loaders import load_dataset
from bonjax.data.row_errors import MalformedRowError, RowsSkippedWarning

tfds = pytest.importorskip("tensorflow_datasets")

ROWS = {
    "math": [
        {"problem": "p0 ü", "solution": r"$\boxed{\frac{1}{2}}$", "level": "Level 1",
         "type": "Algebra"},
        {"problem": "p1", "solution": r"$\boxed{3}$", "level": 4, "type": "Geometry"},
        {"problem": "p2", "solution": r"$\boxed{x^{2}}$", "level": "Level ?", "type": "Algebra"},
    ],
    "gsm8k": [{"question": f"q{i}", "answer": f"work\n#### {i}"} for i in range(5)],
    "mbpp": [{"task_id": i, "text": f"Write f{i}.", "code": f"def f{i}():\n  return {i}\n",
              "test_list": [f"assert f{i}() == {i}"], "test_setup_code": ""}
             for i in range(1, 4)],
    "humaneval": [{"task_id": f"T/{i}", "prompt": f"def g{i}():\n", "test":
                   f"def check(c):\n  assert c() == {i}\n", "canonical_solution":
                   f"  return {i}\n", "entry_point": f"g{i}"} for i in range(3)],
}


def write_rows(path: pathlib.Path, rows: list) -> pathlib.Path:
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


@pytest.mark.parametrize("dataset", sorted(ROWS))
def test_array_record_round_trip_returns_the_loaded_records(tmp_path, dataset):
  train = write_rows(tmp_path / "train.jsonl", ROWS[dataset])
  test = write_rows(tmp_path / "test.jsonl", ROWS[dataset][:1])
  out = tfds_builders.prepare_tfds(dataset, {"train": train, "test": test}, tmp_path / "tfds",
                                   on_error="raise")
  assert out == tmp_path / "tfds" / f"bonjax_{dataset}" / "1.0.0"
  assert any(p.name.startswith(f"bonjax_{dataset}-train.array_record") for p in out.iterdir())
  for split, path in [("train", train), ("test", test)]:
    source = tfds_builders.read_tfds(dataset, split, tmp_path / "tfds")
    expected = list(load_dataset(dataset, path, on_error="raise"))
    assert len(source) == len(expected)
    assert [source[i] for i in range(len(source))] == expected  # same records, file order
  assert "tensorflow" not in sys.modules


def test_parquet_round_trip_and_batched_reads(tmp_path):
  train = write_rows(tmp_path / "train.jsonl", ROWS["math"])
  tfds_builders.prepare_tfds("math", {"train": train}, tmp_path / "tfds",
                             file_format="parquet")
  out = tmp_path / "tfds" / "bonjax_math" / "1.0.0"
  assert any(".parquet-" in p.name for p in out.iterdir())
  source = tfds_builders.read_tfds("math", "train", tmp_path / "tfds")
  expected = list(load_dataset("math", train))
  assert source.__getitems__([2, 0]) == [expected[2], expected[0]]
  assert source[-1] == expected[-1]
  assert source[1].metadata["level"] == 4  # metadata keeps its JSON types
  with pytest.raises(IndexError):
    source[3]


def test_split_slicing(tmp_path):
  train = write_rows(tmp_path / "train.jsonl", ROWS["gsm8k"])
  tfds_builders.prepare_tfds("gsm8k", {"train": train}, tmp_path / "tfds")
  tail = tfds_builders.read_tfds("gsm8k", "train[2:]", tmp_path / "tfds")
  assert [e.answer for e in tail] == ["2", "3", "4"]


def test_skipped_rows_are_warned_and_recorded_in_the_dataset_metadata(tmp_path):
  path = tmp_path / "train.jsonl"
  path.write_text(json.dumps(ROWS["gsm8k"][0]) + "\n{broken\n" + json.dumps(ROWS["gsm8k"][1])
                  + "\n")
  with pytest.warns(RowsSkippedWarning, match=r"train.jsonl:2: bad_json"):
    tfds_builders.prepare_tfds("gsm8k", {"train": path}, tmp_path / "tfds")
  assert len(tfds_builders.read_tfds("gsm8k", "train", tmp_path / "tfds")) == 2
  summaries = tfds_builders.load_summaries("gsm8k", tmp_path / "tfds")
  assert summaries["train"]["rows_read"] == 3
  assert summaries["train"]["rows_kept"] == 2
  assert summaries["train"]["skipped_by_reason"] == {"bad_json": 1}
  assert summaries["train"]["problems"][0].startswith(f"{path}:2: bad_json")


def test_raise_mode_stops_the_build_with_file_and_line(tmp_path):
  path = tmp_path / "train.jsonl"
  path.write_text(json.dumps(ROWS["gsm8k"][0]) + "\n[]\n")
  with pytest.raises(MalformedRowError, match=r"train.jsonl:2: not_object"):
    tfds_builders.prepare_tfds("gsm8k", {"train": path}, tmp_path / "tfds", on_error="raise")


def test_existing_build_is_reused_unless_overwrite(tmp_path):
  first = write_rows(tmp_path / "a.jsonl", ROWS["gsm8k"][:2])
  second = write_rows(tmp_path / "b.jsonl", ROWS["gsm8k"][2:])
  data_dir = tmp_path / "tfds"
  tfds_builders.prepare_tfds("gsm8k", {"train": first}, data_dir)
  tfds_builders.prepare_tfds("gsm8k", {"train": second}, data_dir)
  assert [e.answer for e in tfds_builders.read_tfds("gsm8k", "train", data_dir)] == ["0", "1"]
  tfds_builders.prepare_tfds("gsm8k", {"train": second}, data_dir, overwrite=True)
  assert [e.answer for e in tfds_builders.read_tfds("gsm8k", "train", data_dir)] == [
      "2", "3", "4"]


def test_feed_over_tfds_source_matches_feed_over_loaded_list(tmp_path):
  train = write_rows(tmp_path / "train.jsonl", ROWS["gsm8k"])
  tfds_builders.prepare_tfds("gsm8k", {"train": train}, tmp_path / "tfds")
  source = tfds_builders.read_tfds("gsm8k", "train", tmp_path / "tfds")
  loaded = load_dataset("gsm8k", train)
  from_tfds = list(iterate_batches(source, seed=3, batch_size=2, start_step=4, num_steps=3))
  from_list = list(iterate_batches(loaded, seed=3, batch_size=2, start_step=4, num_steps=3))
  assert [b.examples for b in from_tfds] == [b.examples for b in from_list]
  np.testing.assert_array_equal(np.stack([b.indices for b in from_tfds]),
                                np.stack([b.indices for b in from_list]))


def test_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="file_format='tfrecord'"):
    tfds_builders.make_builder("gsm8k", tmp_path, file_format="tfrecord")
  with pytest.raises(ValueError, match="dataset='nope'"):
    tfds_builders.make_builder("nope", tmp_path)
  with pytest.raises(ValueError, match="split_paths is empty"):
    tfds_builders.prepare_tfds("gsm8k", {}, tmp_path / "tfds")


def test_missing_tfds_gives_an_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match=r"pip install 'tensorflow-datasets"):
    tfds_builders.import_tfds()


def test_prepare_and_read_never_import_tensorflow_and_tfds_is_imported_lazily(tmp_path):
  # A fresh interpreter, so modules imported by other tests do not count.
  write_rows(tmp_path / "train.jsonl", ROWS["mbpp"])
  script = textwrap.dedent(f"""
      import sys
      from bonjax.data import tfds_builders, loaders, feed
      assert "tensorflow_datasets" not in sys.modules, "tfds imported eagerly"
      tfds_builders.prepare_tfds("mbpp", {{"train": {str(tmp_path / "train.jsonl")!r}}},
                                 {str(tmp_path / "tfds")!r})
      source = tfds_builders.read_tfds("mbpp", "train", {str(tmp_path / "tfds")!r})
      assert [e.id for e in source] == ["mbpp/1", "mbpp/2", "mbpp/3"], list(source)
      assert "tensorflow" not in sys.modules, "TensorFlow was imported"
      print("OK")
  """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith("OK")
