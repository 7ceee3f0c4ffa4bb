"""``python -m analysis.cli``: the same as the ``rajak`` console script."""

import sys

from analysis.cli.app import main

sys.exit(main())
