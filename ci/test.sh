#!/usr/bin/env bash
# The checks CI runs, in the environment made by ci/setup.sh (or any
# environment with portable_rnn[dev] installed). Usage: bash ci/test.sh
# With --after-readme (CI, after ci/newcomer.sh ran the suite and the main job): the
# suite's step runs only the tests that change once CuPy is installed (it is installed
# only now), and the short training run is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
after_readme=0
if [ "${1:-}" = "--after-readme" ]; then after_readme=1; fi
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi
status=0
step() { echo; echo "=== $*"; }

step "lint: ruff"
"$PY" -m ruff check portable_rnn tests benchmarks || status=1
"$PY" -m ruff format --check portable_rnn tests benchmarks || status=1

step "types: basedpyright (basic mode, portable_rnn/)"
"$PY" -m basedpyright || status=1

if [ "$after_readme" -eq 1 ]; then
    # the tests that behave differently once CuPy is installed (it is not in the README's
    # environment): its kernel traces, and a GPU asked of an installed CuPy with no GPU.
    # Not the rest of test_fused.py and test_fuzz.py: their cases on the CPU backends do
    # not depend on CuPy and ran in the suite (a name not found here is an error)
    suite=(
        tests/test_fused.py::test_cupy_fuses_each_function_into_one_kernel_in_its_dtype
        tests/test_fused.py::test_one_cupy_fuse_object_per_function
        tests/test_config.py
        tests/test_fuzz.py::test_fuzz_init_params
        tests/test_fuzz.py::test_fuzz_init_multilayer_params
        tests/test_fuzz.py::test_fuzz_to_backend
    )
    step "tests: with CuPy installed (its kernel traces required), ${suite[*]}; the suite ran in ci/newcomer.sh"
else
    suite=()
    step "tests: the README's test command, every CPU backend required"
fi
# On CI no CPU backend may be skipped: naming them makes a missing one an error.
export PORTABLE_RNN_TEST_BACKENDS=${PORTABLE_RNN_TEST_BACKENDS:-numpy,numpy:readonly,array_api_strict,array_api_strict:strictest,jax,torch,dask}
# CuPy is installed on CI (no GPU): the tests that trace its fused kernels must run, not skip.
export PORTABLE_RNN_REQUIRE_CUPY=${PORTABLE_RNN_REQUIRE_CUPY:-1}
# The README's command: on every core (pytest-xdist), each worker a process of its own.
"$PY" -m pytest -n auto "${suite[@]}"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "ci/test.sh: pytest collected no tests (exit code 5); that is a failure here"
    status=1
elif [ "$rc" -ne 0 ]; then
    status=1
fi

step "cross-backend conformance: python -m portable_rnn (portable-rnn check)"
"$PY" -m portable_rnn || status=1

if [ "$after_readme" -eq 0 ]; then
    step "main job, short: portable-rnn train on the embedded corpus, then sample"
    out="${TMPDIR:-/tmp}/portable_rnn_ci_charlm.npz"
    "$PY" -m portable_rnn train --steps 150 --eval-every 75 --hidden 128 --no-progress --out "$out" \
        && "$PY" -m portable_rnn sample --checkpoint "$out" --length 200 --seed 0 --prime "The " \
        || status=1
fi

step "docs: mkdocs build --strict"
# not --quiet: mkdocs counts for --strict only the warnings it logs, and --quiet logs none
# (a build with nine griffe and link warnings passed that way)
log="${TMPDIR:-/tmp}/portable_rnn_mkdocs.log"
if NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --site-dir "${TMPDIR:-/tmp}/portable_rnn_site" \
    >"$log" 2>&1; then
    echo "docs built without a warning"
else
    grep -v '^INFO' "$log"
    status=1
fi

echo
if [ "$status" -eq 0 ]; then echo "ci/test.sh: all checks passed"; else echo "ci/test.sh: FAILED"; fi
exit "$status"
