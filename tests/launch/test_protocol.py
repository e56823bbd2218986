"""The comparison protocol end to end at its tiny scale: warm start, arms, paired held-out
evaluations, co-scaling grid and the report, whose numbers are checked against the per-prompt
arrays the evaluations saved."""

import json
import os
import re

import jax
import numpy as np
import pytest

from bonjax.bon import metrics, paired_stats
from bonjax.training import evaluation
from experiments import arith3_arms, arith3_protocol
from launch import coscaling as coscaling_launcher
from launch import protocol_markdown, protocol_report, protocol_run

_INTERVAL = r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]"


@pytest.fixture(scope="module")
def tiny_protocol(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("protocol"))
  protocol = arith3_protocol.get_config("tiny")
  protocol_run.run(protocol, root)
  path = protocol_report.write_report(protocol, root, root, command="python -m launch.sweep "
                                      "--protocol=experiments/arith3_protocol.py:tiny")
  with open(path, encoding="utf-8") as f:
    return protocol, root, f.read()


def test_report_has_difference_tables_with_intervals(tiny_protocol):
  protocol, root, text = tiny_protocol
  for t in protocol.eval.temperatures:
    assert f"## Differences against rl_s at T = {t:g}" in text
  assert "1 seeds per arm, 16 prompts x 8 samples" in text
  row = re.search(r"^\| pkpo \| (.*) \|$", text.split("## Differences against rl_s at T = 1")[1],
                  re.M).group(1).split(" | ")
  assert len(row) == 4 and all(re.fullmatch(r"\**" + _INTERVAL + r"\**", c) for c in row)
  for png in ("bon_curves_pass.png", "training_curves.png", "coscaling_start_pass.png"):
    assert os.path.getsize(os.path.join(root, png)) > 1000
  assert "Measured wall time:" in text and "| total |" in text
  assert "exp(a·N^b)" in text


def test_reported_difference_equals_the_saved_per_prompt_arrays(tiny_protocol):
  protocol, root, text = tiny_protocol
  load = lambda arm: np.load(os.path.join(protocol_run.arm_dir(root, arm, 0), "heldout_T1.npz"))
  correct = {arm: load(arm)["correct"] for arm in ("rl_s", "pkpo")}
  assert correct["rl_s"].shape == (16, 8)
  k = protocol.eval.max_k
  diff = (metrics.pass_at_k_from_correct(correct["pkpo"], k).mean()
          - metrics.pass_at_k_from_correct(correct["rl_s"], k).mean())
  section = text.split("## Differences against rl_s at T = 1")[1]
  cell = re.search(r"^\| pkpo \| (.*) \|$", section, re.M).group(1).split(" | ")[1]
  assert cell.strip("*").startswith(f"{diff:+.3f}")


def test_every_model_is_evaluated_with_the_same_random_numbers(tiny_protocol):
  # Paired evaluation: the prompt set and the sample keys are the same for every model, so
  # a model identical to the start would reproduce the start's samples exactly.
  protocol, root, _ = tiny_protocol
  start = np.load(os.path.join(root, "warm_start", "heldout_T1.npz"))
  key_a, step_a = evaluation.eval_stream(seed=0, step=7, common_seed=3)
  key_b, step_b = evaluation.eval_stream(seed=5, step=9, common_seed=3)
  assert step_a == step_b == 0
  assert (jax.random.key_data(key_a) == jax.random.key_data(key_b)).all()
  _, step_c = evaluation.eval_stream(seed=0, step=7, common_seed=-1)
  assert step_c == 7
  assert start["answer_ids"].shape == start["correct"].shape == (16, 8)


def test_coscaling_grid_covers_every_temperature(tiny_protocol):
  protocol, root, _ = tiny_protocol
  with open(os.path.join(root, "coscaling", "start", "coscaling.json"), encoding="utf-8") as f:
    summary = json.load(f)
  assert summary["temperatures"] == list(protocol.coscaling.temperatures)
  assert summary["ns"] == [1, 2, 4, 8]
  assert len(summary["best_temperature"]["pass@k"]) == 4
  # The standalone launcher's heatmaps from the same summary.
  paths = coscaling_launcher.write_heatmaps(summary, root, "start")
  assert all(os.path.getsize(p) > 1000 for p in paths)


def test_reading_survives_regeneration():
  old = f"x\n{protocol_markdown.READING_START}\nmy reading\n{protocol_markdown.READING_END}\n"
  new = f"y\n{protocol_markdown.READING_START}\n(none)\n{protocol_markdown.READING_END}\n"
  assert protocol_markdown.keep_reading(new, old) == (
      f"y\n{protocol_markdown.READING_START}\nmy reading\n{protocol_markdown.READING_END}\n")
  assert protocol_markdown.keep_reading(new, None) == new


def test_difference_cells_and_findings():
  d = paired_stats.paired_difference(np.full(4, 0.5), np.full(4, 0.25), 20).to_dict()
  assert protocol_markdown.difference_cell(d) == "**+0.250 [+0.250, +0.250]**"
  lines = protocol_markdown.findings({"pkpo": {"pass@k": {8: d}}}, "rl_s")
  assert lines == ["- **pkpo**: above rl_s at pass@8 (+0.250)"]


def test_every_arm_config_builds_and_shares_the_budget():
  budgets = set()
  for arm in arith3_arms.ARMS:
    c = arith3_arms.get_config(arm)
    budgets.add((c.train.batch_size, c.sampling.num_samples, c.train.num_steps))
  assert budgets == {(64, arith3_arms.TARGET_N, 100)}
  full = arith3_protocol.get_config("two_hours")
  assert len(full.seeds) >= 3 and full.eval.num_prompts >= 1000
  assert full.eval.num_samples >= 128 and full.eval.max_k >= 32
