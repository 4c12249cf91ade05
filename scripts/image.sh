#!/usr/bin/env bash
# `make image`: the container image localhost/tcp-heartbeat:latest and
# :VERSION from deploy/Containerfile, with podman, or docker when podman is
# not on PATH. The static binaries come from build_static
# (scripts/release-lib.sh); the build context is a folder holding just
# them, stripped. Fails when the image is
# over 16 MB (MAX_IMAGE_BYTES): a FROM scratch image of two binaries has no
# business being larger.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/release-lib.sh

MAX_IMAGE_BYTES=$((16 * 1000 * 1000))
engine=$(command -v podman || command -v docker || true)
if [ -z "$engine" ]; then
    echo "make image: neither podman nor docker is on PATH (apt-get install podman runc)" >&2
    exit 1
fi

version=$(version)
bin_dir=$(build_static)
context=target/image-context
rm -rf "$context"
mkdir -p "$context"
for binary in hb-server hb-client; do
    strip -o "$context/$binary" "$bin_dir/$binary"
done

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Where the source is: the repository this checkout came from, when it
# names one on a server (SOURCE=... overrides it).
source=${SOURCE:-$(git config --get remote.origin.url 2>/dev/null | grep -E '^(https?://|git@)' || echo "tcp-heartbeat $version, commit $revision")}
epoch=$(source_date_epoch)

"$engine" build --file deploy/Containerfile \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" \
    --build-arg "SOURCE=$source" \
    --build-arg "CREATED=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" \
    --tag localhost/tcp-heartbeat:latest \
    --tag "localhost/tcp-heartbeat:$version" \
    "$context"

size=$("$engine" image inspect --format '{{.Size}}' "localhost/tcp-heartbeat:$version")
echo "image localhost/tcp-heartbeat:$version ($engine): $size bytes"
if [ "$size" -gt "$MAX_IMAGE_BYTES" ]; then
    echo "make image: the image is $size bytes, over $MAX_IMAGE_BYTES" >&2
    exit 1
fi
