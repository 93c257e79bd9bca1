#!/bin/sh
# Stand-in sources for the Dockerfile's dependency layer: with only the
# manifests, the lock file and vendor/ copied, this makes every target the
# manifests name exist, so `cargo build` compiles (and caches) the
# dependencies alone. The real sources replace these files in the next layer.
# Run in the workspace root; tests/docker.rs checks that cargo accepts the
# skeleton.
set -eu
mkdir -p src proto/src loadtest/src benches
echo 'fn main() {}' > src/main.rs
: > src/lib.rs
: > proto/src/lib.rs
echo 'fn main() {}' > loadtest/src/main.rs
sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | while read -r name; do
  case "$name" in wsrelay) ;; *) echo 'fn main() {}' > "benches/$name.rs" ;; esac
done
