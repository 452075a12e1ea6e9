#!/usr/bin/env bash
# Tests of the Helm chart, deploy/ and the Dockerfile.
# Needs: pip install -r tests/chart/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m pytest -q tests/chart "$@"
