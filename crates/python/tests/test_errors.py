"""Malformed files, wrong dtypes and shapes, unknown names: documented exceptions with
kiln's one-line messages, never a crash."""

import pathlib
import threading

import numpy as np
import pytest

import kiln


@pytest.fixture(scope="module")
def digits(reference: pathlib.Path) -> kiln.Module:
    return kiln.load(reference / "digits.kiln")


def test_exception_classes() -> None:
    assert issubclass(kiln.InputError, kiln.KilnError)
    assert issubclass(kiln.InputError, ValueError)
    assert issubclass(kiln.FormatError, kiln.KilnError)
    assert issubclass(kiln.CompileError, kiln.KilnError)


def test_missing_and_malformed_files(reference: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with pytest.raises(kiln.FormatError, match="absent.kiln"):
        kiln.load(tmp_path / "absent.kiln")
    garbage = tmp_path / "garbage.kiln"
    garbage.write_bytes(b"definitely not a module")
    with pytest.raises(kiln.FormatError, match="^not a .kiln file"):
        kiln.load(garbage)
    data = (reference / "digits.kiln").read_bytes()
    for cut in (4, 64, len(data) // 2, len(data) - 1):
        truncated = tmp_path / f"cut{cut}.kiln"
        truncated.write_bytes(data[:cut])
        with pytest.raises(kiln.FormatError) as err:
            kiln.load(truncated)
        assert "\n" not in str(err.value)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    corrupt = tmp_path / "corrupt.kiln"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(kiln.FormatError):
        kiln.load(corrupt)
    with pytest.raises(ValueError, match="unknown backend `tpu`"):
        kiln.load(reference / "digits.kiln", backend="tpu")
    with pytest.raises(kiln.FormatError):
        kiln.import_onnx(garbage)


def test_wrong_dtype_shape_and_names(digits: kiln.Module) -> None:
    x = np.zeros((3, 64), np.float32)
    with pytest.raises(kiln.InputError) as err:
        digits.run(x=x.astype(np.float64))
    assert str(err.value) == "input `x`: expected dtype f32, got f64"
    with pytest.raises(kiln.InputError, match="^input `x`: expected dtype f32, got i32$"):
        digits.run(x=x.astype(np.int32))
    with pytest.raises(kiln.InputError, match="^input `x`: expected dtype f32, got float16$"):
        digits.run(x=x.astype(np.float16))
    with pytest.raises(kiln.InputError, match=r"^input `x`: dimension 1 is 63, expected 64"):
        digits.run(x=np.zeros((3, 63), np.float32))
    with pytest.raises(kiln.InputError, match="^input `x`: expected rank 2"):
        digits.run(x=np.zeros(64, np.float32))
    with pytest.raises(kiln.InputError, match=r"^unknown input `z` \(inputs are: x\)$"):
        digits.run(x=x, z=x)
    with pytest.raises(kiln.InputError, match="^missing input `x`"):
        digits.run()
    with pytest.raises(kiln.InputError, match="cannot be converted"):
        digits.run(x=[["a"] * 64])
    with pytest.raises(ValueError):
        digits.run(x=x.astype(np.float64))
    assert digits.run(x=x)["logits"].shape == (3, 10)


def test_step_and_state_dict_misuse(digits: kiln.Module, reference: pathlib.Path) -> None:
    with pytest.raises(kiln.KilnError, match="not a train step"):
        digits.step(x=np.zeros((1, 64), np.float32))
    params = digits.state_dict()
    bad = dict(params)
    bad["fc1.weight"] = params["fc1.weight"].T.copy()
    with pytest.raises(kiln.InputError, match="size mismatch for `fc1.weight`"):
        digits.load_state_dict(bad)
    assert np.array_equal(digits.state_dict()["fc1.weight"], params["fc1.weight"])
    partial = {"fc1.bias": params["fc1.bias"], "extra": np.zeros(2, np.float32)}
    with pytest.raises(kiln.InputError, match="fc2.weight"):
        digits.load_state_dict(partial)
    report = digits.load_state_dict(partial, strict=False)
    assert report.loaded == ["fc1.bias"]
    assert report.unexpected_keys == ["extra"]
    assert "fc2.weight" in report.missing_keys
    with pytest.raises(ValueError, match="keys must be"):
        digits.state_dict(keys="some")


def test_runs_release_the_gil(digits: kiln.Module) -> None:
    x = np.random.default_rng(0).random((256, 64), dtype=np.float32)
    want = digits.run(x=x)["logits"]
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                results.append(digits.run(x=x)["logits"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 80
    assert all(r.tobytes() == want.tobytes() for r in results)
