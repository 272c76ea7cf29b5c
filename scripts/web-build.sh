#!/usr/bin/env bash
# Builds the web console and widget into web/dist (served by the gateway).
# Installs node modules when they are missing or package-lock.json changed, and
# skips the build when no input is newer than the last build. Safe to run again.
#   scripts/web-build.sh           build if needed
#   scripts/web-build.sh --force   always rebuild
set -euo pipefail

cd "$(dirname "$0")/../web"

if ! command -v npm >/dev/null 2>&1; then
  echo "web-build: npm is not installed (apt-get install -y nodejs npm)" >&2
  exit 1
fi

# node_modules/.package-lock.json is written by npm on every install: older than
# package-lock.json means the lock file changed since.
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "web-build: installing node modules (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

stamp=dist/.build-stamp
if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ -f dist/index.html ] && [ -f dist/widget.html ]; then
  changed=$(find src index.html widget.html vite.config.ts tsconfig.json package.json package-lock.json -newer "$stamp" -print -quit 2>/dev/null || true)
  if [ -z "$changed" ]; then
    echo "web-build: web/dist is up to date"
    exit 0
  fi
fi

echo "web-build: building web/dist"
npm run --silent build
touch "$stamp"
