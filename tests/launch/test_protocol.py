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
from launch import protocol_figures
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
  paths = protocol_figures.write_heatmaps(summary, root, "start")
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


def test_matched_kl_interpolates_the_reference_curve_per_seed(tmp_path):
  """vbon's last dev point (KL 0.3, pass@8 0.5) against rl_kl's curve through (0.2, 0.4) and
  (0.4, 0.6) of the same seed: 0.5 at KL 0.3; seed 1's KL 0.9 is beyond rl_kl's range."""
  protocol = arith3_protocol.get_config("tiny")
  protocol.arms, protocol.seeds = ("rl_kl", "vbon"), (0, 1)
  curves = {("vbon", 0): [(20, 0.1, 0.45), (40, 0.3, 0.5)],
            ("rl_kl", 0): [(20, 0.2, 0.4), (40, 0.4, 0.6)],
            ("vbon", 1): [(40, 0.9, 0.7)], ("rl_kl", 1): [(40, 0.5, 0.6)]}
  for (arm, seed), points in curves.items():
    workdir = protocol_run.arm_dir(str(tmp_path), arm, seed)
    os.makedirs(workdir)
    with open(os.path.join(workdir, "metrics.jsonl"), "w", encoding="utf-8") as f:
      f.write(json.dumps({"step": 10, "loss": 1.0}) + "\n")
      for step, kl, value in points:
        f.write(json.dumps({"step": step, "eval/pass@1": value / 2, "eval/pass@8": value,
                            "eval/kl_to_reference": kl}) + "\n")
  data = protocol_report.ProtocolData(protocol, str(tmp_path))
  row = protocol_report.matched_kl_table(data, "pass@8").splitlines()[-1].split(" | ")
  assert row[0] == "| vbon vs rl_kl"
  assert row[1] == "0.600 ± 0.300" and row[2] == "0.600 ± 0.100"  # KL, own pass@8 (2 seeds)
  assert row[3] == "0.500" and row[4] == "1 of 2 |"
  frontier = protocol_report.kl_frontiers(data, "pass@8")  # Step 40, the one both seeds share.
  np.testing.assert_allclose(frontier["rl_kl"]["kl"], [0.45])
  np.testing.assert_allclose(frontier["rl_kl"]["pass@8"], [0.6])


def test_sigterm_stops_the_protocol_at_a_saved_step(tmp_path, monkeypatch):
  """A preempted training run stops the whole protocol (it must not go on to the next stage
  or arm, as a TPU VM being reclaimed would not wait); the checkpoint of the step in progress
  is there for the rerun."""
  import signal
  from bonjax.training import sft
  real = sft.supervised_batch

  def batch(setup, step):
    if step + 1 == 3:
      os.kill(os.getpid(), signal.SIGTERM)  # Caught by the training loop's handler.
    return real(setup, step)

  monkeypatch.setattr(sft, "supervised_batch", batch)
  root = str(tmp_path)
  with pytest.raises(protocol_run.Preempted, match="saved step 3; rerun the same command"):
    protocol_run.run(arith3_protocol.get_config("tiny"), root)
  assert not os.path.exists(os.path.join(root, "arms"))  # No later stage started.
  assert os.listdir(os.path.join(protocol_run.warm_start_dir(root), "checkpoints")) == ["3"]
  assert json.load(open(os.path.join(root, "timings.json")))["warm_start"] > 0


def test_bit_identical_parameters_share_one_evaluation(tiny_protocol, tmp_path):
  """A model with pkpo's exact parameters gets pkpo's evaluation copied, and evaluating it
  for real gives exactly the copied per-prompt arrays."""
  import shutil
  from launch.protocol_run import build_run_setup
  protocol, fixture_root, _ = tiny_protocol
  root = str(tmp_path / "root")
  shutil.copytree(fixture_root, root)
  twin = protocol_run.arm_dir(root, "loo_passk", 0)
  shutil.copytree(protocol_run.arm_dir(root, "pkpo", 0), twin)
  for name in os.listdir(twin):
    if name.startswith("heldout_"):
      os.remove(os.path.join(twin, name))
  protocol = arith3_protocol.get_config("tiny")
  protocol.arms = protocol.arms + ("loo_passk",)
  protocol_run.run_heldout(protocol, root)
  with open(os.path.join(root, protocol_run.REUSED), encoding="utf-8") as f:
    assert json.load(f) == {f"arms/loo_passk/seed_0/heldout_T{t:g}": "arms/pkpo/seed_0"
                            for t in protocol.eval.temperatures}
  setup = build_run_setup(protocol_run.heldout_config(protocol, root, 1.0))
  params, step = protocol_run.loop.restore_params(setup, twin)
  start, _ = protocol_run.loop.restore_params(setup, protocol_run.warm_start_dir(root))
  fresh = evaluation.evaluate_bon(setup, params, step, progress=False, reference_params=start)
  copied = np.load(os.path.join(twin, "heldout_T1.npz"))
  for key, value in fresh[evaluation.PER_PROMPT].items():
    np.testing.assert_array_equal(copied[key], value, err_msg=key)
  text = protocol_report.build_markdown(protocol, root, root, command="c")
  assert "- arms/pkpo/seed_0: also arms/loo_passk/seed_0/heldout_T0.7" in text
