#!/usr/bin/env bash
# Lint (scripts/lint.sh), then run the whole test suite (sets up .venv and Debian's chromium for
# the browser tests).
# Extra arguments go to pytest (e.g. -k review, -m "not browser").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for the browser tests …" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "WARNING: could not install chromium; browser tests will be skipped" >&2
  else
    echo "WARNING: /usr/bin/chromium missing and not root: browser tests will be skipped" >&2
  fi
fi
scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
