# tcp-heartbeat: `make run-server`, `make run-client`, `make test`.
# ARGS passes flags, e.g. `make run-server ARGS="--idle-timeout 10s -v"`.

CARGO ?= cargo
ARGS ?=
OS_TARGETS = x86_64-pc-windows-gnu x86_64-apple-darwin
PREFIX ?= /usr/local
DESTDIR ?=
export CARGO PREFIX DESTDIR

.PHONY: build run-server run-client test test-windows lint check-os bench bench-reaper bench-echo bench-metrics bench-tls memory memory-tls capacity faults faults-report hardening-full restart-storm hardening-trust fuzz image dist install test-ship idle-timeout idle-report

build:
	$(CARGO) build --release

run-server:
	$(CARGO) run --release --bin hb-server -- $(ARGS)

run-client:
	$(CARGO) run --release --bin hb-client -- $(ARGS)

test:
	$(CARGO) test --all-targets --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

# Proves the library and binaries compile for Windows and macOS. ring
# (rustls's crypto) compiles C for the target: mingw-w64's gcc for Windows;
# for macOS, with no Apple SDK here, clang freestanding, with
# scripts/check-os/ standing in for the SDK's one header ring reads (the
# objects are never linked: `cargo check` only runs the build script).
check-os:
	rustup target add $(OS_TARGETS)
	for target in $(OS_TARGETS); do \
	  CC_x86_64_apple_darwin=clang \
	  CFLAGS_x86_64_apple_darwin="-ffreestanding -DRING_CORE_NOSTDLIBINC -I$(CURDIR)/scripts/check-os" \
	  $(CARGO) check --lib --bins --target $$target || exit 1; done

# The container image localhost/tcp-heartbeat:latest and :VERSION, FROM
# scratch with the static (musl) hb-server and hb-client, built by podman
# (or docker) from deploy/Containerfile (scripts/image.sh; needs rustup and
# podman; fails over 16 MB).
image:
	scripts/image.sh

# dist/: the Linux (static, musl) tar.gz and the Windows zip, each with
# README, docs, deploy/, man pages and completions, and SHA256SUMS
# (scripts/dist.sh; needs rustup, mingw-w64, zip).
dist:
	scripts/dist.sh

# hb-server and hb-client, their man pages and bash, zsh and fish
# completions under $(DESTDIR)$(PREFIX) (scripts/install.sh).
install:
	scripts/install.sh

# What ships, tested as a user gets it (tests/ship.rs): the image run by
# podman (echo and HeartBeat through a published port, hb-client --check by
# podman exec, podman stop, size, metadata), the archives (a second
# `make dist` gives the same bytes; the static hb-server serves; the sums
# verify) and `make install` into a scratch folder. Without podman the
# image cases say SKIPPED. Root, for podman.
test-ship: dist
	cp dist/SHA256SUMS target/SHA256SUMS.first
	scripts/dist.sh >/dev/null
	cmp target/SHA256SUMS.first dist/SHA256SUMS || { echo "make dist is not reproducible: two runs differ" >&2; exit 1; }
	if command -v podman >/dev/null; then scripts/image.sh; fi
	rm -rf target/install-test
	DESTDIR=$(CURDIR)/target/install-test PREFIX=/usr/local scripts/install.sh
	$(CARGO) test --test ship -- --ignored --test-threads 1 --nocapture

# The Windows build under Wine: builds the .exe files with mingw-w64 and
# runs the process tests (tests/portable.rs, client.rs, server.rs) against
# them (scripts/test-windows.sh; needs mingw-w64, wine64, wine).
test-windows:
	scripts/test-windows.sh

# Criterion micro-benchmarks of the timeout queue, then the server runs of
# scripts/bench.sh (Linux; a few minutes) and their table. Numbers and the
# machine they came from: docs/benchmarks.md.
bench:
	$(CARGO) bench --bench timeout_queue
	scripts/bench.sh
	$(MAKE) bench-reaper

# Issue 16's table: the in-process server's CPU over 20 s with 5,000 and
# 12,000 connections heartbeating every 5 s, reaper on (--idle-timeout 15s)
# and off, and the registry lock's share of the time (about 5 minutes;
# HB_REAPER_SIZES="12000" for one size). Each side holds up to 12,000
# sockets, so the descriptor limit is raised first.
bench-reaper:
	ulimit -n 20000 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	$(CARGO) test --release --test capacity -- --ignored --exact \
	  reaper_cpu_with_heartbeating_connections_on_and_off --nocapture

# The restart of 10,000 and 100,000 --reconnect clients, simulated with
# hb-client's backoff (tests/restart_storm.rs): prints the table of
# docs/deployment.md and draws docs/restart-storm.svg (seconds).
restart-storm:
	$(CARGO) test --release --test restart_storm -- --ignored --exact restart_storm_report --nocapture

# The metrics' cost (issue 11): the 50-client echo with metrics off and on,
# alternated, and the scrape time with 10,000 connections open
# (docs/benchmarks.md; a few minutes; needs curl).
bench-metrics:
	scripts/bench_metrics.sh

# A 10 s closed-loop echo run of 50 clients against a quiet hb-server
# started for it; ARGS passes hb-bench echo flags (e.g. ARGS="-c 200").
bench-echo:
	$(CARGO) build --release --bins -q
	rm -f target/bench-echo.addr; \
	target/release/hb-server -q --listen 127.0.0.1:0 > target/bench-echo.addr & \
	server=$$!; trap 'kill $$server' EXIT; \
	until grep -q listening target/bench-echo.addr; do sleep 0.05; done; \
	target/release/hb-bench --target $$(sed -n 's/^listening on //p' target/bench-echo.addr) \
	  echo -d 10s $(ARGS)

# The memory bill per connection, hb-server vs tokio, 10,000 heartbeating
# connections (scripts/memory.sh; about 3 minutes; docs/benchmarks.md).
memory:
	scripts/memory.sh

# TLS (issue 19): 50-client echo plain vs TLS and handshakes per second
# (scripts/bench_tls.sh; about 2 minutes; needs openssl and python3), and
# the memory bill per idle connection, plain vs TLS (about 3 minutes).
bench-tls:
	scripts/bench_tls.sh

memory-tls:
	SERVERS="hb hb-tls" scripts/memory.sh

# Issue 9's full-size runs, one at a time: a mass close of 10,000
# connections (the registry lock's total hold time) and 19,900 heartbeating
# connections held for 60 s with the edge probed. Each side holds up to
# 20,000 sockets, so the descriptor limit is raised first.
capacity:
	ulimit -n 20000 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	$(CARGO) test --release --test capacity -- --ignored --nocapture --test-threads 1

# The full-size hardening runs of issue 6 (docs/hardening.md): 20,000
# connection attempts against 1,000 slots and a 100 MB line, in release.
# The flood's test process holds 1,000+ sockets, so the descriptor limit is
# raised first (as far as the hard limit allows).
hardening-full:
	ulimit -n 8192 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	$(CARGO) test --release --test hardening -- --include-ignored --nocapture --test-threads 1

# The fault-injection suite alone (also part of `make test`): real killed,
# frozen and cut-off peers. Cutting networks needs root and iproute2;
# without them those cases say SKIPPED.
faults:
	$(CARGO) test --test faults

# Runs every fault case 5 times, rewrites the table in
# docs/failure-detection.md and draws the same results as
# docs/failure-detection.svg (HB_FAULTS_RUNS changes the count).
faults-report:
	HB_FAULTS_RUNS=$${HB_FAULTS_RUNS:-5} $(CARGO) test --test faults -- --ignored --exact faults_report --nocapture

# The tests of --find-idle-timeout and --adaptive-heartbeat alone (also part
# of `make test`, about 90 s: the black-hole scenarios side by side, beside
# the localhost ones). The black hole needs root, iproute2 and nftables;
# without them those scenarios say SKIPPED.
idle-timeout:
	$(CARGO) test --test idle_timeout

# The idle-timeout search of --find-idle-timeout (issue 18), measured behind
# conntrack black holes of 5, 8, 15 and 30 s in network namespaces (root,
# iproute2, nftables) and simulated on 350 s and 30 min paths: rewrites
# the table in docs/idle-timeout.md and README.md, and draws
# docs/idle-timeout.svg (about 80 s).
idle-report:
	$(CARGO) test --test idle_timeout -- --ignored --exact idle_report --nocapture

# Issue 17's before/after numbers (docs/hardening.md), in release: the peak
# memory of 1,000 connections announcing 60 KiB PROXY headers, and a scrape's
# time behind 20 stalled connections. HB_TEST_SERVER_CMD=path measures
# another build (the "before" column).
hardening-trust:
	ulimit -n 8192 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	$(CARGO) test --release --test trust measure -- --ignored --nocapture --test-threads 1

# The coverage-guided fuzz targets (fuzz/, cargo-afl on stable Rust): the
# line protocol, the PROXY header reader and the metrics request reader,
# FUZZ_SECONDS each (40 by default: two minutes in all), each started from
# the seeds of tests/fuzz/seeds.rs. Fails if afl saved a crash (they stay in
# target/fuzz/out/TARGET/default/crashes). Needs `cargo install cargo-afl`
# (which builds AFL++; needs make and a C compiler). The same checks run
# under proptest in `make test` (HB_FUZZ_CASES cases each, 2,000 by default).
FUZZ_SECONDS ?= 40
FUZZ_TARGETS = lines headers requests
fuzz:
	@$(CARGO) afl --version >/dev/null 2>&1 || { echo "make fuzz needs cargo-afl: cargo install cargo-afl --locked"; exit 1; }
	cd fuzz && $(CARGO) afl build --release
	rm -rf target/fuzz && mkdir -p target/fuzz/out && fuzz/target/release/corpus target/fuzz/in
	for t in $(FUZZ_TARGETS); do \
	  AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 \
	    $(CARGO) afl fuzz -i target/fuzz/in/$$t -o target/fuzz/out/$$t -V $(FUZZ_SECONDS) \
	    fuzz/target/release/$$t > target/fuzz/$$t.log 2>&1 || { tail -20 target/fuzz/$$t.log; exit 1; }; \
	  grep -E 'execs_done|saved_crashes|saved_hangs|corpus_count' target/fuzz/out/$$t/default/fuzzer_stats | tr -s ' ' | sed "s/^/$$t: /"; \
	  if ls target/fuzz/out/$$t/default/crashes | grep -q '^id'; then echo "$$t: afl saved a crash"; exit 1; fi; \
	done
