"""Analyses built on rajak's models: loading and validation, clinical derivations, frequentist and
Bayesian analyses, sensitivity, sample size, plots, report and CLI."""

import models  # noqa: F401  (sets the compile caches before anything imports pytensor)
