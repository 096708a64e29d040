"""Every task in this monorepo runs through nox; all sessions derive from the PACKAGES table.

    pip install nox && nox -t tests      # everything CI runs
    nox -l                               # list sessions
    nox -s "loss(torch)"                 # one package, one adapter
    nox -s bench-loss                    # opt-in benchmarks, never in CI

Sessions that install torch use pip (uv does not see the local CPU wheel) and the pins in
constraints.txt (torch==2.13.0 exactly: anything looser pulls a multi-GB CUDA build).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = ROOT / "constraints.txt"
PYTHON = "3.11"

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
# Plain `nox` runs what CI runs.
nox.options.tags = ["tests"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One test environment of a package: the extras it installs and the tests it runs."""

    extras: tuple[str, ...]
    tests: tuple[str, ...]  # paths relative to the package directory
    env: tuple[tuple[str, str], ...] = ()
    # Installed with --no-deps after the rest (peer projects whose deps would pull torchvision).
    no_deps: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Package:
    """A package of the monorepo: where it lives and how it is tested."""

    short: str  # session name: `nox -s "<short>(<variant>)"`
    directory: str
    import_name: str
    siblings: tuple[str, ...]  # short names of sibling packages it depends on
    variants: dict[str, Variant]
    # Extras that give every optional feature, for typecheck and integration.
    all_extras: tuple[str, ...] = ()


FAKE_DEVICES = ("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# THE table. Each package appends its row when its issue is built.
PACKAGES: dict[str, Package] = {
    "loss": Package(
        short="loss",
        directory="packages/siglip-loss",
        import_name="siglip_loss",
        siblings=(),
        variants={
            "numpy": Variant(
                extras=("testing",), tests=("tests/numpy", "tests/test_public_api.py")
            ),
            "torch": Variant(extras=("torch", "testing"), tests=("tests/torch",)),
            "jax": Variant(extras=("jax", "testing"), tests=("tests/jax",), env=(FAKE_DEVICES,)),
        },
        all_extras=("torch", "jax", "testing"),
    ),
    "data": Package(
        short="data",
        directory="packages/siglip-data",
        import_name="siglip_data",
        siblings=(),
        variants={
            # numpy core (+ transformers parity), the compiled resize (numba) and the JAX adapter;
            # the public-API test checks in a subprocess that `import siglip_data` imports neither
            # torch, jax nor numba.
            "core": Variant(
                extras=("jax", "test", "fast"),
                tests=("tests/core", "tests/test_public_api.py", "tests/adapters/test_jax.py"),
            ),
            # Separate venv: DataLoader workers fork, and JAX warns on fork once imported. No
            # numba here, so the Pillow resize path runs through the loaders.
            "torch": Variant(
                extras=("torch", "testing"),
                tests=("tests/adapters/test_torch.py", "tests/test_public_api.py"),
            ),
        },
        all_extras=("torch", "jax", "test", "fast"),
    ),
    "models": Package(
        short="models",
        directory="packages/siglip-models",
        import_name="siglip_models",
        siblings=(),
        variants={
            "torch": Variant(
                extras=("torch", "test"),
                tests=("tests/test_public_api.py", "tests/core", "tests/torch"),
            ),
            # torch too: the Flax model is checked against transformers and our torch model.
            "flax": Variant(extras=("torch", "flax", "test"), tests=("tests/flax",)),
        },
        all_extras=("torch", "flax", "test"),
    ),
    "eval": Package(
        short="eval",
        directory="packages/siglip-eval",
        import_name="siglip_eval",
        siblings=("data", "models"),
        variants={
            # core: numpy, pillow and tqdm only; full: every extra and the CLIP_benchmark parity
            # tests (clip-benchmark's metric modules need only torch, tqdm and scikit-learn).
            "core": Variant(extras=("testing",), tests=("tests/core", "tests/test_public_api.py")),
            "full": Variant(
                extras=("torch", "data", "parity", "linear-probe", "report", "testing"),
                tests=("tests/full", "tests/parity"),
                no_deps=("clip-benchmark==1.6.2",),
            ),
        },
        all_extras=("torch", "flax", "data", "linear-probe", "report", "testing"),
    ),
    "train": Package(
        short="train",
        directory="packages/siglip-train",
        import_name="siglip_train",
        # eval is optional for train (extras "eval"/"demo"); listed so its local copy is installed.
        siblings=("loss", "models", "data", "eval"),
        variants={
            "torch": Variant(extras=("eval", "tensorboard", "demo", "testing"), tests=("tests",)),
        },
        all_extras=("eval", "tensorboard", "demo", "testing"),
    ),
}


def package_dir(short: str) -> Path:
    return ROOT / PACKAGES[short].directory


def install_packages(session: nox.Session, requirements: list[str], *extra: str) -> None:
    """pip-install local packages (and plain requirements) under the repository's pins."""
    session.install("-c", str(CONSTRAINTS), *requirements, *extra)


def local_requirement(short: str, extras: tuple[str, ...] = ()) -> str:
    path = str(package_dir(short))
    return f"{path}[{','.join(extras)}]" if extras else path


def sibling_closure(short: str) -> list[str]:
    """Every sibling a package needs, transitively, so that each installs from its local path."""
    seen: list[str] = []
    stack = list(PACKAGES[short].siblings)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.append(name)
            stack.extend(PACKAGES[name].siblings)
    return seen


def _make_test_session(package: Package) -> None:
    variant_names = list(package.variants)

    @nox.session(name=package.short, python=PYTHON, tags=["tests"])
    @nox.parametrize("variant", variant_names, ids=variant_names)
    def tests(session: nox.Session, variant: str) -> None:
        spec = package.variants[variant]
        requirements = [local_requirement(s) for s in sibling_closure(package.short)]
        requirements.append(local_requirement(package.short, spec.extras))
        install_packages(session, requirements, "pytest", "pytest-xdist")
        if spec.no_deps:
            session.install("--no-deps", *spec.no_deps)
        env = dict(spec.env)
        paths = [str(package_dir(package.short) / t) for t in spec.tests]
        session.run("python", "-m", "pytest", *paths, *session.posargs, env=env)

    tests.__doc__ = f"Test {package.import_name} in a fresh venv, one session per variant."


for _package in PACKAGES.values():
    _make_test_session(_package)


@nox.session(python=PYTHON, tags=["tests", "lint"])
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check over the whole tree."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON, tags=["tests"])
def typecheck(session: nox.Session) -> None:
    """mypy over every package's src/ with every extra installed."""
    requirements = [local_requirement(p.short, p.all_extras) for p in PACKAGES.values()]
    install_packages(session, requirements, "mypy==2.4.1")
    sources = [str(package_dir(p.short) / "src") for p in PACKAGES.values()]
    session.run("mypy", *sources)


@nox.session(python=PYTHON, tags=["tests"])
def wheels(session: nox.Session) -> None:
    """Build each package's wheel, install it alone into a clean venv, import it from outside."""
    session.install("build")
    dist = Path(session.create_tmp()) / "dist"
    for package in PACKAGES.values():
        session.run(
            "python",
            "-m",
            "build",
            "--wheel",
            "--outdir",
            str(dist),
            str(package_dir(package.short)),
        )
    clean = Path(session.create_tmp()) / "clean-venv"
    session.run("python", "-m", "venv", "--clear", str(clean))
    python = str(clean / "bin" / "python")
    for package in PACKAGES.values():
        wheel = next(dist.glob(f"{package.import_name}-*.whl"))
        session.run(
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            str(CONSTRAINTS),
            str(wheel),
            external=True,
        )
    names = ",".join(p.import_name for p in PACKAGES.values())
    check = (
        "import importlib, sys\n"
        f"for name in '{names}'.split(','):\n"
        "    module = importlib.import_module(name)\n"
        "    assert 'site-packages' in module.__file__, module.__file__\n"
        "    print(name, module.__version__, module.__file__)\n"
    )
    session.run(python, "-c", check, external=True, env={"PYTHONPATH": ""})


@nox.session(python=PYTHON, tags=["tests"])
def integration(session: nox.Session) -> None:
    """Cross-package tests (tests/integration) with every package installed from its local path."""
    requirements = [local_requirement(p.short, p.all_extras) for p in PACKAGES.values()]
    install_packages(session, requirements, "pytest", "pytest-xdist")
    env = dict([FAKE_DEVICES], SIGLIP_REPO_ROOT=str(ROOT))
    session.run(
        "python", "-m", "pytest", str(ROOT / "tests" / "integration"), *session.posargs, env=env
    )


@dataclasses.dataclass(frozen=True)
class Task:
    """An opt-in session (benchmark, demo) that runs one script with some packages installed."""

    packages: tuple[tuple[str, tuple[str, ...]], ...]  # (short, extras)
    script: str  # path relative to the repository root
    requirements: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # Installed with --no-deps after the rest (e.g. open_clip_torch, whose deps pull torchvision).
    no_deps_requirements: tuple[str, ...] = ()


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
    # B/16-224 towers: ours (torch eager, torch prepacked, Flax jit) vs transformers, CPU fp32.
    "bench-models": Task(
        packages=(("models", ("torch", "flax", "test")),),
        script="packages/siglip-models/benchmarks/bench_models.py",
    ),
    # Decode + resize + tokenize from shards: siglip-data (compiled and Pillow resize) vs
    # transformers' processors.
    "bench-data": Task(
        packages=(("data", ("test", "torch", "fast")),),
        script="packages/siglip-data/benchmarks/bench_data.py",
    ),
    # The one-command demo: `nox -s demo [-- --out DIR]` (builds data, trains on CPU, reports).
    "demo": Task(
        packages=(("train", ("demo", "eval", "tensorboard")),),
        script="packages/siglip-train/scripts/demo.py",
    ),
    # Sigmoid vs softmax loss at batch 16..256 under one example budget -> docs/results.md.
    "batch-scan": Task(
        packages=(("train", ("demo", "eval")),),
        script="packages/siglip-train/scripts/batch_scan.py",
    ),
}


def _make_task_session(name: str, task: Task) -> None:
    @nox.session(name=name, python=PYTHON)
    def run_task(session: nox.Session) -> None:
        requirements = []
        for short, extras in task.packages:
            requirements.extend(local_requirement(s) for s in sibling_closure(short))
            requirements.append(local_requirement(short, extras))
        install_packages(session, requirements, *task.requirements)
        if task.no_deps_requirements:
            session.install("--no-deps", *task.no_deps_requirements)
        session.run("python", str(ROOT / task.script), *session.posargs, env=dict(task.env))

    run_task.__doc__ = f"Opt-in: run {task.script}."


for _name, _task in TASKS.items():
    _make_task_session(_name, _task)
