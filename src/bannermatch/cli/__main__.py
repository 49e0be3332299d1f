"""``python -m bannermatch.cli``: the same as the ``bannermatch`` command."""

import sys

from bannermatch.cli import main

sys.exit(main())
