# kiln task runner (https://github.com/casey/just)

# Run the whole test suite (the same command CI runs).
test:
    cargo test --workspace --release

# Lint: formatting and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# API docs with rustdoc warnings as errors (what CI builds); `cargo doc --open -p kiln` to read.
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

# Format the workspace.
fmt:
    cargo fmt --all

# Regenerate golden expectations: PyTorch/JAX fixtures (needs the Python env from
# fixtures/gen/requirements.txt) and the text filetests.
bless:
    python3 fixtures/gen/gen_golden.py
    BLESS=1 cargo test --workspace --release filetest
    BLESS=1 cargo test --release -p kiln-capi --test integration -- header:: c_example::

# Build SimpleNN and evaluate it.
demo:
    cargo run --release -p kiln-cli -- demo

# Build SimpleNN symbolically and evaluate it with the interpreter.
example:
    cargo run --release -p kiln --example simple_nn

# The Python package: build it into a virtual environment and run its tests (docs/python.md).
python:
    python3 -m venv target/venv-python
    target/venv-python/bin/pip install -q -r crates/python/requirements-test.txt
    PATH="$PWD/target/venv-python/bin:$PATH" target/venv-python/bin/pip install -q --no-build-isolation ./crates/python
    target/venv-python/bin/python -m pytest -q crates/python/tests

# CI locally.
ci:
    bash .ci/run

# Benchmark suite: every workload on every backend, plus this machine's limits
# (JSON lines in target/bench/kiln.jsonl, a table on stdout). See docs/benchmarks.md.
bench *ARGS:
    cargo run --release -p kiln-bench -- --out target/bench/kiln.jsonl {{ARGS}}

# Every workload on `gpu` (the adapter kiln picks; KILN_GPU_ADAPTER to choose), then each one
# as a fraction of the device's peak FP32 rate and memory bandwidth (docs/benchmarks.md,
# "GPU benchmark"). About two minutes on a data-centre GPU.
bench-gpu:
    cargo build --release -p kiln-bench -p kiln-cli
    target/release/kiln-bench --backend gpu --max-seconds 2 --timeout 120 --out target/bench/gpu.jsonl
    target/release/kiln-bench device target/bench/gpu.jsonl

# This tree against git revision BASE, side by side on this machine (alternating builds;
# ROUNDS=2 by default): a Markdown table of new/base per workload. E.g. `just bench-vs main~3
# --backend cpu --max-seconds 3`.
bench-vs base *ARGS:
    bash crates/bench/bench-vs.sh {{base}} {{ARGS}}

# kiln vs PyTorch / torch.compile / JAX / ONNX Runtime / NumPy (needs crates/bench/peers/requirements.txt):
# ratio table on stdout, bar chart in target/bench/ratios.svg.
bench-compare python="python3":
    cargo run --release -p kiln-bench -- --out target/bench/kiln.jsonl --json-only
    {{python}} crates/bench/peers/bench_peers.py --out target/bench/peers.jsonl
    cargo run --release -p kiln-bench -- compare target/bench/kiln.jsonl target/bench/peers.jsonl --svg target/bench/ratios.svg
