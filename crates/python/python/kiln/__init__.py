"""kiln: load, run and train compiled kiln modules from Python and NumPy.

>>> import kiln, numpy as np
>>> m = kiln.load("digits.kiln")                 # backend="cpu" by default
>>> m.signature.inputs[0]
TensorSpec(name='x', dtype='float32', shape=['N', 64])
>>> logits = m.run(x=np.zeros((3, 64), np.float32))["logits"]

See docs/python.md for training a compiled step from a Python loop.
"""

from ._errors import CompileError, FormatError, InputError, KilnError
from ._kiln import LoadReport, Module, Signature, TensorSpec, import_onnx, load

__all__ = [
    "CompileError",
    "FormatError",
    "InputError",
    "KilnError",
    "LoadReport",
    "Module",
    "Signature",
    "TensorSpec",
    "import_onnx",
    "load",
]
