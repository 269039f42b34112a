# Switchyard: `make dev` runs the gateway locally, `make test` runs every test.
# Everything a target needs is installed by scripts/bootstrap.sh on first use.

PORT ?= 8787
CONFIG ?=

.PHONY: dev test build bootstrap lint unit e2e fuzz mock-upstream check-config bench bench-smoke

## Build and run the gateway at http://127.0.0.1:$(PORT) (CONFIG=<file> for your own configuration).
dev:
	@PORT="$(PORT)" CONFIG="$(CONFIG)" bash scripts/dev.sh

## Every test: formatting and lints, native unit tests, end-to-end tests in workerd, the fuzz stage.
test: bootstrap lint unit e2e fuzz bench-smoke

bootstrap:
	@bash scripts/bootstrap.sh

## The worker, into build/ (index.js and its wasm module).
build:
	@bash scripts/build.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test -p switchyard-core -p mock-upstream
	# The benchmark in its quick mode: it must keep working, its timings mean nothing here.
	cargo test -p switchyard-core --bench adapters

mock-upstream:
	cargo build -p mock-upstream

e2e: build mock-upstream
	node --test --test-concurrency=1 tests/e2e/

## Property-based fuzzing of the four OpenAI operations against OpenAI's published OpenAPI
## document (schemathesis, pinned, in a venv under ~/.cache/switchyard), with workerd's open
## files measured before, during and after; bounded to a few minutes (scripts/fuzz.sh).
fuzz: build mock-upstream
	@bash scripts/fuzz.sh

## Validate a configuration document: make check-config CONFIG=my-config.json
check-config:
	cargo run -q -p switchyard-core --bin switchyard-config -- check "$(or $(CONFIG),config/default.json)"

## Benchmarks (figures and method in BENCHMARKS.md): the native core (cargo bench), then the
## release worker in workerd side by side with a bare worker, Portkey and LiteLLM (bench/run.mjs,
## about 14 minutes; installs oha and the peers on first use). Rewrites BENCHMARKS.md's generated
## section and bench/latency.png.
bench: build
	cargo build --release -p mock-upstream
	node bench/run.mjs

## The benchmark harness on tiny counts, without peers or oha, so `make bench` cannot rot: no timing is
## asserted and nothing but bench/out/ is written.
bench-smoke: build mock-upstream
	node bench/run.mjs --smoke
