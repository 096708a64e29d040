"""`nox -s demo [-- --out DIR ...]`: the one-command demo (same as `siglip-train demo`)."""

from __future__ import annotations

import sys

from siglip_train.demo import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
