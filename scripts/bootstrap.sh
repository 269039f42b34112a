#!/usr/bin/env bash
# Installs what building and testing Switchyard needs, from the package registries only:
#   1. a Rust toolchain that can build wasm32-unknown-unknown (rustup's target when it can be
#      had; otherwise Debian's rustc-web with a std built once from rust-web-src),
#   2. pinned worker-build and the wasm-bindgen-cli matching Cargo.lock,
#   3. the npm packages of package-lock.json (wrangler, miniflare, binaryen, test clients).
# Idempotent: when everything is in place it checks versions and returns in about a second.
# Writes $SWITCHYARD_TOOLS/env.sh, which scripts/build.sh sources.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard/tools}"
worker_build_version="0.8.7"
mkdir -p "$tools/bin"

say() { printf 'bootstrap: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

wasm_bindgen_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$root/Cargo.lock")"
[ -n "$wasm_bindgen_version" ] || { say "cannot read wasm-bindgen's version from Cargo.lock"; exit 1; }

has_wasm_std() { # $1 = rustc
  local dir
  dir="$("$1" --target wasm32-unknown-unknown --print target-libdir 2>/dev/null)" || return 1
  compgen -G "$dir/libstd-*.rlib" >/dev/null
}

# 1. The wasm32 toolchain. wasm_path is prepended to PATH for the wasm build only.
# SWITCHYARD_WASM_ROUTE=debian takes the Debian route even where rustup has the target.
wasm_path=""
if [ "${SWITCHYARD_WASM_ROUTE:-}" != debian ] && has_wasm_std rustc; then
  :
elif [ "${SWITCHYARD_WASM_ROUTE:-}" != debian ] && command -v rustup >/dev/null && timeout 20 rustup target add wasm32-unknown-unknown >/dev/null 2>&1 && has_wasm_std rustc; then
  say "installed rustup's wasm32-unknown-unknown target"
else
  # Debian route: rustc-web/cargo-web ship the compiler, rust-web-src the std sources, lld-22 rust-lld.
  if ! [ -x /usr/bin/rustc ] || ! [ -x /usr/bin/cargo ] || ! [ -d /usr/lib/rustlib/src/rust/library ] || ! command -v rust-lld >/dev/null; then
    say "rustup cannot add wasm32 here; installing Debian's rustc-web, cargo-web, rust-web-src, lld-22"
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web cargo-web rust-web-src lld-22 >/dev/null
  fi
  if ! has_wasm_std /usr/bin/rustc; then
    say "building the wasm32 std from rust-web-src (about a minute, once)"
    scratch="$(mktemp -d)"
    mkdir -p "$scratch/src"
    printf '[package]\nname = "wasm-std"\nversion = "0.0.0"\nedition = "2021"\n[lib]\ncrate-type = ["cdylib"]\n[profile.release]\npanic = "abort"\n' >"$scratch/Cargo.toml"
    : >"$scratch/src/lib.rs"
    (cd "$scratch" && CARGO_TARGET_DIR="$scratch/target" RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Cembed-bitcode=yes" PATH="/usr/bin:$PATH" \
      cargo build -q --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort)
    libdir="$(/usr/bin/rustc --target wasm32-unknown-unknown --print target-libdir)"
    as_root mkdir -p "$libdir"
    as_root cp "$scratch"/target/wasm32-unknown-unknown/release/deps/*.rlib "$libdir/"
    rm -rf "$scratch"
    # Artifacts built against the previous sysroot would no longer link.
    rm -rf "${CARGO_TARGET_DIR:-$root/target}/wasm32-unknown-unknown"
  fi
  wasm_path="/usr/bin"
fi

# 2. worker-build and wasm-bindgen-cli, pinned, into $tools (so worker-build downloads nothing).
installed_version() { "$tools/bin/$1" --version 2>/dev/null | awk '{ print $NF }'; }
if [ "$(installed_version worker-build)" != "$worker_build_version" ]; then
  say "installing worker-build $worker_build_version (a few minutes, once)"
  cargo install -q --root "$tools" --version "$worker_build_version" worker-build
fi
if [ "$(installed_version wasm-bindgen)" != "$wasm_bindgen_version" ]; then
  say "installing wasm-bindgen-cli $wasm_bindgen_version (a few minutes, once)"
  # Not --locked: its lock file names a webpki-roots version the registry no longer serves.
  cargo install -q --root "$tools" --version "$wasm_bindgen_version" wasm-bindgen-cli
fi

# 3. npm packages, reinstalled only when package-lock.json changed.
stamp="$root/node_modules/.switchyard-lock"
if ! [ -f "$stamp" ] || ! cmp -s "$root/package-lock.json" "$stamp"; then
  say "npm ci"
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$root/package-lock.json" "$stamp"
fi

cat >"$tools/env.sh.new" <<ENV
# Written by scripts/bootstrap.sh; sourced by scripts/build.sh.
export SWITCHYARD_WASM_PATH="$wasm_path"
export WASM_BINDGEN_BIN="$tools/bin/wasm-bindgen"
export WORKER_BUILD_BIN="$tools/bin/worker-build"
ENV
mv "$tools/env.sh.new" "$tools/env.sh"
