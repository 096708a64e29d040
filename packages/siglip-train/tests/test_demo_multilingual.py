"""The opt-in multilingual mixture script (``scripts/demo_multilingual.py``) runs end to end.

A smoke run at toy size (60 emoji, 3 languages, 3 steps per arm) so the script cannot rot between
the occasional full runs of ``nox -s demo-multilingual``. It reads the Debian packages behind the
``emoji-multilingual`` dataset: skipped (naming the command) when they are missing, a failure
under ``SIGLIP_REQUIRE_DATA=1`` (CI installs them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import siglip_data

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo_multilingual.py"


def test_every_arm_and_the_lowercasing_ab_run_and_report(tmp_path: Path) -> None:
    try:
        siglip_data.builders.check_debian_packages("emoji-multilingual")
    except siglip_data.builders.MissingDebianPackageError as error:
        if os.environ.get("SIGLIP_REQUIRE_DATA") == "1":
            raise
        pytest.skip(f"needs the Debian packages: {error.command}")
    arguments = ["--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data")]
    arguments += ["--limit", "60", "--steps", "3", "--languages", "en,de,el"]
    arguments += ["--vocab-size", "500", "--batch-size", "16"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "multilingual.json").read_text())
    names = [row["name"] for row in report["rows"]]
    assert names[:3] == ["english/unicode", "90-10/unicode", "uniform/unicode"]
    assert len(names) == 4
    assert names[3].endswith("/ascii")  # the A/B on the best mixture
    assert report["languages"] == ["de", "el", "en"]
    english = report["rows"][0]
    assert english["mixture"] == {"en": 1.0}
    assert report["rows"][1]["mixture"] == {"en": 0.9, "de": 0.05, "el": 0.05}
    assert english["steps"] == 3
    assert set(english["per_language"]) == {"big_vision", "clip_benchmark"}
    assert set(english["per_language"]["big_vision"]) == {"de", "el", "en"}
    assert "| english | unicode |" in (tmp_path / "out" / "multilingual.md").read_text()
    assert (tmp_path / "out" / "per_language.png").read_bytes()[:4] == b"\x89PNG"
