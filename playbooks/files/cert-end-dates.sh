#!/bin/sh
# One line per certificate under $1: "<file> <notAfter, ISO 8601 UTC>" (provision certs).
set -eu
for f in "$1"/*.crt; do
  [ -f "$f" ] || continue
  end=$(openssl x509 -noout -enddate -dateopt iso_8601 -in "$f")
  echo "$(basename "$f") ${end#notAfter=}"
done
