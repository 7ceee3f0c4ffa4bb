"""Data-generating and statistical models for rajak (twin simulator, Bayesian trajectory models,
dropout models). ``models`` never imports ``analysis``."""

from models.runtime import configure_compile_cache

configure_compile_cache()

__all__ = ["configure_compile_cache"]
