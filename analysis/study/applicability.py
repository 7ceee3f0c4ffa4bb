"""Analyses that do not apply to a design, or cannot be estimated on the data, say so in one line.

An analysis that needs something the study does not have (latent responder status without disease
activity; a joint two-site model with one site; an LMM slope variance with one post-baseline visit)
raises :class:`NotApplicable` with the reason; the command or run that asked for it records
"not applicable: <reason>" (or "not estimable: <reason>") in its JSON, summary and report and goes on
with every other analysis. Asked for explicitly on the command line, it ends the command with exit
status 2 and that line.
"""

from __future__ import annotations

__all__ = ["NotApplicable", "NotEstimable"]


class NotApplicable(ValueError):
    """This analysis does not apply to the study's design (the message says why, in one line)."""


class NotEstimable(ValueError):
    """This analysis applies but cannot be estimated on these data (one line: why)."""
