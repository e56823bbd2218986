"""BoN curves: values equal the per-metric functions, JSON round-trips, the PNG is written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bonjax.bon import curves, metrics


def _data(B=4, n=6, seed=0):
  rng = np.random.default_rng(seed)
  correct = rng.random((B, n)) < 0.4
  scores = rng.integers(0, 3, (B, n)).astype(float)
  answers = [[None if u == 0 else str(u) for u in row] for row in rng.integers(0, 4, (B, n))]
  rewards = rng.random((B, n))
  return correct, scores, answers, rewards


def test_default_ks():
  assert curves.default_ks(1) == [1]
  assert curves.default_ks(8) == [1, 2, 4, 8]
  assert curves.default_ks(12) == [1, 2, 4, 8, 12]
  assert curves.default_ks(200) == [1, 2, 4, 8, 16, 32, 64, 128, 200]
  with pytest.raises(ValueError, match="n=0"):
    curves.default_ks(0)


def test_bon_curve_values_match_metrics():
  correct, scores, answers, rewards = _data()
  curve = curves.bon_curve(correct, scores, answers, rewards=rewards)
  assert curve["ks"] == [1, 2, 4, 6]
  assert (curve["num_prompts"], curve["num_samples"], curve["selection"]) == (4, 6, "verifier")
  assert sorted(curve["metrics"]) == ["bon_acc@k", "maj@k", "max@k", "pass@k"]
  for i, k in enumerate(curve["ks"]):
    per_prompt = {
        "pass@k": metrics.pass_at_k_from_correct(correct, k),
        "bon_acc@k": metrics.bon_accuracy_at_k(scores, correct, k),
        "maj@k": np.array([metrics.maj_at_k(a, c, k) for a, c in zip(answers, correct)]),
        "max@k": metrics.max_at_k(rewards, k),
    }
    for name, values in per_prompt.items():
      assert curve["metrics"][name]["mean"][i] == pytest.approx(values.mean(), abs=1e-15)
      assert curve["metrics"][name]["stderr"][i] == pytest.approx(
          values.std(ddof=1) / 2.0, abs=1e-15)
  assert curve["mean_reward"]["mean"] == pytest.approx(rewards.mean(), abs=1e-15)


def test_oracle_selection_and_optional_metrics():
  correct, _, _, _ = _data(B=3, n=5, seed=1)
  curve = curves.bon_curve(correct, ks=[1, 3, 5])
  assert curve["selection"] == "oracle"
  assert sorted(curve["metrics"]) == ["bon_acc@k", "pass@k"]
  np.testing.assert_allclose(curve["metrics"]["bon_acc@k"]["mean"],
                             curve["metrics"]["pass@k"]["mean"], atol=1e-15)
  assert curve["mean_reward"]["mean"] == pytest.approx(correct.mean(), abs=1e-15)
  # pass@1 is the mean correctness.
  assert curve["metrics"]["pass@k"]["mean"][0] == pytest.approx(correct.mean(), abs=1e-15)


def test_single_prompt_has_no_stderr():
  curve = curves.bon_curve([[1, 0, 0, 1]], scores=[[0.1, 0.9, 0.2, 0.3]])
  assert curve["metrics"]["pass@k"]["stderr"] == [None, None, None]
  assert curve["metrics"]["bon_acc@k"]["mean"] == pytest.approx([0.5, 1 / 3, 0.0])
  assert curve["mean_reward"] == {"mean": 0.5, "stderr": None}


def test_bon_curve_input_errors():
  correct, scores, answers, _ = _data()
  with pytest.raises(ValueError, match="ks contains 7"):
    curves.bon_curve(correct, ks=[1, 7])
  with pytest.raises(ValueError, match="scores has shape"):
    curves.bon_curve(correct, scores[:, :3])
  with pytest.raises(ValueError, match="answers"):
    curves.bon_curve(correct, answers=answers[:2])
  with pytest.raises(ValueError, match="correct has shape"):
    curves.bon_curve(np.zeros(5))


def test_curve_json_round_trip(tmp_path):
  correct, scores, answers, rewards = _data()
  curve = curves.bon_curve(correct, scores, answers, rewards=rewards)
  path = tmp_path / "sub" / "curve.json"
  curves.write_curve_json(curve, path)
  assert curves.read_curve_json(path) == curve
  assert json.loads(path.read_text()) == curve
  single = curves.bon_curve([[1, 0]])
  curves.write_curve_json(single, path)
  assert curves.read_curve_json(path) == single


def test_plot_writes_png(tmp_path):
  correct, scores, answers, rewards = _data()
  labelled = {
      "base": curves.bon_curve(correct, scores, answers, rewards=rewards),
      "tuned": curves.bon_curve(correct[:, ::-1], ks=[1, 2, 3, 6]),
      "one prompt": curves.bon_curve(correct[:1]),
  }
  path = tmp_path / "plots" / "bon.png"
  curves.plot_bon_curve(labelled, path, title="test curves")
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  assert len(data) > 10_000
  with pytest.raises(ValueError, match="curves"):
    curves.plot_bon_curve({}, tmp_path / "empty.png")
