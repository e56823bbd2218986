"""Temperature x N co-scaling: pass@N and Best-of-N surfaces, the best temperature per N, and
a fit of pass@N ~ exp(a * N^b).

One sampling pass per temperature (n_max samples per prompt) gives every N <= n_max through the
unbiased estimators of `bonjax.bon.metrics` (every N-subset of the n_max samples averaged), so a
grid of |T| temperatures costs |T| passes, not |T| x |N|.

The fit: with a < 0 and b < 0, log pass@N = a N^b rises to 0 as N grows; taking logs twice,
log(-log pass@N) = log(-a) + b log N is a straight line, fitted by least squares on the points
with 0 < pass@N < 1 (where both logs exist). Residuals are reported in pass@N units.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from bonjax.bon import metrics


def surface(arrays_by_temperature: Mapping[float, Mapping[str, np.ndarray]],
            ns: Sequence[int], metric: str = "pass@k") -> np.ndarray:
  """Mean over prompts of `metric` at every (temperature, N).

  Args:
    arrays_by_temperature: temperature -> per-prompt arrays ("correct" [P, n], "scores").
    ns: the N values, each <= n.
    metric: "pass@k" or "bon_acc@k".

  Returns:
    float64 [len(temperatures), len(ns)], rows in sorted temperature order.
  """
  per_k = {
      "pass@k": lambda a, k: metrics.pass_at_k_from_correct(a["correct"], k),
      "bon_acc@k": lambda a, k: metrics.bon_accuracy_at_k(a["scores"], a["correct"], k),
  }
  if metric not in per_k:
    raise ValueError(f"metric={metric!r}: must be one of {sorted(per_k)}")
  temps = sorted(arrays_by_temperature)
  return np.array([[float(np.mean(per_k[metric](arrays_by_temperature[t], n))) for n in ns]
                   for t in temps])


def best_temperature(values: np.ndarray, temperatures: Sequence[float]) -> list[float]:
  """T*(N): the temperature of the highest value in every column (the lowest on ties).

  Args:
    values: [len(temperatures), len(ns)] surface.
    temperatures: the rows' temperatures, increasing.

  Returns:
    one temperature per N.
  """
  temps = np.asarray(temperatures, dtype=np.float64)
  return [float(temps[int(np.argmax(column))]) for column in np.asarray(values).T]


@dataclasses.dataclass(frozen=True)
class PowerFit:
  """pass@N ~ exp(a * N^b) fitted on `ns_used`.

  Attributes:
    a, b: the fit's parameters.
    ns_used: the N values with 0 < pass@N < 1 the fit used.
    residuals: observed - fitted pass@N at every N given (NaN where N was not used).
    rmse: root mean square of the used residuals.
  """

  a: float
  b: float
  ns_used: list[int]
  residuals: list[float]
  rmse: float

  def predict(self, ns: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.exp(self.a * np.asarray(ns, dtype=np.float64) ** self.b)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def fit_power_law(ns: Sequence[int], pass_at_n: Sequence[float]) -> PowerFit:
  """Least-squares fit of log(-log pass@N) = log(-a) + b log N.

  Args:
    ns: N values (>= 1).
    pass_at_n: pass@N at each N.

  Returns:
    PowerFit (needs at least two N with 0 < pass@N < 1).
  """
  ns_arr = np.asarray(ns, dtype=np.float64)
  values = np.asarray(pass_at_n, dtype=np.float64)
  usable = (values > 0) & (values < 1)
  if usable.sum() < 2:
    raise ValueError(f"pass@N={values.tolist()}: need >= 2 values strictly inside (0, 1)")
  x, y = np.log(ns_arr[usable]), np.log(-np.log(values[usable]))
  b, intercept = np.polyfit(x, y, 1)
  a = -float(np.exp(intercept))
  fitted = np.exp(a * ns_arr ** b)
  residuals = np.where(usable, values - fitted, np.nan)
  return PowerFit(a=a, b=float(b), ns_used=[int(n) for n in ns_arr[usable]],
                  residuals=[float(r) for r in residuals],
                  rmse=float(np.sqrt(np.mean(residuals[usable] ** 2))))


def coscaling_summary(arrays_by_temperature: Mapping[float, Mapping[str, np.ndarray]],
                      ns: Sequence[int]) -> dict:
  """Surfaces, T*(N) of each, and the power-law fit of pass@N at each temperature.

  Args:
    arrays_by_temperature: temperature -> per-prompt arrays.
    ns: N values.

  Returns:
    JSON-ready dict: temperatures, ns, "pass@k"/"bon_acc@k" surfaces, best_temperature per
    metric, fits per temperature (None where the fit is undefined) and the fit of the upper
    envelope max_T pass@N.
  """
  temps = sorted(arrays_by_temperature)
  out: dict = {"temperatures": [float(t) for t in temps], "ns": [int(n) for n in ns],
               "surfaces": {}, "best_temperature": {}, "fits": {}}
  for metric in ("pass@k", "bon_acc@k"):
    values = surface(arrays_by_temperature, ns, metric)
    out["surfaces"][metric] = values.tolist()
    out["best_temperature"][metric] = best_temperature(values, temps)
  pass_surface = np.asarray(out["surfaces"]["pass@k"])
  for t, row in zip(temps, pass_surface):
    try:
      out["fits"][f"{t:g}"] = fit_power_law(ns, row).to_dict()
    except ValueError:
      out["fits"][f"{t:g}"] = None
  try:
    out["envelope_fit"] = fit_power_law(ns, pass_surface.max(axis=0)).to_dict()
  except ValueError:
    out["envelope_fit"] = None
  return out
