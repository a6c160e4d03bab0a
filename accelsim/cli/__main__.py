"""``python -m accelsim.cli``: the same as the ``accelsim`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
