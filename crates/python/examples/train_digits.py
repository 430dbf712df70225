"""Train the digits MLP's compiled step from a Python loop, run the trained model, and check
that the state matches what the Rust API reached on the same batches, bit for bit.

    cargo run --release -p kiln --example digits_steps -- out 50
    python crates/python/examples/train_digits.py out
"""

import pathlib
import sys

import numpy as np

import kiln

out = pathlib.Path(sys.argv[1])
step = kiln.load(out / "train.kiln")  # the compiled Adam step, untrained
print(step)  # what `kiln info` shows: signature, symbols, state

xs = np.load(out / "batches_x.npy")  # float32 [steps, 16, 64]
ys = np.load(out / "batches_y.npy")  # int32 [steps, 16]
for k in range(len(xs)):
    loss = step.step(x=xs[k], y=ys[k])["loss"]  # one Adam update, applied in place
    if k % 10 == 0 or k == len(xs) - 1:
        print(f"step {k:2d}  loss {float(loss):.4f}")

# The Rust API stepped the same module on the same batches (crates/kiln/examples/digits_steps.rs).
rust = {p.stem: np.load(p) for p in (out / "state").glob("*.npy")}
ours = step.state_dict(keys="all")  # parameters, Adam moments, step and dropout counters
assert sorted(ours) == sorted(rust)
assert all(ours[name].tobytes() == rust[name].tobytes() for name in rust)
print(f"state after {len(xs)} steps: identical to the Rust API's, bit for bit")

# Evaluate with the weights trained here: the inference module takes PyTorch-named parameters.
model = kiln.load(out / "digits.kiln")
report = model.load_state_dict(step.state_dict())
print("loaded", report.loaded)
logits = model(x=np.load(out / "x_test.npy"))["logits"]
print("predicted digits of the first test images:", logits.argmax(axis=1)[:12])
