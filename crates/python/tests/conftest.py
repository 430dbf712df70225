"""Fixtures: the Rust side of the comparisons, produced by cargo (release builds, reused
from the workspace build when CI ran it first)."""

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


def cargo(*args: str) -> None:
    subprocess.run(["cargo", *args], cwd=REPO, check=True)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """What the Rust API writes after 50 steps of the digits MLP (see
    crates/kiln/examples/digits_steps.rs), with the untrained step and the batches."""
    out = tmp_path_factory.mktemp("rust-reference")
    cargo("run", "--release", "-q", "-p", "kiln", "--example", "digits_steps", "--", str(out), "50")
    return out


@pytest.fixture(scope="session")
def kiln_cli() -> pathlib.Path:
    """The `kiln` runner binary."""
    cargo("build", "--release", "-q", "-p", "kiln-cli")
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "kiln"


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    return REPO / "fixtures"
