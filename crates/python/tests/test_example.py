"""docs/python.md's example (crates/python/examples/train_digits.py) runs as documented."""

import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


def test_train_digits_example(reference: pathlib.Path) -> None:
    done = subprocess.run(
        [sys.executable, EXAMPLE, reference], check=True, capture_output=True, text=True
    )
    assert "identical to the Rust API's, bit for bit" in done.stdout
    assert "loaded ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']" in done.stdout
    assert done.stdout.startswith("kiln.Module on cpu\n")
