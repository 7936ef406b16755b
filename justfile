# keyward tasks. On a fresh machine run them through ./just (it installs `just` if needed).

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Start the development stack in the background: LocalStack (KMS), the attesting dev KMS,
# an enclave (mock NSM) and the gateway. Logs in .dev/logs; prints the key and a curl.
start:
    @scripts/dev-stack start

# Stop everything `start` started.
stop:
    @scripts/dev-stack stop

# Show what is running and the gateway's health.
status:
    @scripts/dev-stack status

# The whole test suite: unit, property and end-to-end tests, as CI runs it.
test:
    cargo test --workspace --all-targets --no-fail-fast
    cargo test --workspace --doc

# Only the KMS end-to-end tests (real gateway, enclave and dev KMS processes).
test-kms-e2e:
    cargo test -p keyward-e2e --test kms_e2e --no-fail-fast

# Print the KMS key policy and IAM policy for the given measurement files.
key-policy *ARGS:
    cargo run -q -p gateway -- key-policy {{ARGS}}

# Builds release binaries, starts the dev stack, measures, prints a table and writes
# target/bench/summary.json. Options go after the recipe (`just bench --measure 10`, `just bench
# --help`). Numbers are only comparable when nothing else runs on the machine.
# Benchmark: raw vs end-to-end signing, latency at fixed loads, restart time, peak memory.
bench *ARGS:
    cargo build --release --workspace --all-targets
    cargo bench --workspace --bench keyward-bench -- {{ARGS}}
