"""``python -m consensus.sim --seeds 1000``: see ``consensus.sim.cli``."""

import sys

from consensus.sim.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
