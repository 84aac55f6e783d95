#!/usr/bin/env bash
# Makes the DEMO public key infrastructure for mutual TLS on the local API (RFC 8705):
#   demo-ca.crt / .pem          a certificate authority (the local API's truststore, --tls-client-ca)
#   localhost.crt / .pem        the local API's TLS server certificate (127.0.0.1, localhost, ::1)
#   demo-mtls-rp.crt / .pem     a client certificate issued by the CA, for the seeded client
#                               demo-mtls (tls_client_auth, subject DN below)
#   demo-mtls-self.crt / .pem   a self-signed client certificate, for the seeded client
#                               demo-mtls-self (self_signed_tls_client_auth, key in its jwks)
#   other-ca.crt / .pem, stranger.crt / .pem
#                               a second CA and a client certificate it issued: trusted by nobody,
#                               for tests that a certificate outside the truststore is refused
#   impostor.crt / .pem         a certificate with demo-mtls's subject signed with demo-mtls-self's
#                               key (issuer: demo-mtls-self): what a self-signed client could make
#                               to pass as demo-mtls where pinned certificates are trust anchors;
#                               refused by the TLS port and by the functions
#   truststore.pem              demo-ca.crt followed by demo-mtls-self.crt: what --tls-client-ca
#                               (or API Gateway's truststore) is given so both clients connect
#
# These are demo fixtures: their private keys are public. Never trust them anywhere real.
# Usage: bash tests/pki/make-demo-pki.sh [DIR]   (default: tests/keys/pki)
set -euo pipefail
dir=${1:-"$(dirname "$0")/../keys/pki"}
mkdir -p "$dir"
cd "$dir"
days=3650
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name subject
    ec_key "$1.pem"
    openssl req -x509 -new -key "$1.pem" -sha256 -days "$days" -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.crt"
}

leaf() { # name subject ca extensions
    ec_key "$1.pem"
    openssl req -new -key "$1.pem" -subj "$2" -out "$1.csr"
    printf '%b' "$4" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.pem" -CAcreateserial -sha256 \
        -days "$days" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext" "$3.srl"
}

ca demo-ca "/C=GB/O=Demo CIBA OP/CN=Demo mTLS CA (DEMO ONLY)"
leaf localhost "/CN=localhost" demo-ca \
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
leaf demo-mtls-rp "/C=GB/O=Demo Bank/CN=demo-mtls-rp" demo-ca \
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:rp.demo-bank.example\n"
ca other-ca "/C=GB/O=Nobody/CN=Untrusted CA (DEMO ONLY)"
leaf stranger "/C=GB/O=Demo Bank/CN=demo-mtls-rp" other-ca \
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"

ec_key demo-mtls-self.pem
openssl req -x509 -new -key demo-mtls-self.pem -sha256 -days "$days" \
    -subj "/C=GB/O=Demo Shop/CN=demo-mtls-self" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=clientAuth" -out demo-mtls-self.crt

leaf impostor "/C=GB/O=Demo Bank/CN=demo-mtls-rp" demo-mtls-self \
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
cat demo-ca.crt demo-mtls-self.crt > truststore.pem
echo "demo PKI written to $dir"
