"""Best-of-N selection, unbiased BoN metrics, exact BoN distributions and BoN curves.

Pure functions over arrays; this package imports no model code.
"""

from bonjax.bon.curves import (CURVE_METRICS, bon_curve, default_ks, plot_bon_curve,
                               read_curve_json, write_curve_json)
from bonjax.bon.exact import (BON_DISTRIBUTIONS, bon_accuracy, bon_distribution, bon_kl,
                              bon_kl_bound, bon_probs_index_ties, bon_probs_outcome_order,
                              expected_max, half_tie_win_rate, kl_divergence, level_masses,
                              pass_at_n, score_cdfs)
from bonjax.bon.metrics import (BON_TIE_RULES, bon_accuracy_at_k, bon_selection_probs, maj_at_k,
                                max_at_k, mean_reward, pass_at_k, pass_at_k_from_correct,
                                subset_max_cdf, subset_max_probs)
from bonjax.bon.selection import (majority_vote, majority_vote_index, select_best,
                                  select_best_values, weighted_vote)
