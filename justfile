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

# Fuzz the decoders of untrusted bytes (link frames, CBOR messages, KMS CMS, attestation
# documents) for SECONDS each, seeded from ../shared/fixtures. Fails, naming the input, if a
# target crashes, hangs or blows up memory. `just fuzz 600 cms_parser` runs one target.
[doc("Fuzz every decoder of untrusted bytes for SECONDS each (see fuzz/README.md).")]
fuzz SECONDS="60" *TARGETS:
    scripts/fuzz run {{SECONDS}} {{TARGETS}}

# CI's short fuzzing pass: every target for 20 s (about 6 min from cold, build included).
fuzz-smoke:
    scripts/fuzz run 20

# Supply-chain gate (deny.toml): advisories against the offline RustSec snapshot in
# ../shared/supply-chain, licenses, duplicate versions and sources. Installs cargo-deny into
# .dev/tools on first use.
[doc("Supply-chain gate: cargo deny --offline check against the RustSec snapshot.")]
deny:
    #!/usr/bin/env bash
    set -euo pipefail
    version=0.20.2
    bin=$(command -v cargo-deny 2>/dev/null || true)
    if [ -z "$bin" ] || ! "$bin" --version | grep -q " $version\$"; then
      bin=.dev/tools/bin/cargo-deny
      if [ ! -x "$bin" ]; then
        echo "deny: installing cargo-deny $version into .dev/tools (one time, a few minutes)..." >&2
        cargo install --quiet --locked --root .dev/tools --version "$version" cargo-deny >&2
      fi
    fi
    # Unpacks the snapshot into ~/.cache/keyward-advisory-db, deny.toml's db-path.
    bash ../shared/supply-chain/advisory-db >/dev/null
    "$bin" --offline check
