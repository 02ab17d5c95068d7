#!/usr/bin/env bash
# Generates the test certificates under tests/fixtures/tls/ (checked in; run again only to
# change them). Valid for 100 years, for localhost and 127.0.0.1 / ::1.
#   ca.pem / ca.key            the test CA (clients trust it)
#   server.pem / server.key    a chain: the server certificate, then the CA; signed by the CA
#   server2.pem / server2.key  another server certificate (the reload tests swap to it)
#   client-ca.pem / .key       a CA for client certificates
#   client.pem / client.key    a client certificate signed by client-ca
set -euo pipefail
OUT="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/tls"
mkdir -p "$OUT"
cd "$OUT"
DAYS=36500
SAN="subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

ca() { # name subject
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $DAYS \
        -keyout "$1.key" -out "$1.pem" -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() { # name ca subject extensions
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -out "$1.csr" -subj "$3" 2>/dev/null
    printf '%s\n' "$4" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days $DAYS \
        -out "$1.pem" -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

ca ca "/CN=wsrelay test CA"
leaf server ca "/CN=localhost" "$SAN
basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth"
leaf server2 ca "/CN=localhost (second)" "$SAN
basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth"
# Chains: the server's certificate first, then the CA (a chain is allowed in tls.cert).
for name in server server2; do cat ca.pem >> "$name.pem"; done
ca client-ca "/CN=wsrelay test client CA"
leaf client client-ca "/CN=test client" "basicConstraints=CA:FALSE
extendedKeyUsage=clientAuth"
rm -f ./*.srl
ls "$OUT"
