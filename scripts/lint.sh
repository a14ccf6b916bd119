#!/usr/bin/env bash
# The one lint command (scripts/test.sh runs it before the tests): ruff over the code, mypy over
# core/ and ui/ (pyproject [tool.mypy]), import-linter's package contracts (pyproject
# [tool.importlinter]: layers, no Streamlit in core, torch in core.training only).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/ruff ] || scripts/setup.sh dev
echo "ruff …" >&2
.venv/bin/ruff check core ui app.py pages tests bench
echo "mypy …" >&2
.venv/bin/mypy
echo "import-linter …" >&2
.venv/bin/lint-imports --no-cache
