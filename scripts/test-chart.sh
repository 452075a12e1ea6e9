#!/usr/bin/env bash
# Tests of the Helm chart, deploy/ and the Dockerfile.
# Needs: pip install -r tests/chart/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/.."
# No .pytest_cache or __pycache__ left in the work tree.
export PYTHONDONTWRITEBYTECODE=1
exec python3 -m pytest -q -p no:cacheprovider tests/chart "$@"
