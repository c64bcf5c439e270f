# audit_ext build and test entry points (PostgreSQL 15, pgrx 0.18.0). `make help` lists them.
# Throwaway clusters live in .test/ .demo/ .bench/ (or /tmp/audit_ext-NAME when the
# postgres OS user cannot reach this checkout); see tests/tools/cluster.sh.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
MAKEFLAGS += --no-print-directory

PG_CONFIG  ?= /usr/lib/postgresql/15/bin/pg_config
PGBIN      ?= /usr/lib/postgresql/15/bin
TEST_PORT  ?= 5498
PRELOAD_PORT ?= 5496
DATES_PORT ?= 5495
DEMO_PORT  ?= 5499
BENCH_PORT ?= 5497
# extra postgresql.conf lines for every cluster, ';'-separated, e.g.
#   make test CLUSTER_OPTS="shared_preload_libraries='audit_ext'"
CLUSTER_OPTS ?=
export PG_CONFIG PGBIN TEST_PORT DEMO_PORT BENCH_PORT CLUSTER_OPTS PRELOAD_PORT DATES_PORT
export PATH := $(HOME)/.cargo/bin:$(PATH)

CLUSTER := tests/tools/cluster.sh
# as root, cargo pgrx writes into the system PostgreSQL directly; otherwise through sudo
SUDO_FLAG := $(if $(filter 0,$(shell id -u)),,--sudo)

.PHONY: help deps build install installcheck lint unit regress regress-preload dates integration test demo psql demo-stop bench bench-capture bench-alerts bench-retention bench-scale clean

help:
	@echo "make deps         install missing apt packages, cargo-pgrx 0.18.0, cargo pgrx init"
	@echo "make build        cargo build --release"
	@echo "make install      install the extension into the system PostgreSQL 15"
	@echo "make lint         cargo fmt --all --check, cargo clippy -D warnings (audit_ext, audit_core), tests/tools/lint_rules.py (SQLSTATEs and own events in README, no import circle, unsafe only in src/pg/)"
	@echo "make unit         cargo test -p audit_core, then the #[pg_test] unit tests (cargo pgrx test pg15)"
	@echo "make regress      pg_regress tests in tests/pg_regress (cluster 'test', port $(TEST_PORT))"
	@echo "make installcheck the same against an installed, running server (PGHOST, PGPORT, PGUSER; default the local one)"
	@echo "make regress-preload  the same with shared_preload_libraries = 'audit_ext' (cluster 'preload', port $(PRELOAD_PORT))"
	@echo "make dates        the clock-dependent regress tests with the server's clock at month/year ends and a leap day (libfaketime)"
	@echo "make integration  tests/integration/t_*.sh (cluster 'test', port $(TEST_PORT))"
	@echo "make test         deps + lint + unit + regress + regress-preload + dates + integration, then stops the clusters"
	@echo "make demo         run docs/demo.sql on cluster 'demo' (port $(DEMO_PORT)), leave it running"
	@echo "make psql         psql on the demo cluster;  make demo-stop  stops it"
	@echo "make bench        run bench/run.sh, capture.sh, alerts.sh and retention.sh on cluster 'bench' (port $(BENCH_PORT))"
	@echo "make bench-capture  only the row capture benchmark (bench/capture.sh)"
	@echo "make bench-alerts   only the alerts and search benchmark (bench/alerts.sh)"
	@echo "make bench-retention  only the retention benchmark (bench/retention.sh)"
	@echo "make bench-scale  record and incremental verify at 0, 1M, 5M, 10M events (bench/scale.sh, ~25 min)"
	@echo "make clean        remove all clusters and cargo clean"

deps:
	@tests/tools/deps.sh

build: deps
	cargo build --release

# cargo pgrx install writes the current version's script and the upgrade scripts
# (sql/audit_ext--A--B.sql); the released scripts of earlier versions (frozen in sql/) are
# installed beside them, so that CREATE EXTENSION audit_ext VERSION 'A' and updates from A work.
install: deps
	cargo pgrx install --release --pg-config $(PG_CONFIG) $(SUDO_FLAG)
	$(if $(SUDO_FLAG),sudo) install -m 644 $$(ls sql/audit_ext--*.sql | grep -vE -- '--.+--') "$$($(PG_CONFIG) --sharedir)/extension/"

lint: deps
	cargo fmt --all --check
	cargo clippy --release --features pg15 -- -D warnings
	cargo clippy -p audit_core --all-targets -- -D warnings
	tests/tools/lint_rules.py
	@echo "4 passed, 0 failed"

unit: deps
	tests/tools/unit.sh

regress: install
	@$(CLUSTER) start test $(TEST_PORT)
	eval "$$($(CLUSTER) env test)" && $(MAKE) installcheck

# the regress suite against an installed, running server (PGHOST, PGPORT, PGUSER), as PGXS
# extensions have it; `make regress` runs it against the test cluster
installcheck:
	tests/tools/regress.sh --server

# (audit_ext.level = off: the side channel's login and denied-statement events would shift
# the event ids the expected output shows; tests/integration/t_68_side_channel.sh tests it)
regress-preload: install
	@CLUSTER_OPTS="shared_preload_libraries='audit_ext';audit_ext.level=off" $(CLUSTER) start preload $(PRELOAD_PORT)
	rc=0; tests/tools/regress.sh preload || rc=$$?; $(CLUSTER) stop preload; exit $$rc

dates: install
	tests/tools/dates.sh

integration: install
	tests/integration/run.sh

test:
	@tests/tools/test_all.sh

demo: install
	@test -f docs/demo.sql || { echo "docs/demo.sql not found" >&2; exit 1; }
	@$(CLUSTER) start demo $(DEMO_PORT) audit_demo
	@eval "$$($(CLUSTER) env demo audit_demo)"; \
	  PGOPTIONS='-c client_min_messages=warning' $(PGBIN)/psql -Xq -d postgres \
	    -c 'DROP DATABASE IF EXISTS audit_demo WITH (FORCE)' -c 'CREATE DATABASE audit_demo'; \
	  $(PGBIN)/psql -X -v ON_ERROR_STOP=1 -e -f docs/demo.sql
	@echo
	@echo "The demo cluster keeps running on port $(DEMO_PORT) (database audit_demo)."
	@echo "  make psql        open psql on it"
	@echo "  make demo-stop   stop it"

psql:
	@$(CLUSTER) status demo >/dev/null || { echo "demo cluster is not running: run 'make demo' first" >&2; exit 1; }
	@eval "$$($(CLUSTER) env demo audit_demo)"; $(PGBIN)/psql

demo-stop:
	$(CLUSTER) stop demo

bench: install
	@test -f bench/run.sh || { echo "bench/run.sh not found: nothing to run"; exit 0; }; \
	$(CLUSTER) start bench $(BENCH_PORT) audit_bench; \
	trap '$(CLUSTER) stop bench' EXIT; \
	eval "$$($(CLUSTER) env bench audit_bench)"; \
	PATH=$(PGBIN):$$PATH bash bench/run.sh; \
	PATH=$(PGBIN):$$PATH bash bench/capture.sh; \
	PATH=$(PGBIN):$$PATH bash bench/alerts.sh; \
	PATH=$(PGBIN):$$PATH bash bench/retention.sh

bench-alerts: install
	@$(CLUSTER) start bench $(BENCH_PORT) audit_bench; \
	trap '$(CLUSTER) stop bench' EXIT; \
	PATH=$(PGBIN):$$PATH bash bench/alerts.sh

bench-retention: install
	@$(CLUSTER) start bench $(BENCH_PORT) audit_bench; \
	trap '$(CLUSTER) stop bench' EXIT; \
	PATH=$(PGBIN):$$PATH bash bench/retention.sh

bench-capture: install
	@$(CLUSTER) start bench $(BENCH_PORT) audit_bench; \
	trap '$(CLUSTER) stop bench' EXIT; \
	PATH=$(PGBIN):$$PATH bash bench/capture.sh

bench-scale: install
	@$(CLUSTER) start bench $(BENCH_PORT) audit_bench; \
	trap '$(CLUSTER) stop bench' EXIT; \
	PATH=$(PGBIN):$$PATH bash bench/scale.sh

clean:
	-tests/tools/unit.sh --clean
	-for c in $$($(CLUSTER) list); do $(CLUSTER) destroy $$c; done
	rm -rf .test .demo .bench tests/pg_regress/results tests/pg_regress/regression.*
	cargo clean
