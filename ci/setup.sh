#!/usr/bin/env bash
# Set up from nothing: a virtual environment in .venv with portable_rnn and
# every CPU backend (numpy, array_api_strict, jax, torch), CuPy (to trace its
# kernels; no GPU needed), the test, type-check and docs tools.
# Usage: bash ci/setup.sh         (from the repository root: a new .venv)
#        bash ci/setup.sh --add   (into the existing .venv, as CI does after ci/newcomer.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ "${1:-}" != "--add" ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
# cuda13: CuPy installs and imports without a GPU; the suite traces its fused kernels here.
.venv/bin/python -m pip install --quiet -c ci/constraints.txt -e ".[dev,cuda13]"
.venv/bin/python - <<'PY'
import importlib.metadata as md
names = ["numpy", "cupy-cuda13x", "array-api-compat", "array-api-strict", "jax", "jaxlib", "torch", "pytest", "mkdocs", "tqdm", "matplotlib", "basedpyright"]
print("installed:", ", ".join(f"{n} {md.version(n)}" for n in names))
PY
