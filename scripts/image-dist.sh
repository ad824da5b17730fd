#!/bin/sh
# The files of the production image, laid out as they appear in it: the
# stripped binary at /runway, the CA bundle, and passwd/group entries for 65532
# (`runway`, no shell, no home). Used by both the Containerfile's builder and
# `make image`, so both paths feed the same final stage.
#   scripts/image-dist.sh BINARY DIR
set -eu
binary=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir/etc/ssl/certs"
# Symbols and line tables stay in the build's copy (for profiling); the image
# ships the stripped binary.
strip --strip-all -o "$dir/runway" "$binary"
chmod 0555 "$dir/runway"
cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
printf 'runway:x:65532:65532:runway:/nonexistent:/sbin/nologin\n' > "$dir/etc/passwd"
printf 'runway:x:65532:\n' > "$dir/etc/group"
