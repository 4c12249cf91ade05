#!/usr/bin/env bash
# `scripts/tls_certs.sh DIR`: a throwaway CA and a server certificate for
# 127.0.0.1 and localhost, ECDSA P-256, made with openssl(1), for the TLS
# benchmarks (scripts/bench_tls.sh, scripts/memory.sh). Writes DIR/ca.pem,
# DIR/server.pem and DIR/server.key; keeps files already there.
set -euo pipefail
dir=$1
mkdir -p "$dir"
[ -f "$dir/server.key" ] && exit 0
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 30 \
    -subj "/CN=hb bench CA" 2>/dev/null
openssl req "${ec[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" \
    -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/server.pem" -days 30 -extfile "$dir/server.ext" 2>/dev/null
