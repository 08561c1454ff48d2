"""``python -m edge``: the same as the ``hie-edge`` command."""

import sys

from edge.cli.main import main

sys.exit(main())
