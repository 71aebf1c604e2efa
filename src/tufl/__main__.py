"""``python -m tufl``: the command-line interface."""

import sys

from tufl.cli import main

sys.exit(main())
