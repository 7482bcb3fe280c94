"""``python -m simulator.site``: see simulator/site/cli.py."""
import sys

from simulator.site.cli import main

sys.exit(main())
