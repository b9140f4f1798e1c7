"""Shared test settings.

Hypothesis runs derandomized (the same examples every run, so CI is reproducible) with no
deadline (the first call of a torch op can be slow).
"""

from hypothesis import settings

settings.register_profile("elbokit", deadline=None, derandomize=True, max_examples=40)
settings.load_profile("elbokit")
