#!/bin/sh
# Certificates for the REMOTE example (EXAMPLE-ONLY keys: make your own for real use).
# A CA, a server certificate for localhost / 127.0.0.1 / ::1 and a client certificate (CN=client),
# 20 years. Run from anywhere: sh examples/remote/certs/make-certs.sh
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -new -x509 -key ca.key -subj "/CN=bun-lwmsg example CA" -days 7300 -sha256 -set_serial 1 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
leaf() { # name subject usage san serial
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$tmp/$1.csr"
  { echo "basicConstraints=critical,CA:FALSE"; echo "extendedKeyUsage=$3"; [ -n "$4" ] && echo "subjectAltName=$4"; } > "$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA ca.crt -CAkey ca.key -set_serial "$5" -days 7300 -sha256 -extfile "$tmp/$1.ext" -out "$1.crt" 2>/dev/null
}
leaf server "/CN=localhost" serverAuth "DNS:localhost,IP:127.0.0.1,IP:::1" 2
leaf client "/CN=client" clientAuth "" 3
rm -f ca.key # nothing more is signed with it
