# Gig'MCP developer entry points. `make run` and `make test` are the two set-up commands.
CARGO ?= cargo
PEERS ?= .peers
export CARGO_TERM_COLOR ?= never

.PHONY: all build run test test-local test-e2e lint bench soak fuzz fuzz-cov peers clean bootstrap docs-check

all: build

build:
	$(CARGO) build --workspace --all-targets

## Build and start the gateway on embedded defaults (echo backend, generated dev token).
## Builds what `make test` builds (all targets: one feature set), so neither rebuilds the other.
run: bootstrap build
	scripts/run-dev.sh

## Install the pinned test peers (apt as root, pip venv and npm into $(PEERS)/) when missing.
peers:
	tests/peers/install-peers.sh $(PEERS)

## Everything: lint, Rust unit + integration tests, end-to-end tests with real MCP clients.
test: peers lint build docs-check
	GIG_REQUIRE_SANDBOX=1 scripts/with-postgres.sh $(CARGO) test --workspace
	@# The escape matrix's tally (the full table: add --nocapture to the test).
	@GIG_REQUIRE_SANDBOX=1 $(CARGO) test -q -p gig-sandbox --test escape_matrix \
	  escape_matrix_every_attempt_is_blocked -- --nocapture 2>&1 | grep -E '^(escape matrix|cgroups):'
	$(MAKE) test-e2e

## Host-side Rust tests only (the store's Postgres tests skip without GIG_TEST_DATABASE_URL).
test-local:
	$(CARGO) build --workspace
	$(CARGO) test --workspace

## End-to-end tests with the real peers (needs `make peers` and a workspace build).
test-e2e:
	$(PEERS)/bin/python -m pytest tests/e2e -v -s
	@# The control plane again on PostgreSQL (a fresh database per gateway).
	scripts/with-postgres.sh env GIG_E2E_DATABASE=postgres $(PEERS)/bin/python -m pytest -v \
	  tests/e2e/test_control_plane.py tests/e2e/test_profiles.py tests/e2e/test_api_contract.py \
	  tests/e2e/test_api_servers.py tests/e2e/test_api_operations.py tests/e2e/test_oauth.py \
	  tests/e2e/test_upstream_oauth.py

## The in-sandbox init, statically linked (needs nothing from the sandbox's filesystem).
bootstrap:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p gig-bootstrap \
	  --target $$(rustc -vV | sed -n 's/^host: //p') --target-dir target/static
	@echo "GIG_BOOTSTRAP=$$(pwd)/target/static/$$(rustc -vV | sed -n 's/^host: //p')/release/bootstrap"

## Every command block marked runnable in the docs, against the built binaries.
docs-check: build
	scripts/docs-check.py

## Formatting, clippy, and cargo-deny's bans, licenses and sources (deny.toml); cargo-deny is
## built once into $(PEERS)/cargo when missing (scripts/cargo-deny.sh). Not `advisories`: its
## database is fetched from the network at check time, which CI here cannot reach.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The entry points only the coverage-guided harness (fuzz/, outside the workspace) uses.
	$(CARGO) clippy -p gig-proxy -p gig-api --features gig-proxy/fuzzing,gig-api/fuzzing -- -D warnings
	scripts/cargo-deny.sh $(PEERS) --locked check --hide-inclusion-graph bans licenses sources

## The property-based fuzz targets (docs/reliability.md#fuzzing) with 10x their default inputs
## (FUZZ_CASES_FACTOR; PROPTEST_CASES=N sets one count for every target instead); prints
## each target's inputs tried and the wall time. `cargo test` runs them with the defaults.
FUZZ_CASES_FACTOR ?= 10
FUZZ_RUNS = gig-gateway:--test:fuzz gig-registry-schema:--test:fuzz gig-oci:--test:fuzz \
	gig-proxy:--lib:fuzz gig-config:--lib:fuzz gig-api:--lib:fuzz
fuzz:
	@$(CARGO) test -q --no-run $(foreach r,$(FUZZ_RUNS),-p $(word 1,$(subst :, ,$(r)))) --lib --tests
	@start=$$(date +%s); : > .fuzz.log; \
	for run in $(FUZZ_RUNS); do \
	  set -- $$(echo $$run | tr ':' ' '); \
	  GIG_FUZZ_FACTOR=$(FUZZ_CASES_FACTOR) $(CARGO) test -q -p $$1 $$2 $$3 -- --nocapture \
	    >> .fuzz.log 2>&1 || { cat .fuzz.log; exit 1; }; \
	done; \
	grep -a '^\.*fuzz ' .fuzz.log | sed 's/^\.*//' | sort; \
	echo "fuzz: $$(grep -a '^\.*fuzz ' .fuzz.log | wc -l) targets, $$(grep -ao 'fuzz [^ ]*: [0-9]*' .fuzz.log | awk '{s+=$$3} END {print s}') inputs, $$(( $$(date +%s) - start )) s"

## Coverage-guided fuzzing (libFuzzer via cargo-fuzz, stable toolchain; docs/reliability.md#fuzzing):
## builds fuzz/ (its own workspace, outside `--workspace`) and runs each target FUZZ_SECONDS from
## fuzz/corpus/<target>; FUZZ_TARGETS picks targets, FUZZ_MERGE=1 minimises new inputs into the corpus.
FUZZ_SECONDS ?= 30
fuzz-cov:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz-cov.sh

## Gateway in both protocol eras vs direct stdio vs the generator's ceiling, real SDK clients
## through the gateway vs direct (release build; fails on a latency floor), then isolation costs.
bench: peers
	PEERS=$(PEERS) scripts/bench.sh
	scripts/bench-isolation.sh

## Opt-in, one hour: the load test's mixed workload (5,000 idle sessions, 100 sandboxed servers)
## sampled each minute; the series in .soak/soak.csv and .soak/soak.png; fails on growth after warm-up.
soak: peers build
	$(PEERS)/bin/python -m pip install -q matplotlib
	LOAD_SECONDS=$${LOAD_SECONDS:-3600} LOAD_SAMPLE_SECONDS=60 SOAK_OUT=$(CURDIR)/.soak \
	  $(PEERS)/bin/python -m pytest tests/e2e/test_load.py -v -s

clean:
	$(CARGO) clean
	rm -rf $(PEERS) .bench .soak
