"""``python -m fundusexpert_plugin.cli``: the ``fundusexpert`` command."""
import sys

from fundusexpert_plugin.cli.main import main

sys.exit(main())
