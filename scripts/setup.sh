#!/usr/bin/env bash
# Creates .venv and installs SEM Triage into it (once; again only when pyproject.toml changes).
# Usage: scripts/setup.sh [dev]   — picks onnxruntime-gpu only where an NVIDIA GPU answers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "SEM Triage needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1)" >&2; exit 1; }

runtime=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then runtime=gpu; fi
extras="$runtime"
[ "${1:-}" = dev ] && extras="$runtime,dev"

stamp=".venv/.semtriage-installed"
hash="$(sha256sum pyproject.toml | cut -c1-16)"
want="$hash $extras"
# installed for this pyproject.toml with at least the extras asked for (the dev install of
# scripts/test.sh is a superset the app accepts): nothing to do
if [ -f "$stamp" ]; then
  read -r have_hash have_extras < "$stamp" || true
  if [ "${have_hash:-}" = "$hash" ]; then
    missing=0
    for e in ${extras//,/ }; do
      case ",${have_extras:-}," in *",$e,"*) ;; *) missing=1 ;; esac
    done
    [ "$missing" = 0 ] && exit 0
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# onnxruntime and onnxruntime-gpu install the same module: never both in one environment
other=$([ "$runtime" = gpu ] && echo onnxruntime || echo onnxruntime-gpu)
.venv/bin/python -m pip uninstall --quiet --yes "$other" >/dev/null 2>&1 || true
echo "Installing SEM Triage ($extras) into .venv …" >&2
# torch is pinned (2.13.0, CPU build where offered) in pyproject.toml
.venv/bin/python -m pip install --quiet -e ".[$extras]" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
.venv/bin/python -c "import core, onnxruntime, torch, streamlit" || { echo "install failed" >&2; exit 1; }
echo "$want" > "$stamp"
