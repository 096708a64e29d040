"""``python -m siglip_eval``: the ``siglip-eval`` command line (same arguments, same exit status)."""

import sys

from siglip_eval._cli import main

if __name__ == "__main__":
    sys.exit(main())
