"""The one runner for the examples in markdown: every ```python block of docs/ and the READMEs.

Collected only where Sybil is installed (the ``docs`` nox session); the per-package test sessions
never pass markdown files, so this changes nothing for them. Blocks of a page run in order, in one
namespace, inside a fresh temporary directory, and a ```python block that raises fails the page's
test. A block that must not run here (a script meant for torchrun, which its own test launches) is
preceded by ``<!-- skip: next -->``; hidden set-up code goes in ``<!-- invisible-code-block: python
-->`` comments. ``>>>`` lines inside a block are checked as doctests.
"""

from __future__ import annotations

import doctest
import os
import shutil
import tempfile
from typing import Any

try:
    from sybil import Sybil
    from sybil.parsers.markdown import PythonCodeBlockParser
    from sybil.parsers.markdown import SkipParser
except ImportError:  # not the docs session: nothing to collect
    Sybil = None

try:
    from hypothesis import HealthCheck
    from hypothesis import settings
except ImportError:  # no page or test here uses hypothesis
    pass
else:
    # The rule of every package's tests/conftest.py, for the property tests in docs/ pages: the same
    # 20 examples on every CI run and no deadline (a page's first torch or JAX call warms up).
    settings.register_profile(
        "ci",
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        max_examples=20,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _enter_temporary_directory(namespace: dict[str, Any]) -> None:
    namespace["__previous_cwd__"] = os.getcwd()
    namespace["__temporary_directory__"] = tempfile.mkdtemp(prefix="siglip-docs-")
    os.chdir(namespace["__temporary_directory__"])


def _leave_temporary_directory(namespace: dict[str, Any]) -> None:
    os.chdir(namespace["__previous_cwd__"])
    shutil.rmtree(namespace["__temporary_directory__"], ignore_errors=True)


if Sybil is not None:
    pytest_collect_file = Sybil(
        parsers=[
            PythonCodeBlockParser(
                doctest_optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
            ),
            SkipParser(),
        ],
        patterns=["*.md"],
        excludes=["CHANGELOG.md"],
        setup=_enter_temporary_directory,
        teardown=_leave_temporary_directory,
    ).pytest()
