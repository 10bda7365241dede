#!/usr/bin/env bash
# The test command: installs what is missing (the same set-up as run_all.sh), then runs pytest.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k mixture`.
set -euo pipefail
cd "$(dirname "$0")/.."
./run_all.sh --setup-only
exec .venv/bin/python -m pytest "$@"
