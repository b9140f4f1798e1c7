"""Studies of many runs of one kind on Optuna: ``elbokit sweep KIND --param NAME=RANGE ...``.

``params`` reads what a study varies against a kind's config; ``run`` creates or joins a study in
its database and runs its trials (each an ordinary run folder), in one process or many;
``report`` draws a study's table and figures into one report.html.
"""

from elbokit.study.params import Param, parse_param, parse_params
from elbokit.study.run import Study, read_objective

__all__ = ["Param", "Study", "parse_param", "parse_params", "read_objective"]
