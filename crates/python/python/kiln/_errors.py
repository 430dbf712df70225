"""kiln's exception classes; the extension raises them with kiln's one-line messages."""


class KilnError(Exception):
    """Base class of every kiln error; also raised when a run itself fails."""


class InputError(KilnError, ValueError):
    """Inputs (or a state dict) do not fit the module: a missing or unknown name, a wrong
    dtype or shape, symbols bound inconsistently."""


class FormatError(KilnError):
    """A file cannot be read, or is not a valid `.kiln` module (or ONNX model)."""


class CompileError(KilnError):
    """Building the module's code for the backend failed (or an ONNX operator kiln does not
    import)."""
