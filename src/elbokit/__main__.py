"""``python -m elbokit``: the same as the ``elbokit`` command."""

import sys

from elbokit.cli import main

sys.exit(main())
