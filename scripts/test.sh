#!/usr/bin/env bash
# Runs every test: unit and integration tests of the Rust workspace (real
# Redis, PostgreSQL, gateway and worker processes, all started by the
# `testkit` crate; the deploy/ and grafana/ checks are workspace members),
# then the browser tests (headless Chromium against the real stack, started
# by the `testkit` binary that --bins builds). The alert rules are checked
# by promtool (Debian's prometheus package) first; the REST API is fuzzed
# from its OpenAPI description (schemathesis, scripts/api-fuzz.sh).
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
ensure_redis 6379 "${TMPDIR:-/tmp}/chat-test-redis"
ensure_postgres
ensure_s3s_fs
command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v promtool >/dev/null 2>&1 || apt_install prometheus
ulimit -n 20000 2>/dev/null || true

echo "== build"
# The console first: the gateway embeds web/dist when it is compiled.
scripts/web-build.sh
cargo build --workspace --bins --tests --quiet

echo "== alert rules (promtool)"
# Syntax and PromQL of the rules, and the scrape config that loads them;
# grafana/tests/alerts.rs checks their metrics against running processes.
promtool check rules grafana/alerts.yml
promtool check config grafana/prometheus.yml
# Each alert fires on its condition and not on a quiet stack (unit tests).
promtool test rules grafana/alerts.test.yml

echo "== rust tests"
cargo test --workspace --no-fail-fast --quiet -- --test-threads=4

echo "== REST API fuzzing (schemathesis, from GET /api/openapi.json)"
scripts/api-fuzz.sh target/debug

echo "== websocket conformance (Autobahn 1-10)"
scripts/autobahn.sh target/debug/gateway

echo "== browser tests"
(cd web && CHAT_BIN_DIR="$PWD/../target/debug" npm run --silent e2e)
