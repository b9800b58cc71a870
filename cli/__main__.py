"""``python -m cli``: the same as the ``imori`` console script."""

import sys

from cli.main import main

sys.exit(main())
