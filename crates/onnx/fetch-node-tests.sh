#!/usr/bin/env bash
# Fetches the ONNX backend node test suite (onnx/backend/test/data/node of the pinned onnx
# wheel on PyPI, 1,765 cases) into target/onnx-node-tests/node, where
# crates/onnx/tests/conformance.rs reads it (or set KILN_ONNX_NODE_TESTS to another copy).
set -euo pipefail
version=1.22.0
root=$(cd "$(dirname "$0")/../.." && pwd)
dest="$root/target/onnx-node-tests"
if [ -f "$dest/onnx-$version" ]; then
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "onnx==$version"
rm -rf "$dest"
mkdir -p "$dest"
python3 - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
prefix = "onnx/backend/test/data/node/"
(wheel,) = glob.glob(os.path.join(tmp, "onnx-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(dest, "node", name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                dst.write(src.read())
PY
touch "$dest/onnx-$version"
echo "fetched $(ls "$dest/node" | wc -l) ONNX node test cases into $dest/node"
