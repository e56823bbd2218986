"""Tasks read from data (task.name="jsonl" / "humaneval"): fields, splits, malformed rows and
each reward (math, exact, code, python:), without training."""

import json
import logging
import os

import pytest

from bonjax.data.row_errors import RowsSkippedWarning
from bonjax.training.tasks import build_task
from bonjax.training.tasks.splits import seeded_split
from bonjax.verifiers.base import Status
from bonjax.verifiers.exact_match import ExactMatchVerifier, normalize_text
from bonjax.verifiers.user_reward import UserRewardVerifier
from experiments import quickstart

DATA = os.path.join(os.path.dirname(__file__), "task_data")
MATH = os.path.join(DATA, "math_small.jsonl")
CODE = os.path.join(DATA, "code_small.jsonl")
USER = "python:tests.training.task_data.user_rewards:"


def jsonl_config(path, **task):
  config = quickstart.get_config()
  config.task.name = "jsonl"
  config.task.path = str(path)
  config.task.split_field = "split"
  config.task.num_test = 8
  config.task.verifier_workers = 1
  for key, value in task.items():
    config.task[key] = value
  return config


def write_rows(path, rows):
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return path


def test_split_field_keeps_file_order_and_every_field():
  task = build_task(jsonl_config(MATH))
  assert [e.id for e in task.test] == [f"math/{i}" for i in range(2, 24, 3)]
  assert len(task.train) == 16 and task.train[0].id == "math/0"
  example = task.test[0]
  assert (example.prompt, example.answer) == ("Compute 6 \\times 7.", "42")
  assert example.metadata == {"id": "math/2", "prompt": "Compute 6 \\times 7.", "answer": "42",
                              "split": "test", "level": "Level 1"}


def test_seeded_split_is_disjoint_and_does_not_depend_on_num_train():
  items = list(range(20))
  train, test = seeded_split(items, 5, 100, seed=3)
  small_train, same_test = seeded_split(items, 5, 4, seed=3)
  assert same_test == test and len(test) == 5 and sorted(train + test) == items
  assert small_train == train[:4]
  assert seeded_split(items, 5, 100, seed=4)[1] != test
  with pytest.raises(ValueError, match="task.num_test=20"):
    seeded_split(items, 20, 1, seed=0)
  task = build_task(jsonl_config(MATH, split_field="", num_test=6, num_train=10))
  assert len(task.test) == 6 and len(task.train) == 10
  assert not {e.id for e in task.test} & {e.id for e in task.train}


def test_math_and_exact_rewards():
  math_task = build_task(jsonl_config(MATH, reward="math"))
  examples = [math_task.test[0], math_task.test[0], math_task.train[2]]  # 42, 42, 1/2 (boxed)
  results = math_task.verify_examples(examples, ["\\boxed{42}", "41", "0.5"])
  assert [r.correct for r in results] == [True, False, True]
  assert [r.env_reward for r in results] == [1.0, 0.0, 1.0]
  exact_task = build_task(jsonl_config(MATH, reward="exact"))
  results = exact_task.verify_examples(examples[:2], [" 42. ", "The answer is 42"])
  assert [r.correct for r in results] == [True, False]


def test_exact_match_normalisation():
  assert normalize_text('  "Paris."  ') == "paris"
  assert normalize_text("New   York\n") == "new york"
  assert normalize_text("ＡＢＣ") == "abc"  # NFKC folds full-width letters.
  results = ExactMatchVerifier().verify(["q"] * 3, ["YES", "", "no"], answers=["yes"] * 3)
  assert [(r.correct, r.status) for r in results] == [
      (True, Status.OK), (False, Status.UNPARSEABLE), (False, Status.OK)]


def test_code_reward_is_the_fraction_of_tests_passed():
  task = build_task(jsonl_config(CODE, reward="code", tests_field="tests", answer_field=""))
  example = task.test[0]  # add1: assert add1(1, 2) == 3; assert add1(1, 4) == 5
  completions = ["def add1(a, b):\n  return a + b\n",
                 "def add1(a, b):\n  return 3\n",
                 "```python\ndef add1(a, b):\n  return a + b\n```",
                 "def add1(a, b) return"]
  results = task.verify_examples([example] * 4, completions)
  assert [r.env_reward for r in results] == [1.0, 0.5, 1.0, 0.0]
  assert [r.correct for r in results] == [True, False, True, False]
  assert results[3].status == Status.UNPARSEABLE


def test_user_reward_function_trl_convention():
  task = build_task(jsonl_config(MATH, reward=USER + "every_other_unscored"))
  results = task.verify_examples(list(task.test[:4]), ["a", "b", "c", "d"])
  assert [r.status for r in results] == [Status.OK, Status.UNSCORED] * 2
  assert [r.env_reward for r in results] == [0.5, 0.0, 0.5, 0.0]
  assert not any(r.correct for r in results)  # None is never correct; 0.5 < threshold 1.0.
  task = build_task(jsonl_config(MATH, reward=USER + "answer_length", correct_threshold=0.5))
  results = task.verify_examples([task.test[0]] * 3, ["42", "4", "4242"])  # gold "42"
  assert [(r.score, r.correct) for r in results] == [(1.0, True), (0.5, True), (0.5, True)]


@pytest.mark.parametrize("name, detail", [
    ("broken", "raised RuntimeError: the reward server is down"),
    ("wrong_length", "returned 1 values for 3 completions"),
])
def test_user_reward_failures_are_scored_errors_not_crashes(name, detail, caplog):
  task = build_task(jsonl_config(MATH, reward=USER + name))
  with caplog.at_level(logging.WARNING):
    results = task.verify_examples(list(task.test[:3]), ["a", "b", "c"])
  assert all(r.status == Status.ERROR and not r.correct and r.env_reward == 0.0
             for r in results)
  assert all(detail in r.detail and name in r.detail for r in results)
  assert detail in caplog.text


def test_user_reward_values_that_are_not_numbers_are_errors():
  from tests.training.task_data import user_rewards
  results = UserRewardVerifier(user_rewards.not_numbers, "fn").verify(
      ["p"] * 3, ["a", "b", "c"], rows=[{}] * 3)
  assert [r.status for r in results] == [Status.ERROR, Status.ERROR, Status.OK]
  assert "returned str 'high'" in results[0].detail and "nan" in results[1].detail
  assert results[2].correct and results[2].env_reward == 1.0


@pytest.mark.parametrize("reward, message", [
    ("python:no_such_module_xyz:f", "module 'no_such_module_xyz' does not import"),
    (USER + "missing", "has no function 'missing'"),
    ("python:justmodule", "must be python:<module>:<function>"),
    ("bleu", "task.reward='bleu': unknown reward"),
])
def test_bad_reward_names_are_config_errors(reward, message):
  with pytest.raises(ValueError, match=message):
    build_task(jsonl_config(MATH, reward=reward))


@pytest.mark.parametrize("rows, where, reason", [
    ([{"prompt": "p", "answer": "1", "split": "train"}, {"prompt": "q", "split": "test"}],
     ":2: missing_field", "required field 'answer' is absent"),
    ([{"prompt": "p", "answer": "1", "split": "train"}, {"prompt": "q", "answer": "2",
                                                         "split": "dev"}],
     ":2: unknown_split", "field 'split' is 'dev'"),
    ([{"question": "p", "answer": "1", "split": "train"}], ":1: missing_field",
     "required field 'prompt' is absent"),
    ([], ":1: empty_file", ""),
    ([{"prompt": "p", "answer": "1", "split": "train"}, '{"prompt": "q", "answer": 2'],
     ":2: bad_json", ""),
])
def test_malformed_rows_stop_with_file_line_and_field(tmp_path, rows, where, reason):
  path = write_rows(tmp_path / "bad.jsonl", rows)
  with pytest.raises(ValueError) as error:
    build_task(jsonl_config(path))
  assert f"bad.jsonl{where}" in str(error.value) and reason in str(error.value)


def test_non_utf8_row_is_named(tmp_path):
  path = tmp_path / "latin1.jsonl"
  path.write_bytes(b'{"prompt": "p", "answer": "1", "split": "train"}\n'
                   b'{"prompt": "caf\xe9", "answer": "2", "split": "test"}\n')
  with pytest.raises(ValueError, match=r"latin1.jsonl:2: bad_encoding"):
    build_task(jsonl_config(path))


def test_skip_bad_rows_counts_and_logs_them(tmp_path):
  good = [{"prompt": f"q{i}", "answer": str(i), "split": "test" if i < 2 else "train"}
          for i in range(6)]
  path = write_rows(tmp_path / "mixed.jsonl", good[:3] + [{"prompt": "x"}, "not json"]
                    + good[3:])
  with pytest.warns(RowsSkippedWarning, match=r"read 8 rows, kept 6, skipped 2") as record:
    task = build_task(jsonl_config(path, skip_bad_rows=True, num_test=2))
  assert [e.prompt for e in task.train] == ["q2", "q3", "q4", "q5"]
  message = str(record[0].message)
  assert "mixed.jsonl:4: missing_field" in message and "mixed.jsonl:5: bad_json" in message


def test_missing_path_and_empty_split_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="task.path="):
    build_task(jsonl_config(tmp_path / "nope.jsonl"))
  with pytest.raises(ValueError, match="task.path='': task.name='jsonl' needs"):
    build_task(jsonl_config(""))
  path = write_rows(tmp_path / "train_only.jsonl",
                    [{"prompt": "p", "answer": "1", "split": "train"}])
  with pytest.raises(ValueError, match="no row has the value 'test'"):
    build_task(jsonl_config(path))


def test_parquet_source_matches_jsonl(tmp_path):
  pq = pytest.importorskip("pyarrow.parquet")
  import pyarrow as pa
  rows = [json.loads(line) for line in open(MATH, encoding="utf-8")]
  pq.write_table(pa.Table.from_pylist(rows), tmp_path / "math.parquet")
  from_parquet = build_task(jsonl_config(tmp_path / "math.parquet"))
  from_jsonl = build_task(jsonl_config(MATH))
  assert from_parquet.test == from_jsonl.test and from_parquet.train == from_jsonl.train
  bad = rows[:2] + [dict(rows[2], prompt=None)]
  pq.write_table(pa.Table.from_pylist(bad), tmp_path / "bad.parquet")
  with pytest.raises(ValueError, match=r"bad.parquet:3: missing_field: required field 'prompt'"):
    build_task(jsonl_config(tmp_path / "bad.parquet"))


def test_tfds_source_reads_a_prepared_dataset(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  from bonjax.data import tfds_builders
  rows = [{"question": f"What is {i} + {i}?", "answer": f"work\n#### {2 * i}"} for i in range(5)]
  train = write_rows(tmp_path / "train.jsonl", rows[:3])
  test = write_rows(tmp_path / "test.jsonl", rows[3:])
  tfds_builders.prepare_tfds("gsm8k", {"train": train, "test": test}, tmp_path / "tfds")
  task = build_task(jsonl_config("tfds:gsm8k", data_dir=str(tmp_path / "tfds")))
  assert [e.prompt for e in task.train] == [r["question"] for r in rows[:3]]
  assert [e.answer for e in task.test] == ["6", "8"]
  results = task.verify_examples(list(task.test), ["#### 6", "7"])
  assert [r.correct for r in results] == [True, False]
  with pytest.raises(ValueError, match="needs task.data_dir"):
    build_task(jsonl_config("tfds:gsm8k"))
