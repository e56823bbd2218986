"""Tasks from data through the launcher: `launch.main` trains and evaluates on
task.name=humaneval and task.name=jsonl with each task.reward, and the learned-verifier
sequence (`launch.train_verifier` -> verifier.kind=learned -> BoN-RL-V) runs end to end.

Every run is the tiny byte-level model (model.preset=tiny-byte, tokenizer.name=byte) for 2
steps: these check the path (data -> sampler -> verifier -> objective -> evaluation), and the
reward values that the verifier's rules fix whatever the model writes.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from launch import main

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(REPO, "tests", "training", "task_data")

# The quickstart config turned into a 2-step jsonl run of the tiny byte-level model.
JSONL_RUN = [
    "--config.task.name=jsonl", "--config.task.split_field=split", "--config.task.num_test=8",
    "--config.task.num_train=16", "--config.task.template={prompt} A: ",
    "--config.model.preset=tiny-byte", "--config.tokenizer.name=byte",
    "--config.lengths.prompt_buckets=(80,)", "--config.lengths.completion_buckets=(8,)",
    "--config.algorithm=rl", "--config.train.num_steps=2", "--config.train.batch_size=8",
    "--config.train.warmup_steps=0", "--config.train.async_checkpoints=False",
    "--config.train.log_every=1",
    "--config.sampling.num_samples=2", "--config.sampling.max_new_tokens=8",
    "--config.eval.num_prompts=8", "--config.eval.num_samples=2",
    "--config.eval.max_new_tokens=8", "--config.eval.prompt_batch_size=8",
]


def launch(workdir, *args):
  status = main.run(["launch.main", f"--workdir={workdir}", *args])
  assert status == 0
  with open(os.path.join(workdir, "eval.json"), encoding="utf-8") as f:
    report = json.load(f)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    metrics = [json.loads(line) for line in f]
  return report, metrics


def eval_metrics(metrics):
  return next(m for m in metrics if "eval/pass@1" in m)


def check_statuses_cover_every_sample(metrics):
  final = eval_metrics(metrics)
  assert final["step"] == 2
  rates = sum(v for k, v in final.items() if k.startswith("eval/status_"))
  assert rates == pytest.approx(1.0, abs=1e-12)
  return final


def test_humaneval_trains_and_evaluates(tmp_path):
  # 8 training problems whose prompts (with the 8 held-out ones) fit 1,088 bytes: a smaller
  # prompt bucket than the full set's 1,536 keeps the test fast.
  report, metrics = launch(tmp_path / "he", "--config=experiments/humaneval_bon.py:bon_rlb_p,smoke",
                           "--config.task.num_train=8", "--config.lengths.prompt_buckets=(1088,)")
  final = check_statuses_cover_every_sample(metrics)
  assert report["step"] == 2 and report["curve"]["ks"] == [1, 2]
  # Random bytes after a HumanEval prompt never compile.
  assert final["eval/status_unparseable_rate"] == 1.0 and final["eval/mean_env_reward"] == 0.0


@pytest.mark.parametrize("reward, extra", [
    ("exact", []),
    ("code", ["--config.task.tests_field=tests", "--config.task.answer_field="]),
])
def test_jsonl_with_an_answer_or_test_reward(tmp_path, reward, extra):
  data = "code_small.jsonl" if reward == "code" else "math_small.jsonl"
  _, metrics = launch(tmp_path / reward, *JSONL_RUN, f"--config.task.reward={reward}",
                      f"--config.task.path={os.path.join(DATA, data)}", *extra)
  final = check_statuses_cover_every_sample(metrics)
  assert 0.0 <= final["eval/mean_env_reward"] <= 1.0
  assert [m["step"] for m in metrics if "loss" in m] == [1, 2]


def test_jsonl_with_a_user_reward_function(tmp_path):
  # 0.5 for every even position, None (unscored) for every odd one: exact rates and rewards.
  _, metrics = launch(
      tmp_path / "user", *JSONL_RUN, f"--config.task.path={os.path.join(DATA, 'math_small.jsonl')}",
      "--config.task.reward=python:tests.training.task_data.user_rewards:every_other_unscored")
  final = check_statuses_cover_every_sample(metrics)
  assert final["eval/status_unscored_rate"] == 0.5 and final["eval/status_ok_rate"] == 0.5
  assert final["eval/mean_env_reward"] == 0.25 and final["eval/pass@1"] == 0.0
  train = [m for m in metrics if "loss" in m]
  assert [m["unscored_rate"] for m in train] == [0.5, 0.5]
  assert [m["reward"] for m in train] == [0.25, 0.25]  # The continuous reward is trained on.


def test_learned_verifier_sequence_on_the_jsonl_task(tmp_path):
  config = "--config=experiments/math_jsonl_bon.py:{},smoke"
  policy, orm, run = tmp_path / "sft", tmp_path / "orm", tmp_path / "bon_rl_v"
  launch(policy, config.format("sft"))
  subprocess.run([sys.executable, "-m", "launch.train_verifier", config.format("verifier"),
                  f"--config.init_from={policy}", f"--workdir={orm}"],
                 cwd=REPO, check=True, capture_output=True, text=True)
  with open(orm / "verifier_report.json", encoding="utf-8") as f:
    orm_report = json.load(f)
  assert orm_report["num_train_pairs"] == 16 and orm_report["policy"] == str(policy)
  _, metrics = launch(run, config.format("bon_rl_v"), f"--config.init_from={policy}",
                      f"--config.verifier.checkpoint={orm}")
  train = [m for m in metrics if "loss" in m]
  # The -V objective trains on the reward model's P(correct), not on the 0/1 math grade.
  assert all(0.0 < m["score"] < 1.0 and m["score"] != m["reward"] for m in train)
  check_statuses_cover_every_sample(metrics)


def test_malformed_row_stops_the_launcher_before_anything_runs(tmp_path, capsys):
  data = tmp_path / "bad.jsonl"
  data.write_text('{"prompt": "p", "answer": "1", "split": "train"}\n'
                  '{"prompt": "q", "split": "test"}\n')
  workdir = tmp_path / "run"
  status = main.run(["launch.main", f"--workdir={workdir}", *JSONL_RUN,
                     f"--config.task.path={data}", "--config.task.reward=exact"])
  assert status == 2
  assert (f"{data}:2: missing_field: required field 'answer' is absent"
          in capsys.readouterr().err)
  assert not workdir.exists()


@pytest.mark.parametrize("module, args", [
    ("humaneval_bon", ["bon_rlb_p", "bon_rl_s", "bon_rl_s,smoke"]),
    ("math_jsonl_bon", ["sft", "bon_rlb", "bon_rl_s", "bon_rl_v", "verifier", "bon_rlb,smoke"]),
])
def test_example_configs_are_valid(module, args):
  import importlib
  from bonjax.training.config_validation import validate_config
  experiment = importlib.import_module(f"experiments.{module}")
  for arg in args:
    config = experiment.get_config(arg)
    validate_config(config)
    if arg.startswith("verifier"):
      from bonjax.training import reward_model
      reward_model.check_config(config)
    assert config.eval.num_prompts <= config.task.num_test
    assert config.lengths.completion_buckets[0] >= config.sampling.max_new_tokens
  real = experiment.get_config(args[0])
  assert real.init_from == "pretrained:smollm2-135m" and real.model.preset == "smollm2-135m"
  with pytest.raises(ValueError, match="expected <"):
    experiment.get_config("nope")


def test_protocol_on_the_jsonl_task_from_the_sweep_command(tmp_path):
  """experiments/math_jsonl_protocol.py: the comparison protocol on MATH-format data (the real
  model's protocol is the same config at another scale), through `launch.sweep`."""
  root = tmp_path / "protocol"
  subprocess.run([sys.executable, "-m", "launch.sweep",
                  "--protocol=experiments/math_jsonl_protocol.py:smoke", f"--root={root}",
                  f"--report_dir={root}"], cwd=REPO, check=True, capture_output=True, text=True)
  text = (root / "results.md").read_text(encoding="utf-8")
  assert text.startswith("# BoN-aware vs BoN-unaware fine-tuning on MATH-format data (smoke")
  with open(root / "verifier" / "verifier_report.json", encoding="utf-8") as f:
    assert json.load(f)["policy"] == str(root / "warm_start")  # The protocol's own start.
  for arm in ("rl_s", "bon_rl_v", "pkpo"):
    with open(root / "arms" / arm / "seed_0" / "heldout_T0.8.json", encoding="utf-8") as f:
      report = json.load(f)
    assert report["num_prompts"] == 8 and report["num_samples"] == 4
    assert report["temperature"] == 0.8
    assert re.search(rf"^\| {arm} \| 1 \| ", text, re.M)
  assert "## Differences against rl_s at T = 0.8" in text
