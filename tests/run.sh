#!/usr/bin/env bash
# The test command: installs what is missing (the same set-up as run_all.sh), then runs pytest.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k mixture`.
set -euo pipefail
cd "$(dirname "$0")/.."
# With GAPKIT_PYTHON=PATH the tests run in that existing environment (see run_all.sh --python).
./run_all.sh --setup-only
if [[ -n "${GAPKIT_PYTHON:-}" ]]; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    exec "$GAPKIT_PYTHON" -m pytest "$@"
fi
exec .venv/bin/python -m pytest "$@"
