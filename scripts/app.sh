#!/usr/bin/env bash
# Start SEM Triage on the embedded default: demo images + the default model, no configuration.
# Extra arguments go to `streamlit run` (e.g. --server.port 8600).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/semtriage demo            # generates, ingests and predicts the demo once; then a no-op
exec .venv/bin/streamlit run app.py --server.headless true --browser.gatherUsageStats false "$@"
