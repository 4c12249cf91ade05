# Sourced by scripts/image.sh, dist.sh and install.sh (`make image`, `make
# dist`, `make install`): what the shipped artefacts share.

CARGO=${CARGO:-cargo}
LINUX_TARGET=x86_64-unknown-linux-musl
WINDOWS_TARGET=x86_64-pc-windows-gnu

# The package version, from Cargo.toml's first `version =` (the package's).
version() {
    sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1
}

# Seconds since 1970 that the archives' and the image's timestamps say: the
# caller's SOURCE_DATE_EPOCH, else the last commit's time, so two builds of
# one commit are alike.
source_date_epoch() {
    echo "${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
}

# Builds hb-server and hb-client static (musl; without hb-bench, a load
# generator) in release and prints the folder that holds them. Cargo's own
# output goes to stderr. No C is compiled, so Rust's bundled musl start
# files and linker suffice; musl-tools (Debian) is for a dependency that
# one day compiles C.
build_static() {
    rustup target add "$LINUX_TARGET" >&2
    $CARGO build --release --target "$LINUX_TARGET" --no-default-features --bins >&2
    echo "target/$LINUX_TARGET/release"
}

# Writes the man pages and completion scripts of the binaries in $1 to $2:
# man/NAME.1 and complete/NAME.bash, _NAME (zsh), NAME.fish, _NAME.ps1, the
# file names each shell's own packages use. `--generate` makes them from
# the clap definitions (src/bin/common/generate.rs).
generate_docs() {
    local bin_dir=$1 out=$2 binary
    rm -rf "$out"
    mkdir -p "$out/man" "$out/complete"
    for binary in hb-server hb-client; do
        "$bin_dir/$binary" --generate man >"$out/man/$binary.1"
        "$bin_dir/$binary" --generate bash >"$out/complete/$binary.bash"
        "$bin_dir/$binary" --generate zsh >"$out/complete/_$binary"
        "$bin_dir/$binary" --generate fish >"$out/complete/$binary.fish"
        "$bin_dir/$binary" --generate powershell >"$out/complete/_$binary.ps1"
    done
}
