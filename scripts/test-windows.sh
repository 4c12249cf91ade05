#!/usr/bin/env bash
# `make test-windows`: builds hb-server.exe and hb-client.exe for
# x86_64-pc-windows-gnu (cross-linked with mingw-w64) and runs the process
# tests (tests/portable.rs, client.rs, server.rs, check.rs) against them
# under Wine.
# Not the library's unit tests as Windows code: building their
# dev-dependencies (criterion, tokio, proptest) for Windows took 4.5 min on
# the shared CI machine, over the Windows run's budget, and the process tests
# already exercise the Windows wake-up and socket options end to end. Needs rustup, mingw-w64, wine64 and wine (Debian
# packages; .ci/run installs them).
#
# The Wine prefix is a throwaway one under target/: it gets the Wine test
# shim for ProcessPrng (tests/windows/processprng_shim.c, never shipped), and
# one `wineserver -p` serves the whole suite, since starting a Wine server
# per test made each start-up exceed 3 s.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
CARGO=${CARGO:-cargo}
WINE64=$(command -v wine64 || echo /usr/lib/wine/wine64)
for tool in x86_64-w64-mingw32-gcc "$WINE64" wineserver; do
    command -v "$tool" >/dev/null || { echo "test-windows: $tool not found (apt-get install mingw-w64 wine64 wine)" >&2; exit 1; }
done

rustup target add "$TARGET"
# Without the `bench` feature: hb-bench is a Linux load generator.
$CARGO build --release --target "$TARGET" --no-default-features --bins

export WINEPREFIX="$PWD/target/wine-prefix" WINEARCH=win64 WINEDEBUG=-all
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    # Its complaint about syswow64\rundll32.exe is the 32-bit Wine, which
    # the 64-bit .exe files do not need.
    "$WINE64" wineboot --init
fi
# The Wine test shim: Wine 8 has no bcryptprimitives.dll, whose ProcessPrng
# Rust's std imports; without it every .exe exits 53 at start.
x86_64-w64-mingw32-gcc -O2 -shared -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    tests/windows/processprng_shim.c tests/windows/processprng_shim.def -lbcrypt

# A server left from an interrupted run would keep the old prefix state.
wineserver -k >/dev/null 2>&1 || true
# Its own output (lists of objects left by the processes tests kill) goes
# to a file, not among the test results.
wineserver -p >"$WINEPREFIX/wineserver.log" 2>&1
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT

bin="$PWD/target/$TARGET/release"
export HB_TEST_SERVER_CMD="$WINE64 $bin/hb-server.exe"
export HB_TEST_CLIENT_CMD="$WINE64 $bin/hb-client.exe"
# tests/portable.rs holds issue 12's Windows cases; client.rs, server.rs and
# check.rs (hb-client --check) run their process tests through the launcher
# too (their in-process ones test the Linux library again), skipping the
# SIGTERM cases with the reason.
$CARGO test --test portable --test client --test server --test check -- --nocapture --test-threads 2

