# Shared helpers for scripts/dev.sh and scripts/test.sh (sourced, not run).

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_install() {
  # Installs Debian packages that are missing (quietly; once per package).
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

redis_up() {
  # $1: host, $2: port
  redis-cli -h "$1" -p "$2" ping 2>/dev/null | grep -q PONG
}

ensure_redis() {
  # Starts a private redis-server on 127.0.0.1:$1 (in $2) when none answers.
  local port=$1 dir=$2
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
  if redis_up 127.0.0.1 "$port"; then return 0; fi
  mkdir -p "$dir"
  echo "starting redis-server on 127.0.0.1:$port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --save "" --appendonly no --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
  for _ in $(seq 1 50); do redis_up 127.0.0.1 "$port" && return 0; sleep 0.1; done
  echo "redis-server did not start; see $dir/redis.log" >&2
  return 1
}

ensure_postgres() {
  # PostgreSQL on 127.0.0.1:5432 with trust auth for the tests.
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return 0; fi
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  local ver
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -z "$ver" ]; then echo "no PostgreSQL cluster found" >&2; return 1; fi
  echo "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 100); do pg_isready -h 127.0.0.1 -p 5432 -q && return 0; sleep 0.1; done
  echo "PostgreSQL did not start" >&2
  return 1
}

ensure_toolchain() {
  command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; return 1; }
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
}

pip_tool() {
  # A PyPI tool in its own venv under .cache/ (installed once per version):
  #   bin=$(pip_tool schemathesis schemathesis==4.32.5)   # -> the venv's bin dir
  local name=$1 spec=$2 venv="$PWD/.cache/venv-$1"
  if [ ! -x "$venv/bin/$name" ] || [ "$(cat "$venv/.spec" 2>/dev/null)" != "$spec" ]; then
    python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv; python3 -m venv "$venv"; }
    echo "installing $spec into $venv" >&2
    "$venv/bin/pip" install -q "$spec" >&2
    echo "$spec" > "$venv/.spec"
  fi
  echo "$venv/bin"
}

# The S3-compatible server the attachment tests store files in (an S3 API
# over a directory, from crates.io). 0.14.1: the newest that builds with
# the toolchain here (0.17 needs rustc 1.96).
S3S_FS_VERSION=0.14.1
ensure_s3s_fs() {
  local have
  have="$( (command -v s3s-fs >/dev/null 2>&1 && s3s-fs --version) 2>/dev/null || true)"
  case "$have" in *"$S3S_FS_VERSION"*) return 0 ;; esac
  echo "installing s3s-fs $S3S_FS_VERSION (cargo install)"
  cargo install --quiet --locked "s3s-fs@$S3S_FS_VERSION" --features binary
}
