# Sourced by ci/gpu and ci/gpu-bench: the interpreter and, on an offline CUDA machine, the
# pure-Python wheels brought in .whl/ (shared/gpu/README.md: `fetch-wheels.sh tqdm`),
# installed into a temporary directory, with the checkout on PYTHONPATH.
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
    site="${TMPDIR:-/tmp}/portable_rnn_site"
    "$PY" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl || exit 1
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export CUPY_TF32=0  # full float32 matrix products; the tests and bench set JAX and PyTorch likewise
command -v nvidia-smi > /dev/null && nvidia-smi -L
