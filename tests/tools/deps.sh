#!/usr/bin/env bash
# Install whatever the build and tests need that is missing; silent when all is present.
set -euo pipefail

PGRX_VERSION=0.18.0
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
APT_PKGS=(postgresql-15 postgresql-server-dev-15 libclang-dev clang build-essential pkg-config sudo python3 python3-psycopg faketime rsyslog rsyslog-gnutls openssl)
# Wanted, not required: the report_html test renders the page in a real browser
# (tests/integration/t_89_report.sh) and says "skip" where Chromium cannot be installed.
APT_OPTIONAL=(chromium)
export PATH=$HOME/.cargo/bin:$PATH

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for p in "${APT_OPTIONAL[@]}"; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    echo "deps: apt-get install $p"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null 2>&1 \
      || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null 2>&1; } \
      || echo "deps: $p could not be installed; the tests that need it will say skip"
  fi
done

# postgresql-15 creates it; make sure anyway (test clusters run as this user when we are root)
if ! getent passwd postgres >/dev/null; then
  echo "deps: creating OS user postgres"
  as_root useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

command -v cargo >/dev/null || { echo "deps: cargo not found (install a Rust toolchain)" >&2; exit 1; }

if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
  echo "deps: cargo install cargo-pgrx $PGRX_VERSION (takes several minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# Published parsers and an Ed25519 implementation the export and checkpoint tests check
# audit_ext's output with (tests/integration/t_88_export.sh, t_92_checkpoint.sh),
# kept beside the checkout (.pylib/, git-ignored) rather than in the system's Python.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY_PKGS=(syslog-rfc5424-parser==0.3.2 cryptography)
if ! PYTHONPATH="$ROOT/.pylib" python3 -c "import syslog_rfc5424_parser, cryptography" 2>/dev/null; then
  echo "deps: pip install --target .pylib ${PY_PKGS[*]}"
  python3 -m pip install -q --disable-pip-version-check --target "$ROOT/.pylib" "${PY_PKGS[@]}" 2>&1 | grep -v "^WARNING: Running pip as" || true
  PYTHONPATH="$ROOT/.pylib" python3 -c 'import syslog_rfc5424_parser, cryptography' \
    || { echo "deps: could not install ${PY_PKGS[*]} from PyPI" >&2; exit 1; }
fi

PGRX_HOME=${PGRX_HOME:-$HOME/.pgrx}
if ! grep -qx "pg15 = \"$PG_CONFIG\"" "$PGRX_HOME/config.toml" 2>/dev/null; then
  echo "deps: cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi
