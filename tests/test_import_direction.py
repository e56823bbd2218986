"""Dependencies inside bonjax/ point one way (README, "Layout"):

  launch -> training -> {objectives, sampling, verifiers, data, checkpoints}
         -> {models, tokenizers, bon} -> {parallel, text}

Every `import` of every module under bonjax/ is read with `ast` (also imports inside
functions; not those under `if TYPE_CHECKING:`, which run only for type checkers). A package
may import packages of a lower layer only: not its peers, not a higher layer, and nothing of
launch/ or experiments/.
"""

from __future__ import annotations

import ast
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "bonjax")

# Lower number = lower layer.
LAYERS: dict[str, int] = {
    "parallel": 0, "text": 0,
    "models": 1, "tokenizers": 1, "bon": 1,
    "objectives": 2, "sampling": 2, "verifiers": 2, "data": 2, "checkpoints": 2,
    "training": 3,
}
# Top-level code outside bonjax/ that bonjax must never import.
ABOVE_BONJAX = ("launch", "experiments", "benchmarks", "tests")

# (importing module, imported package): imports that break the order today, each with why it
# stays for now.
ALLOWED_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _is_type_checking(test: ast.expr) -> bool:
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
      isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(tree: ast.AST) -> list[str]:
  """Absolute module names imported anywhere in `tree`, skipping `if TYPE_CHECKING:` blocks."""
  out: list[str] = []

  def visit(node: ast.AST) -> None:
    if isinstance(node, ast.If) and _is_type_checking(node.test):
      for child in node.orelse:
        visit(child)
      return
    if isinstance(node, ast.Import):
      out.extend(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      out.append(node.module)
      out.extend(f"{node.module}.{alias.name}" for alias in node.names)
    for child in ast.iter_child_nodes(node):
      visit(child)

  visit(tree)
  return out


def package_imports() -> list[tuple[str, str, str]]:
  """(file relative to the repository, its package, imported bonjax package or top-level
  name) for every import of a bonjax subpackage or of code above bonjax."""
  rows = []
  for root, dirs, files in os.walk(PACKAGE):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for name in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, REPO).replace(os.sep, "/")
      parts = rel.split("/")
      own = parts[1] if len(parts) > 2 else None
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), rel)
      for module in imported_modules(tree):
        pieces = module.split(".")
        if pieces[0] in ABOVE_BONJAX:
          rows.append((rel, own, pieces[0]))
        elif pieces[0] == "bonjax" and len(pieces) > 1 and pieces[1] != own:
          rows.append((rel, own, pieces[1]))
  return sorted(set(rows))


def violations() -> list[str]:
  """One message per import against the order, except the allowed ones."""
  out = []
  for rel, own, target in package_imports():
    if own is None:  # bonjax/__init__.py may re-export from anywhere.
      continue
    if target in ABOVE_BONJAX:
      out.append(f"{rel} imports {target}: bonjax never imports {target}/")
      continue
    if own not in LAYERS or target not in LAYERS:
      out.append(f"{rel}: {own if own not in LAYERS else target!r} has no layer in LAYERS")
      continue
    if LAYERS[target] >= LAYERS[own] and (rel, target) not in ALLOWED_EXCEPTIONS:
      kind = "a peer" if LAYERS[target] == LAYERS[own] else "a higher layer"
      out.append(f"{rel} ({own}, layer {LAYERS[own]}) imports {target} "
                 f"({kind}, layer {LAYERS[target]})")
  return out


def test_every_subpackage_has_a_layer():
  subpackages = {d for d in os.listdir(PACKAGE)
                 if os.path.isfile(os.path.join(PACKAGE, d, "__init__.py"))}
  assert subpackages == set(LAYERS)


def test_imports_follow_the_documented_direction():
  assert violations() == []


def test_allowed_exceptions_are_still_needed():
  """An exception that no import uses any more is dropped from the list."""
  used = {(rel, target) for rel, _, target in package_imports()}
  assert set(ALLOWED_EXCEPTIONS) <= used


def test_no_import_cycle_between_subpackages():
  graph: dict[str, set[str]] = {}
  for _, own, target in package_imports():
    if own in LAYERS and target in LAYERS:
      graph.setdefault(own, set()).add(target)

  def reaches(start: str, goal: str, seen: set[str]) -> bool:
    for nxt in graph.get(start, ()):
      if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
        return True
    return False

  assert [p for p in graph if reaches(p, p, {p})] == []


def test_readme_states_the_enforced_order():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    readme = " ".join(f.read().split())
  assert ("launch -> training -> {objectives, sampling, verifiers, data, checkpoints} -> "
          "{models, tokenizers, bon} -> {parallel, text}") in readme


@pytest.mark.parametrize("source, expected", [
    ("import bonjax.models.config", ["bonjax.models.config"]),
    ("from bonjax.data import batching", ["bonjax.data", "bonjax.data.batching"]),
    ("def f():\n  from launch import main", ["launch", "launch.main"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n  from bonjax.models import x",
     ["typing", "typing.TYPE_CHECKING"]),
    ("from . import sibling", []),
])
def test_imports_are_read_from_the_syntax_tree(source, expected):
  assert imported_modules(ast.parse(source)) == expected


def test_a_violation_is_reported(tmp_path, monkeypatch):
  """The checker flags an upward import (models importing training) by file and layers."""
  fake = tmp_path / "bonjax"
  (fake / "models").mkdir(parents=True)
  (fake / "models" / "__init__.py").write_text("")
  (fake / "models" / "bad.py").write_text("from bonjax.training import loop\n")
  monkeypatch.setattr(sys.modules[__name__], "PACKAGE", str(fake))
  monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
  assert violations() == [
      "bonjax/models/bad.py (models, layer 1) imports training (a higher layer, layer 3)"]
