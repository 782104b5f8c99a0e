"""Start the rbvet vetting window: ``python main.py [FRAME] [--catalog CAT] [--model M]``."""

import sys

from rbvet.gui.app import main

if __name__ == "__main__":
    sys.exit(main())
