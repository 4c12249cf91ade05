# tcp-heartbeat: `make run-server`, `make run-client`, `make test`.
# ARGS passes flags, e.g. `make run-server ARGS="--idle-timeout 10s -v"`.

CARGO ?= cargo
ARGS ?=
OS_TARGETS = x86_64-pc-windows-gnu x86_64-apple-darwin

.PHONY: build run-server run-client test lint check-os bench

build:
	$(CARGO) build --release

run-server:
	$(CARGO) run --release --bin hb-server -- $(ARGS)

run-client:
	$(CARGO) run --release --bin hb-client -- $(ARGS)

test:
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Proves the library and binaries compile for Windows and macOS.
check-os:
	rustup target add $(OS_TARGETS)
	for target in $(OS_TARGETS); do $(CARGO) check --lib --bins --target $$target || exit 1; done

# Criterion micro-benchmarks of the timeout queue, then the server runs of
# scripts/bench.sh (Linux; a few minutes) and their table. Numbers and the
# machine they came from: docs/benchmarks.md.
bench:
	$(CARGO) bench --bench timeout_queue
	scripts/bench.sh
