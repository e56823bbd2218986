"""Temperature x N co-scaling: surfaces from one sample set per temperature, T*(N), the fit."""

import numpy as np
import pytest

from bonjax.bon import coscaling


def _arrays(correct_per_prompt: int, n: int = 4, prompts: int = 3) -> dict:
  correct = np.zeros((prompts, n), bool)
  correct[:, :correct_per_prompt] = True
  return {"correct": correct, "scores": np.arange(n, 0, -1)[None].repeat(prompts, 0) * 1.0}


def test_surface_and_best_temperature():
  arrays = {1.0: _arrays(2), 0.5: _arrays(1)}
  values = coscaling.surface(arrays, [1, 2, 4])
  # pass@N = 1 - C(4 - c, N) / C(4, N): c = 1 -> 1/4, 1/2, 1; c = 2 -> 1/2, 5/6, 1.
  assert values == pytest.approx(np.array([[0.25, 0.5, 1.0], [0.5, 5 / 6, 1.0]]))
  # At N = 4 both are 1: the tie goes to the lower temperature.
  assert coscaling.best_temperature(values, [0.5, 1.0]) == [1.0, 1.0, 0.5]
  # The verifier ranks the correct samples first, so Best-of-N is right whenever a correct
  # sample is in the subset: bon_acc@N = pass@N here.
  assert coscaling.surface(arrays, [1, 2, 4], "bon_acc@k") == pytest.approx(values)


def test_power_law_fit_recovers_its_parameters():
  ns = np.array([1, 2, 4, 8, 16, 32])
  fit = coscaling.fit_power_law(ns, np.exp(-2.0 * ns ** -0.5))
  assert (fit.a, fit.b) == pytest.approx((-2.0, -0.5), abs=1e-9)
  assert fit.rmse == pytest.approx(0.0, abs=1e-12)
  assert fit.predict([4]) == pytest.approx([np.exp(-1.0)])


def test_fit_uses_only_values_inside_the_unit_interval():
  fit = coscaling.fit_power_law([1, 2, 4, 8], [np.exp(-1.0), np.exp(-0.5), 1.0, 1.0])
  assert fit.ns_used == [1, 2]
  assert (fit.a, fit.b) == pytest.approx((-1.0, -1.0))
  assert np.isnan(fit.residuals[2]) and np.isnan(fit.residuals[3])
  with pytest.raises(ValueError, match="need >= 2"):
    coscaling.fit_power_law([1, 2], [0.0, 1.0])


def test_summary_holds_surfaces_best_temperatures_and_fits():
  arrays = {1.0: _arrays(1, n=8), 0.5: _arrays(2, n=8)}
  summary = coscaling.coscaling_summary(arrays, [1, 2, 4, 8])
  assert summary["temperatures"] == [0.5, 1.0]
  assert summary["best_temperature"]["pass@k"] == [0.5, 0.5, 0.5, 0.5]
  assert summary["fits"]["1"]["ns_used"] == [1, 2, 4]  # pass@8 = 1 with c = 1, n = 8
  assert summary["envelope_fit"] is not None
