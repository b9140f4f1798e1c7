"""Shared test settings.

Hypothesis runs derandomized (the same examples every run, so CI is reproducible) with no
deadline (the first call of a torch op can be slow).
"""

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
