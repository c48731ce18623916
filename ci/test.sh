#!/usr/bin/env bash
# Every check pipekit's CI runs, on a fresh Debian machine with rustup.
# Installs what it needs first; any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
CHECK_TARGETS=(x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)

step() { printf '\n==> %s\n' "$*"; }

step "install: python3 (interop peer), rustfmt, clippy, check-only targets"
if ! command -v python3 >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q python3; else sudo apt-get update -q && sudo apt-get install -y -q python3; fi
fi
rustup component add rustfmt clippy
rustup target add "${CHECK_TARGETS[@]}"

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (host)"
cargo clippy --workspace --all-targets --locked -- -D warnings
for target in "${CHECK_TARGETS[@]}"; do
    step "cargo clippy --target $target"
    cargo clippy --workspace --all-targets --locked --target "$target" -- -D warnings
done

step "cargo test (unit, integration, cross-process, interop, doc)"
cargo test --workspace --locked

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo bench --no-run (the benches build)"
cargo bench --workspace --no-run --locked

step "the echo example runs"
echo_out=$(cargo run --locked -q -p pipekit-examples --example echo -- both "ci-echo-$$")
printf '%s\n' "$echo_out"
replies=$(grep -c 'got "OK"' <<<"$echo_out" || true)
if [ "$replies" != 10 ]; then
    echo "echo example: expected 10 \"OK\" replies, got $replies" >&2
    exit 1
fi

printf '\nci/test.sh: all checks passed\n'
