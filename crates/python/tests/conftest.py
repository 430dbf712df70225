"""Fixtures: the Rust side of the comparisons, built by cargo. `--workspace` resolves
features as `cargo test --workspace --release` does, so after CI's test step nothing is
rebuilt."""

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"


def cargo_build(*target: str) -> None:
    subprocess.run(["cargo", "build", "--release", "-q", "--workspace", *target], cwd=REPO, check=True)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """What the Rust API writes after 50 steps of the digits MLP (see
    crates/kiln/examples/digits_steps.rs), with the untrained step and the batches."""
    out = tmp_path_factory.mktemp("rust-reference")
    cargo_build("--example", "digits_steps")
    subprocess.run([TARGET / "examples" / "digits_steps", out, "50"], check=True)
    return out


@pytest.fixture(scope="session")
def kiln_cli() -> pathlib.Path:
    """The `kiln` runner binary."""
    cargo_build("--bin", "kiln")
    return TARGET / "kiln"


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    return REPO / "fixtures"
