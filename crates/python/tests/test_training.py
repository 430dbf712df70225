"""Training and running from Python agree bit for bit with the Rust API and `kiln run`."""

import pathlib
import subprocess

import numpy as np

import kiln


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_fifty_steps_reach_the_rust_state_bitwise(reference: pathlib.Path) -> None:
    m = kiln.load(reference / "train.kiln")
    assert m.is_train_step and m.backend == "cpu"
    xs = np.load(reference / "batches_x.npy")
    ys = np.load(reference / "batches_y.npy")
    assert xs.shape == (50, 16, 64) and ys.dtype == np.int32
    losses = [m.step(x=xs[k], y=ys[k])["loss"] for k in range(50)]
    assert all(l.shape == () and l.dtype == np.float32 for l in losses)
    assert same_bits(np.stack(losses), np.load(reference / "losses.npy"))
    assert float(losses[-1]) < float(losses[0])

    state = m.state_dict(keys="all")
    files = list((reference / "state").glob("*.npy"))
    assert sorted(state) == sorted(f.name[: -len(".npy")] for f in files)
    assert {"fc1.weight", "fc1.weight.adam_m", "optim.step"} <= set(state)
    for f in files:
        name = f.name[: -len(".npy")]
        assert same_bits(state[name], np.load(f)), name


def test_state_dict_has_pytorch_names_and_layouts(reference: pathlib.Path) -> None:
    m = kiln.load(reference / "train.kiln")
    params = m.state_dict()
    assert sorted(params) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    assert params["fc1.weight"].shape == (128, 64)
    assert params["fc2.weight"].dtype == np.float32


def test_a_checkpoint_resumes_exactly(reference: pathlib.Path, tmp_path: pathlib.Path) -> None:
    xs = np.load(reference / "batches_x.npy")
    ys = np.load(reference / "batches_y.npy")
    a = kiln.load(reference / "train.kiln")
    for k in range(3):
        a.step(x=xs[k], y=ys[k])
    b = kiln.load(reference / "train.kiln")
    report = b.load_state_dict(a.state_dict(keys="all"), keys="all")
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert "optim.step" in report.loaded
    la = a.step(x=xs[3], y=ys[3])["loss"]
    lb = b.step(x=xs[3], y=ys[3])["loss"]
    assert same_bits(la, lb)
    path = tmp_path / "resumed.kiln"
    b.save(path)
    c = kiln.load(path)
    for name, value in b.state_dict(keys="all").items():
        assert same_bits(c.state_dict(keys="all")[name], value), name


def test_run_equals_kiln_run_bitwise(
    reference: pathlib.Path, kiln_cli: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    module = reference / "digits.kiln"
    x_test = reference / "x_test.npy"
    m = kiln.load(module)
    got = m.run(x=np.load(x_test))
    assert list(got) == ["logits"]
    subprocess.run(
        [kiln_cli, "run", module, "--backend", "cpu", "--input", f"x={x_test}", "--out", tmp_path],
        check=True,
        capture_output=True,
    )
    want = np.load(tmp_path / "logits.npy")
    assert same_bits(got["logits"], want)
    assert same_bits(m(x=np.load(x_test))["logits"], want)


def test_signature_backend_and_repr(reference: pathlib.Path) -> None:
    m = kiln.load(reference / "digits.kiln")
    sig = m.signature
    (x,) = sig.inputs
    assert (x.name, x.dtype, x.shape) == ("x", "float32", ["N", 64])
    assert [(o.name, o.dtype, o.shape) for o in sig.outputs] == [("logits", "float32", ["N", 10])]
    assert sig.symbols == {"N": (1, None)}
    assert repr(x) == "TensorSpec(name='x', dtype='float32', shape=['N', 64])"
    text = repr(m)
    assert text.startswith("kiln.Module on cpu\n  inputs:\n    x: f32[N, 64]\n  outputs:\n")
    assert "    logits: f32[N, 10]\n  symbols: N >= 1\n" in text
    assert kiln.load(reference / "train.kiln", backend="interp").backend == "interp"


def test_inputs_are_read_in_place_or_converted(reference: pathlib.Path) -> None:
    m = kiln.load(reference / "digits.kiln")
    x = np.load(reference / "x_test.npy")[:5]
    assert m._reads_in_place(x=x) == {"x": True}
    fortran = np.asfortranarray(x)
    assert m._reads_in_place(x=fortran) == {"x": False}
    strided = np.load(reference / "x_test.npy")[:10:2]
    assert m._reads_in_place(x=strided) == {"x": False}
    want = m.run(x=x)["logits"]
    assert same_bits(m.run(x=fortran)["logits"], want)
    assert same_bits(m.run(x=x.tolist())["logits"], want)
    assert same_bits(m.run(x=memoryview(x))["logits"], want)
    assert same_bits(m.run(x=np.ascontiguousarray(strided))["logits"], m.run(x=strided)["logits"])


def test_import_onnx_matches_the_runner(
    fixtures: pathlib.Path, kiln_cli: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    model = fixtures / "onnx" / "simple_nn.onnx"
    x_path = fixtures / "onnx" / "simple_nn.x.npy"
    m = kiln.import_onnx(model)
    (spec,) = m.signature.inputs
    (out,) = m.signature.outputs
    x = np.load(x_path)
    got = m.run(**{spec.name: x})[out.name]
    ort = np.load(fixtures / "onnx" / "simple_nn.ort.npy")
    np.testing.assert_allclose(got, ort, rtol=1e-4, atol=1e-5)
    subprocess.run(
        [kiln_cli, "run", model, "--backend", "cpu", "--input", f"{spec.name}={x_path}", "--out", tmp_path],
        check=True,
        capture_output=True,
    )
    assert same_bits(got, np.load(tmp_path / f"{out.name}.npy"))
