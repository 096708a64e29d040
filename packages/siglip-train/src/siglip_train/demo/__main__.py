"""``python -m siglip_train.demo``: the demo's command line."""

import sys

from siglip_train.demo._cli import main

sys.exit(main())
