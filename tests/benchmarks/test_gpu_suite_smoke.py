"""The GPU benchmark suite's code runs on CPU at tiny sizes (a smoke test: no timing asserts)."""

from __future__ import annotations

import json

import jax
import pytest

from benchmarks import gpu_suite

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def test_suite_writes_every_case_with_device_and_settings(tmp_path):
  out = tmp_path / "suite.json"
  cases = [("train", "tiny", 2, 16, 4), ("sampler", "tiny", 2, 4)]
  gpu_suite.run_suite(cases, "float32", repeats=1, out=str(out))
  results = json.loads(out.read_text())
  assert results["device"]["backend"] == jax.default_backend() and results["device"]["jax"]
  assert results["settings"]["cases"] == [list(c) for c in cases]
  (train,), (sample,) = results["train"], results["sampler"]
  assert "error" not in train and "error" not in sample, (train, sample)
  assert (train["preset"], train["batch"], train["seq_len"], train["lora_rank"]) == (
      "tiny", 2, 16, 4)
  # The default knobs a run gets: remat "auto" -> "none" (the tiny model fits anywhere),
  # 1024-token chunks.
  assert (train["remat"], train["logits_chunk"]) == ("none", 1024)
  assert train["tokens_s"] > 0 and train["xla_temp_bytes"] > 0
  assert (sample["N"], sample["L"]) == (2, 4) and sample["tokens_s"] > 0


def test_a_failing_case_is_recorded_and_the_suite_goes_on(tmp_path):
  row = gpu_suite._guarded(lambda: gpu_suite.train_case("no-such-preset", 1, 8, 0, "float32",
                                                        1.0, 1), {"preset": "no-such-preset"})
  assert row["preset"] == "no-such-preset" and "KeyError" in row["error"]
