#!/usr/bin/env bash
# `make image`: the production image, built offline. The static binary is
# built here (musl, no `dev-cluster` feature) and fed to the Containerfile's
# final stage as the build context `dist`; no registry is contacted.
#
#   IMAGE    tag (default localhost/runway:<crate version>)
#   ENGINE   podman (default) or docker; with docker the one difference is
#            that the build runs through `docker buildx build` (BuildKit's
#            named contexts), see README "Install".
#   PROFILE  cargo profile of the binary (default release)
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
image=${IMAGE:-localhost/runway:$version}
engine=${ENGINE:-podman}
profile=${PROFILE:-release}
target=x86_64-unknown-linux-musl

echo "==> cargo build --profile $profile -p runway --target $target"
RUNWAY_REVISION=$revision cargo build --quiet --locked --profile "$profile" -p runway --target "$target"
dir=target/$target/$([ "$profile" = dev ] && echo debug || echo "$profile")
scripts/image-dist.sh "$dir/runway" target/image/dist
mkdir -p target/image/context

echo "==> $engine build $image"
case "$engine" in
  podman)
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/scripts/podman/containers.conf}
    podman build --quiet --file Containerfile --target runway \
      --build-context dist=target/image/dist \
      --build-arg VERSION="$version" --build-arg REVISION="$revision" \
      --tag "$image" target/image/context ;;
  docker)
    docker buildx build --load --file Containerfile --target runway \
      --build-context dist=target/image/dist \
      --build-arg VERSION="$version" --build-arg REVISION="$revision" \
      --tag "$image" target/image/context ;;
  *) echo "ENGINE must be podman or docker, not $engine" >&2; exit 2 ;;
esac
echo "$image"
