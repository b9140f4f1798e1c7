"""Shared test settings.

Hypothesis runs derandomized (the same examples every run, so CI is reproducible) with no
deadline (the first call of a torch op can be slow).
"""

import pytest
import torch
from hypothesis import settings

settings.register_profile("elbokit", deadline=None, derandomize=True, max_examples=40)
settings.load_profile("elbokit")


_passed = 0


def pytest_runtest_logreport(report):
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def pytest_sessionfinish(session, exitstatus):
    # A run in which nothing passed (everything skipped or deselected) must not look green.
    if exitstatus == 0 and _passed == 0:
        session.exitstatus = 5


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module, restored afterwards: for modules of small tensors, where
    intra-op threads gain nothing and, on a shared 2-core machine with another busy process,
    torch's pool waits made a module 10-20x slower (188 s against 10 s measured for
    test_gmm.py). Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
