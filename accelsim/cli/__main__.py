"""``python -m accelsim.cli``: the same as the ``accelsim`` command."""

import sys

from . import main

sys.exit(main())
