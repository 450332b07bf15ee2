"""`splitbench recommend`: the most private split that fits a phone, network and accuracy budget.

Privacy is DPFE's log-rank privacy (0: the attacker always ranks the true sensitive class first; 1:
always last); it is the measure the papers plot against accuracy and it is comparable across numbers
of classes. Ties are broken by the lower end-to-end latency. Every privacy number shown names the
estimator that produced it; one estimator is used per call (``--estimator``; default: the privacy
table's only one, else the run's spec's, else ``splitbench``; see :func:`harness.analysis.table.select_estimator`).

End-to-end latency = phone inference median + upload of the feature over the network profile + the
cloud part (from ``DIR/cloud.csv``, columns model, cut, embedding, cloud_ms, when the run has one;
otherwise the cloud part is left out and every table says so).

Candidates are the measured split configurations, one per (cut, embedding, noise ratio, backend,
target, device). On-premise (the whole model on the phone) has no feature to score: it is shown as the
baseline, checked against the same budget, and never ranked against the cuts (see harness.analysis.table). A row
whose phone tool reported only an aggregate is marked "(tool aggregate)" and uses the tool's median.

Without privacy scores (no ``privacy.csv``) the cut is chosen by cost alone: the lowest end-to-end
latency that fits (Neurosurgeon's rule), and every output says privacy was not scored.

Exit codes: 0 when a configuration fits. When none fits, one line names the closest configuration (the
smallest summed relative excess over the broken limits) and what it breaks, raised as
:class:`NothingFits` so the CLI prints it once and exits ``NOTHING_FITS`` (3), never bad input's 1; with
``--json`` the JSON object (choice null) is written to stdout first.

The package, by job: :mod:`~harness.analysis.recommend.budget` (the budget and where it comes from),
:mod:`~harness.analysis.recommend.choice` (the candidates and the rule, :func:`choose`),
:mod:`~harness.analysis.recommend.explain` (the choice in words and table cells) and
:mod:`~harness.analysis.recommend.command` (the command and its printing); the merged table it reads is
:mod:`harness.analysis.table`. This module re-exports their public names.
"""

from harness.analysis.recommend.budget import (ACCURACY_DROP, BUDGET_KEYS, BYTES_PER_KB, DEFAULT_SOURCE, Budget,
                                               budget_from_mapping, default_budgets, resolve_budgets, spec_budget)
from harness.analysis.recommend.choice import (RULE_COST, RULE_PRIVACY, Candidate, NothingFits, Recommendation, best,
                                               choose, choose_all, no_median, opt, pareto_frontier, text)
from harness.analysis.recommend.command import NARROW, recommend
from harness.analysis.recommend.explain import (CANDIDATE_HEADERS, ConfigLine, breaks_text, candidate_row,
                                                config_lines, latency_formula, on_premise_of, ratio_ranges,
                                                sig_or_dash, versus_on_premise)

__all__ = [
    "ACCURACY_DROP", "BUDGET_KEYS", "BYTES_PER_KB", "CANDIDATE_HEADERS", "DEFAULT_SOURCE", "NARROW", "RULE_COST",
    "RULE_PRIVACY", "Budget", "Candidate", "ConfigLine", "NothingFits", "Recommendation", "best", "breaks_text",
    "budget_from_mapping", "candidate_row", "choose", "choose_all", "config_lines", "default_budgets", "latency_formula",
    "no_median", "on_premise_of", "opt", "pareto_frontier", "ratio_ranges", "recommend", "resolve_budgets",
    "sig_or_dash", "spec_budget", "text", "versus_on_premise",
]
