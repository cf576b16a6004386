"""``python -m offbench.cli``: the same as the ``offbench`` command."""
import sys

from offbench.cli import main

sys.exit(main())
