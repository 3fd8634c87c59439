"""``python -m crysfuse`` — the same as the ``crysfuse`` command."""

import sys

from crysfuse.cli import main

sys.exit(main())
