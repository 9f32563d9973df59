"""``python -m xenballoond.guest``: the same as the ``xenballoond`` command."""
import sys

from .cli import main

sys.exit(main())
