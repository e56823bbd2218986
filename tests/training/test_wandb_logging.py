"""Weights & Biases logging (`logging.wandb=True`) through the launcher, in W&B's offline mode.

The offline run file W&B writes is read back record by record (LevelDB log framing around
W&B's own protobuf records) and compared with what the run wrote to metrics.jsonl and
eval.json: the same config, the same scalars at the same steps, and the BoN curve as a table.
"""

import glob
import json
import os
import struct
import sys

import pytest

from bonjax.training import metrics_writer
from launch import main

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402  pylint: disable=g-import-not-at-top

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

SMALL = ["--config.train.num_steps=2", "--config.train.batch_size=8",
         "--config.train.warmup_steps=1", "--config.train.log_every=1",
         "--config.task.num_train=16", "--config.task.num_test=8",
         "--config.eval.num_prompts=8", "--config.eval.prompt_batch_size=8",
         "--config.eval.num_samples=4", "--config.train.async_checkpoints=False"]

_BLOCK = 32768  # W&B's record framing (LevelDB log format): 32 KiB blocks, 7-byte headers.
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: str) -> list:
  """The protobuf records of an offline W&B run file (`run-<id>.wandb`)."""
  with open(path, "rb") as f:
    data = f.read()
  assert data[:4] == b":W&B"
  records, pos, pending = [], 7, b""
  while pos + 7 <= len(data):
    if _BLOCK - pos % _BLOCK < 7:  # A block's tail too short for a header is padding.
      pos += _BLOCK - pos % _BLOCK
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
    if kind in (_FULL, _FIRST):
      pending = chunk
    elif kind in (_MIDDLE, _LAST):
      pending += chunk
    if kind in (_FULL, _LAST):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      records.append(record)
  return records


def _history(records) -> dict[int, dict[str, object]]:
  """step -> {key: value} of the run's logged history."""
  out = {}
  for r in records:
    if r.WhichOneof("record_type") == "history":
      items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
               for i in r.history.item}
      out.setdefault(int(items.pop("_step")), {}).update(items)
  return out


@pytest.fixture
def offline(monkeypatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_DISABLE_GIT", "true")


def test_offline_run_logs_config_scalars_and_bon_curve(tmp_path, offline):
  workdir = str(tmp_path / "run")
  status = main.run(["launch.main", f"--workdir={workdir}", *SMALL,
                     "--config.logging.wandb=True", "--config.logging.wandb_project=bonjax-test",
                     "--config.logging.wandb_run_name=tiny-sft"])
  assert status == 0
  with open(os.path.join(workdir, metrics_writer.WANDB_ID_FILE), encoding="utf-8") as f:
    run_id = f.read().strip()
  (run_file,) = glob.glob(os.path.join(workdir, "wandb", f"offline-run-*-{run_id}",
                                       f"run-{run_id}.wandb"))
  records = wandb_records(run_file)

  (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
  assert (run.project, run.display_name, run.run_id) == ("bonjax-test", "tiny-sft", run_id)
  config = {i.key: json.loads(i.value_json) for i in run.config.update}
  assert config["train"]["num_steps"] == 2 and config["logging"]["wandb"] is True
  assert config["task"]["num_test"] == 8

  history = _history(records)
  rows = metrics_writer.read_metrics(workdir)
  assert sorted(history) == [1, 2]
  for row in rows:  # Every JSONL scalar, at its step, with its value.
    logged = history[row["step"]]
    for name, value in row.items():
      if name != "step":
        assert logged[name] == pytest.approx(value, rel=1e-12), name

  with open(os.path.join(workdir, "eval.json"), encoding="utf-8") as f:
    curve = json.load(f)["curve"]
  table_path = history[2]["eval/bon_curve/path"]
  with open(os.path.join(os.path.dirname(run_file), "files", table_path), encoding="utf-8") as f:
    table = json.load(f)
  columns, rows = metrics_writer.bon_curve_table(curve)
  assert table["columns"] == columns == ["k", "pass@k", "pass@k_stderr", "bon_acc@k",
                                         "bon_acc@k_stderr", "maj@k", "maj@k_stderr"]
  assert table["data"] == rows  # JSON keeps every float exactly.
  assert [row[0] for row in table["data"]] == [1, 2, 4]
  assert "eval/bon_curve_plot_table/path" in history[2]  # The line plot's data.


def test_missing_wandb_is_a_named_error_naming_the_extra(tmp_path, offline, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError.
  workdir = tmp_path / "run"
  status = main.run(["launch.main", f"--workdir={workdir}", *SMALL, "--config.logging.wandb=True"])
  assert status == 2
  assert ('error: logging.wandb=True: the wandb package is not installed; install the extra: '
          'pip install "bonjax[wandb]"') in capsys.readouterr().err
  assert not workdir.exists()


def test_bon_curve_table_columns_and_rows():
  curve = {"ks": [1, 2], "metrics": {"pass@k": {"mean": [0.25, 0.5], "stderr": [0.1, 0.2]},
                                     "maj@k": {"mean": [0.2, 0.3], "stderr": [None, None]}}}
  assert metrics_writer.bon_curve_table(curve) == (
      ["k", "pass@k", "pass@k_stderr", "maj@k", "maj@k_stderr"],
      [[1, 0.25, 0.1, 0.2, None], [2, 0.5, 0.2, 0.3, None]])
