#!/usr/bin/env bash
# `make install PREFIX=/usr/local [DESTDIR=/staging]`: builds hb-server and
# hb-client in release and installs them with their man pages and
# completions where each tool looks under PREFIX:
#   bin/hb-server, bin/hb-client
#   share/man/man1/hb-server.1, hb-client.1                  (man)
#   share/bash-completion/completions/hb-server, hb-client   (bash-completion)
#   share/zsh/site-functions/_hb-server, _hb-client          (zsh's fpath)
#   share/fish/vendor_completions.d/hb-server.fish, ...      (fish)
# With PREFIX=/usr/local all of these are on Debian's default search paths.
# DESTDIR, as usual, stages the tree elsewhere (for packaging, or tests).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/release-lib.sh

prefix=${PREFIX:?PREFIX is not set}
root=${DESTDIR:-}$prefix

# Without the `bench` feature: hb-bench and its tokio are not installed.
$CARGO build --release --no-default-features --bin hb-server --bin hb-client
generate_docs target/release target/install-docs
docs=target/install-docs/complete

install -d "$root/bin" "$root/share/man/man1" "$root/share/bash-completion/completions" \
    "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d"
for binary in hb-server hb-client; do
    install -m 755 "target/release/$binary" "$root/bin/$binary"
    install -m 644 "target/install-docs/man/$binary.1" "$root/share/man/man1/$binary.1"
    install -m 644 "$docs/$binary.bash" "$root/share/bash-completion/completions/$binary"
    install -m 644 "$docs/_$binary" "$root/share/zsh/site-functions/_$binary"
    install -m 644 "$docs/$binary.fish" "$root/share/fish/vendor_completions.d/$binary.fish"
done
echo "installed hb-server and hb-client under $root"
