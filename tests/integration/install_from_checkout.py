"""Install the packages from this checkout into a clean venv with the quick start's one command.

    python tests/integration/install_from_checkout.py [VENV_DIR]

Reads the ``pip install`` line that docs/quickstart-own-data.md marks ``<!-- run:
install-from-checkout -->``, runs it exactly as written from the repository root with the new
venv's pip, then, from outside the repository, imports every package (each must come from the
venv's site-packages, not the checkout) and runs each command line's ``--help``. Exits non-zero
on any failure. Not a pytest module (it installs): CI runs it in its own session.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "quickstart-own-data.md"
MARKED = re.compile(
    r"<!-- run: install-from-checkout -->\n```bash\n(.*?)^```", re.DOTALL | re.MULTILINE
)


def install_line() -> str:
    """The page's install command (the same extraction as tests/integration/test_new_user_path)."""
    (block,) = MARKED.findall(PAGE.read_text())
    (line,) = [line for line in block.splitlines() if line.strip()]
    return line


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "venv"
    venv.create(target, with_pip=True, clear=True)
    python = target / "bin" / "python"
    line = install_line()
    words = shlex.split(line)
    assert words[:2] == ["pip", "install"], line
    subprocess.run([str(python), "-m", "pip", *words[1:], "--no-compile"], cwd=ROOT, check=True)
    check = (
        "import importlib\n"
        "for name in ('siglip_loss', 'siglip_models', 'siglip_data', 'siglip_eval', 'siglip_train'):\n"
        "    module = importlib.import_module(name)\n"
        "    assert 'site-packages' in module.__file__, module.__file__\n"
        "    print(name, module.__version__, module.__file__)\n"
        "import siglip_models.torch, siglip_eval.torch, siglip_data.torch\n"
    )
    outside = tempfile.mkdtemp()
    environment = {**os.environ, "PYTHONPATH": ""}
    subprocess.run([str(python), "-c", check], cwd=outside, env=environment, check=True)
    for script in ("siglip-data", "siglip-train", "siglip-eval"):
        subprocess.run(
            [str(target / "bin" / script), "--help"],
            cwd=outside,
            env=environment,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    print(f"installed from the checkout into {target} with: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
