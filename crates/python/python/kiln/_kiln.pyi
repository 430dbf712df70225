"""Type stubs of the extension module `kiln._kiln` (re-exported by `kiln`)."""

import os
from typing import Any, Literal, final

import numpy.typing as npt

_Backend = Literal["cpu", "gpu", "interp"]
_Keys = Literal["parameters", "all"]

@final
class TensorSpec:
    """One input or output: its name, NumPy dtype name and shape (an int per known
    dimension, a string such as ``"N"`` per symbolic one)."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> list[int | str]: ...

@final
class Signature:
    """A module's inputs, outputs and symbols (``{"N": (1, None)}``: minimum, maximum)."""

    @property
    def inputs(self) -> list[TensorSpec]: ...
    @property
    def outputs(self) -> list[TensorSpec]: ...
    @property
    def symbols(self) -> dict[str, tuple[int, int | None]]: ...

@final
class LoadReport:
    """What ``Module.load_state_dict`` did, in PyTorch's terms."""

    @property
    def loaded(self) -> list[str]: ...
    @property
    def missing_keys(self) -> list[str]: ...
    @property
    def unexpected_keys(self) -> list[str]: ...

@final
class Module:
    """A compiled kiln module (from ``load`` or ``import_onnx``).

    Inputs are keyword arguments: NumPy arrays or any buffer-protocol object. A C-contiguous,
    aligned array of the input's dtype is read in place (no copy); other arrays of a kiln
    dtype are made contiguous by NumPy first; Python numbers and lists take the input's
    dtype. An array of another dtype raises ``InputError`` (kiln never casts silently).
    The GIL is released while the module runs; do not write an input array from another
    thread during a run.
    """

    def run(self, **inputs: Any) -> dict[str, npt.NDArray[Any]]:
        """Runs once; returns the outputs by name. A train step also applies its updates."""
    def __call__(self, **inputs: Any) -> dict[str, npt.NDArray[Any]]:
        """Same as ``run``."""
    def step(self, **inputs: Any) -> dict[str, npt.NDArray[Any]]:
        """One training step: outputs (the loss before the update) and every state update
        applied. Raises ``KilnError`` if the module is not a train step."""
    def state_dict(self, keys: _Keys = "parameters") -> dict[str, npt.NDArray[Any]]:
        """Copies of the state tensors by PyTorch name; ``keys="all"`` adds optimiser state."""
    def load_state_dict(
        self,
        state_dict: dict[str, npt.ArrayLike],
        strict: bool = True,
        keys: _Keys = "parameters",
    ) -> LoadReport:
        """Loads tensors by name; raises ``InputError`` on mismatch (nothing is loaded)."""
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the module with its current state to a ``.kiln`` file (atomically)."""
    @property
    def signature(self) -> Signature: ...
    @property
    def backend(self) -> _Backend: ...
    @property
    def is_train_step(self) -> bool: ...
    def _reads_in_place(self, **inputs: Any) -> dict[str, bool]: ...

def load(path: str | os.PathLike[str], backend: _Backend = "cpu") -> Module:
    """Loads a ``.kiln`` file; raises ``FormatError`` if it is missing or malformed."""

def import_onnx(
    path: str | os.PathLike[str],
    backend: _Backend = "cpu",
    dims: dict[str, int] | None = None,
) -> Module:
    """Imports and compiles an ONNX model; ``dims`` fixes named dimensions."""

__all__ = ["LoadReport", "Module", "Signature", "TensorSpec", "import_onnx", "load"]
