"""The sweep's experiment names, run directories and comparison table."""

import pytest
from absl import flags

from launch import sweep


@pytest.fixture(autouse=True)
def parsed_flags():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def test_experiment_names_take_a_config_argument():
  config = sweep.experiment_config("smollm2_finetune:rl_s", 3)
  assert (config.algorithm, config.seed) == ("rl", 3)
  assert sweep.experiment_config("bon_rl_s", 1).objective.estimator == "selected_mean"
  assert sweep.run_dir("smollm2_finetune:rl_s", 3).endswith("smollm2_finetune_rl_s/seed_3")


def report(pass_at, kl):
  ks = [1, 2, 4]
  metric = lambda values: {"mean": values}
  return {"curve": {"ks": ks, "metrics": {"pass@k": metric(pass_at), "bon_acc@k": metric(pass_at),
                                           "maj@k": metric(pass_at)}},
          "diversity": {"kl_to_reference": kl, "entropy_per_token": 1.0,
                        "distinct_answers_per_prompt": 2.0}}


def test_summary_row_is_mean_and_std_over_seeds():
  row = sweep.summary_row([report([0.1, 0.2, 0.3], 1.0), report([0.3, 0.4, 0.5], 3.0)], 4)
  assert row["pass@1"] == pytest.approx((0.2, 0.1))
  assert row["pass@4"] == pytest.approx((0.4, 0.1))
  assert row["KL to start"] == pytest.approx((2.0, 1.0))
  single = sweep.summary_row([report([0.1, 0.2, 0.3], 1.0)], 4)
  table = sweep.markdown_table({"rl_s": row, "bon_rl_s": single}, {"rl_s": 2, "bon_rl_s": 1})
  assert "| rl_s | 2 | 0.200 ± 0.100 | 0.400 ± 0.100 |" in table
  assert "| bon_rl_s | 1 | 0.100 | 0.300 |" in table
