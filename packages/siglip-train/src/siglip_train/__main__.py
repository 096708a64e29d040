"""``python -m siglip_train``: the ``siglip-train`` command line (also under torchrun)."""

import sys

from siglip_train._cli import main

sys.exit(main())
