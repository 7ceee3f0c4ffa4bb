r"""Strategies for intercurrent events (ICH E9(R1)), named as R's rbmi names them.

A strategy says what happens to a patient's values from the first visit an intercurrent event (ICE)
affects. :func:`parse_strategy` reads one from text (case-insensitive, with aliases) into
``(kind, imputation)``; :func:`normalise_strategy` gives its canonical text, the form every table
stores.

- ``MAR`` -> ``("MAR", "MAR")``: rbmi's MAR; observed post-ICE values are kept, missing ones
  imputed missing at random.
- ``JR`` (aliases ``J2R``, ``jump_to_reference``) -> ``("JR", "JR")``: jump to reference; post-ICE
  values imputed from the reference arm's mean.
- ``CR`` (``copy_reference``) -> ``("CR", "CR")``: copy reference; the whole profile is the reference's.
- ``CIR`` (``copy_increments``) -> ``("CIR", "CIR")``: copy increments in reference.
- ``LMCF`` -> ``("LMCF", "LMCF")``: last mean carried forward.
- ``hypothetical`` -> ``("hypothetical", "MAR")``: the same as ``hypothetical:MAR``.
- ``hypothetical:X`` -> ``("hypothetical", X)``: observed post-ICE values are set aside and the
  visits from the ICE on are imputed under X (MAR, JR, CR, CIR or LMCF).
- ``treatment_policy`` -> ``("treatment_policy", "MAR")``: observed post-ICE values are used
  (retrieved dropouts); missing ones are imputed MAR given an off-treatment indicator.
- ``while_on_treatment`` -> ``("while_on_treatment", None)``: values up to the ICE only; nothing is
  imputed after it.

A composite strategy is refused: it makes the event part of a binary (responder) outcome, and BMD
is continuous.
"""

from __future__ import annotations

import re

from analysis.study.problems import DataValidationError

__all__ = ["HYPOTHETICAL_IMPUTATIONS", "ICE_TYPES_SUGGESTED", "MAR_STRATEGIES", "STRATEGIES", "STRATEGY_TEXT",
           "is_mar", "normalise_ice_type", "normalise_strategy", "parse_strategy", "strategy_words"]

#: ICE types rajak suggests (types are free text, lower-cased identifiers).
ICE_TYPES_SUGGESTED = ("discontinued", "bone_therapy", "glucocorticoid", "fracture", "death")
#: The imputation methods of a hypothetical strategy (``hypothetical:X``).
HYPOTHETICAL_IMPUTATIONS = ("MAR", "JR", "CR", "CIR", "LMCF")
#: The strategies, by their canonical names (plus ``hypothetical:X`` for X in HYPOTHETICAL_IMPUTATIONS).
STRATEGIES = ("MAR", "JR", "CR", "CIR", "LMCF", "hypothetical", "treatment_policy", "while_on_treatment")
#: Canonical strategies that keep every observed value and impute missing at random: two ICEs of one
#: patient may both be of these. (``hypothetical:MAR`` sets values aside, so it is not one of them.)
MAR_STRATEGIES = ("MAR",)
#: One phrase per kind and imputation method, for tables and the methods text.
STRATEGY_TEXT = {
    "MAR": "missing at random (MAR)",
    "JR": "jump to reference (JR)",
    "CR": "copy reference (CR)",
    "CIR": "copy increments in reference (CIR)",
    "LMCF": "last mean carried forward (LMCF)",
    "treatment_policy": ("treatment policy, values observed after the event used and missing ones imputed "
                         "under MAR given an off-treatment indicator"),
    "while_on_treatment": "while on treatment, values up to the event only",
}

_ALIASES = {"mar": "MAR", "jr": "JR", "j2r": "JR", "jump_to_reference": "JR", "cr": "CR", "copy_reference": "CR",
            "cir": "CIR", "copy_increments": "CIR", "copy_increments_in_reference": "CIR", "lmcf": "LMCF",
            "last_mean_carried_forward": "LMCF", "hypothetical": "hypothetical",
            "treatment_policy": "treatment_policy", "while_on_treatment": "while_on_treatment"}
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


def _valid_list() -> str:
    return ", ".join([*STRATEGIES, *(f"hypothetical:{m}" for m in HYPOTHETICAL_IMPUTATIONS)])


def _word(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def parse_strategy(text: str) -> tuple[str, str | None]:
    """Read a strategy (see the module docstring).

    Parameters
    ----------
    text : str
        ``"JR"``, ``"j2r"``, ``"hypothetical:CIR"``, ``"treatment policy"`` ... (case-insensitive;
        spaces and hyphens count as underscores).

    Returns
    -------
    tuple of (str, str or None)
        ``(kind, imputation)``: a bare ``MAR``/``JR``/``CR``/``CIR``/``LMCF`` is ``(name, name)``;
        ``hypothetical`` and ``hypothetical:X`` are ``("hypothetical", X)`` (X defaults to MAR);
        ``treatment_policy`` is ``("treatment_policy", "MAR")``; ``while_on_treatment`` is
        ``("while_on_treatment", None)``.

    Raises
    ------
    DataValidationError
        One line: a composite strategy (BMD is continuous), or an unknown strategy, listing the valid ones.
    """
    raw = "" if text is None else str(text)
    head, sep, tail = raw.partition(":")
    word = _word(head)
    if word == "composite" or word.startswith("composite_"):
        raise DataValidationError(f"strategy {raw!r}: a composite strategy makes the event part of a binary "
                                  f"(responder) outcome, and BMD is continuous; use a hypothetical, "
                                  f"treatment_policy or while_on_treatment strategy")
    kind = _ALIASES.get(word)
    if sep:
        method = _ALIASES.get(_word(tail))
        if kind != "hypothetical" or method not in HYPOTHETICAL_IMPUTATIONS:
            raise DataValidationError(f"unknown strategy {raw!r} (valid: {_valid_list()})")
        return "hypothetical", method
    if kind is None:
        raise DataValidationError(f"unknown strategy {raw!r} (valid: {_valid_list()}; aliases J2R, "
                                  f"jump_to_reference, copy_reference, copy_increments)")
    if kind == "hypothetical":
        return "hypothetical", "MAR"
    if kind == "treatment_policy":
        return kind, "MAR"
    if kind == "while_on_treatment":
        return kind, None
    return kind, kind


def normalise_strategy(text: str) -> str:
    """The canonical text of a strategy: ``"j2r"`` -> ``"JR"``, ``"Hypothetical"`` ->
    ``"hypothetical:MAR"``, ``"treatment policy"`` -> ``"treatment_policy"``.

    Raises
    ------
    DataValidationError
        As :func:`parse_strategy`.
    """
    kind, method = parse_strategy(text)
    return f"hypothetical:{method}" if kind == "hypothetical" else kind


def is_mar(strategy: str | None) -> bool:
    """Whether a canonical strategy keeps every value and imputes missing at random (``MAR``; not
    ``hypothetical:MAR``, which sets the values after the event aside); ``None`` (not known yet)
    counts as MAR."""
    return strategy is None or strategy in MAR_STRATEGIES


def strategy_words(strategy: str) -> str:
    """A strategy in words: ``"hypothetical:JR"`` -> ``"hypothetical, values after the event set
    aside and imputed by jump to reference (JR)"``."""
    kind, method = parse_strategy(strategy)
    if kind == "hypothetical":
        how = "under MAR" if method == "MAR" else f"by {STRATEGY_TEXT[str(method)]}"
        return f"hypothetical, values after the event set aside and imputed {how}"
    if kind == "MAR":
        return "missing at random (MAR), values observed after the event kept"
    return STRATEGY_TEXT[kind]


def normalise_ice_type(text: str) -> str:
    """An ICE type as an identifier: stripped, lower-cased, spaces and hyphens as ``_``
    (``"Bone therapy"`` -> ``"bone_therapy"``).

    Raises
    ------
    DataValidationError
        One line when the result is not an identifier (letters, digits, ``_``; a letter first).
    """
    word = _word(str(text))
    if not _IDENTIFIER.match(word):
        raise DataValidationError(f"ICE type {str(text)!r} is not a name (use letters, digits and _, e.g. "
                                  f"{', '.join(ICE_TYPES_SUGGESTED)})")
    return word
