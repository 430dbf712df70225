# kiln task runner (https://github.com/casey/just)

# Run the whole test suite (the same command CI runs).
test:
    cargo test --workspace --release

# Lint: formatting and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the workspace.
fmt:
    cargo fmt --all

# Regenerate golden expectations: PyTorch/JAX fixtures (needs the Python env from
# fixtures/gen/requirements.txt) and the text filetests.
bless:
    python3 fixtures/gen/gen_golden.py
    BLESS=1 cargo test --workspace --release filetest

# Build SimpleNN and evaluate it.
example:
    cargo run --release -p kiln --example simple_nn

# CI locally.
ci:
    bash .ci/run
