#!/usr/bin/env bash
# What a newcomer does on a fresh machine: a new virtual environment in .venv, then
# the README's two quick-start commands, verbatim (read from README.md by
# ci/readme_commands.py): install and run the main job; install the test needs and
# run the test suite. CI requires every CPU backend in that run (an environment
# variable; the command itself is unchanged) and treats pytest's exit code 5 (no tests
# collected) as a failure.
# Usage: bash ci/newcomer.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
rm -rf .venv
"$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
mapfile -t cmds < <(python ci/readme_commands.py README.md)
if [ "${#cmds[@]}" -ne 2 ]; then
    echo "ci/newcomer.sh: the README's quick start has ${#cmds[@]} commands, not 2" >&2
    exit 1
fi
export PORTABLE_RNN_TEST_BACKENDS=${PORTABLE_RNN_TEST_BACKENDS:-numpy,numpy:readonly,array_api_strict,array_api_strict:strictest,jax,torch,dask}
for i in 0 1; do
    echo
    echo "=== README command $((i + 1)) of 2, verbatim: ${cmds[$i]}"
    set +e
    bash -euo pipefail -c "${cmds[$i]}"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then
        echo "ci/newcomer.sh: pytest collected no tests (exit code 5); that is a failure here" >&2
        exit 1
    elif [ "$rc" -ne 0 ]; then
        echo "ci/newcomer.sh: README command $((i + 1)) failed with exit code $rc" >&2
        exit "$rc"
    fi
done
echo
echo "ci/newcomer.sh: both README commands passed"
