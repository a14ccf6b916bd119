#!/usr/bin/env bash
# Start SEM Triage on the embedded default: demo images + the default model, no configuration.
# With SEMTRIAGE_DB naming a lab's own database, no demo is built into it: the database is
# created (or migrated) with the shipped default model registered, and the app opens on it.
# Extra arguments go to `streamlit run` (e.g. --server.port 8600).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
default_db="$(pwd)/data/semtriage.db"
if [ -z "${SEMTRIAGE_DB:-}" ] || [ "$(realpath -m "$SEMTRIAGE_DB")" = "$default_db" ]; then
  .venv/bin/semtriage demo          # generates, ingests and predicts the demo once; then a no-op
else
  .venv/bin/semtriage init          # a lab's database: never the demo's images
fi
exec .venv/bin/streamlit run app.py --server.headless true --browser.gatherUsageStats false "$@"
