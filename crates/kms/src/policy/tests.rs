#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test.

use super::*;

// Hand-written samples of nitro-cli's output (see testdata/README.md): not from a real build.
const BUILD_ENCLAVE_SAMPLE: &str = include_str!("../../testdata/nitro_cli_build_enclave.txt");
const DESCRIBE_EIF_SAMPLE: &str = include_str!("../../testdata/nitro_cli_describe_eif.json");

const SAMPLE_PCR0: &str =
    "bdb5a5a444dbfffd38e543e061b74deea28dacc047a3cfecbb829099ed02ddcb6e1f2219bae9c574eda1e52a3007248f";
const SAMPLE_PCR1: &str =
    "6d58139cbd3ac6cff9f2614e1d3b72f2290455c9fece5611de02a3044c779a9d26f824afc3004c3e4335a5f42ea8b1e1";
const SAMPLE_PCR2: &str =
    "874f7ffe4a8118ba65d881e77eb0b17e95f9153654358bfee18335fb9ff8fff2369e14e977453e1daeedf9d40d3977a8";

const ACCOUNT: &str = "111122223333";
const GATEWAY_ROLE: &str = "arn:aws:iam::111122223333:role/keyward-gateway";

fn sample_set() -> PcrSet {
    PcrSet::from_hex(SAMPLE_PCR0, SAMPLE_PCR1, SAMPLE_PCR2).unwrap()
}

fn set_of(byte: u8) -> PcrSet {
    PcrSet::from_bytes([byte; PCR_LEN], [byte.wrapping_add(1); PCR_LEN], [byte.wrapping_add(2); PCR_LEN])
}

fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {policy:#}"))
}

#[test]
fn reads_pcrs_from_build_enclave_output_including_progress_lines() {
    assert_eq!(measurements_from_nitro_cli_json(BUILD_ENCLAVE_SAMPLE).unwrap(), sample_set());
}

#[test]
fn reads_pcrs_from_describe_eif_output_ignoring_pcr8_and_case() {
    assert_eq!(measurements_from_nitro_cli_json(DESCRIBE_EIF_SAMPLE).unwrap(), sample_set());
}

#[test]
fn reads_a_bare_measurements_object() {
    let bare = format!(
        r#"{{"HashAlgorithm": "Sha384 {{ ... }}", "PCR0": "{SAMPLE_PCR0}", "PCR1": "{SAMPLE_PCR1}", "PCR2": "{SAMPLE_PCR2}"}}"#
    );
    assert_eq!(measurements_from_nitro_cli_json(&bare).unwrap(), sample_set());
}

#[test]
fn refuses_measurements_missing_a_pcr() {
    let text = DESCRIBE_EIF_SAMPLE.replace("\"PCR1\"", "\"PCR9\"");
    assert_eq!(measurements_from_nitro_cli_json(&text), Err(PolicyError::MissingPcr("PCR1")));
}

#[test]
fn refuses_ill_formed_pcrs() {
    for (bad, what) in [
        (&SAMPLE_PCR2[..94], "short"),
        (&format!("{}zz", &SAMPLE_PCR2[..94])[..], "not hex"),
        (&format!("{SAMPLE_PCR2}00")[..], "long"),
    ] {
        let text = BUILD_ENCLAVE_SAMPLE.replace(SAMPLE_PCR2, bad);
        assert!(
            matches!(measurements_from_nitro_cli_json(&text), Err(PolicyError::InvalidPcr { name: "PCR2", .. })),
            "{what}"
        );
    }
    let number = BUILD_ENCLAVE_SAMPLE.replace(&format!("\"{SAMPLE_PCR2}\""), "7");
    assert!(matches!(measurements_from_nitro_cli_json(&number), Err(PolicyError::InvalidPcr { name: "PCR2", .. })));
}

#[test]
fn refuses_hash_algorithms_other_than_sha384() {
    for algorithm in ["Sha256 { ... }", "Sha512 { ... }", "sha3-384", ""] {
        let text = BUILD_ENCLAVE_SAMPLE.replace("Sha384 { ... }", algorithm);
        assert!(
            matches!(measurements_from_nitro_cli_json(&text), Err(PolicyError::UnsupportedHashAlgorithm(_))),
            "{algorithm}"
        );
    }
    for algorithm in ["SHA384", "sha-384", "Sha384"] {
        let text = BUILD_ENCLAVE_SAMPLE.replace("Sha384 { ... }", algorithm);
        assert!(measurements_from_nitro_cli_json(&text).is_ok(), "{algorithm}");
    }
}

#[test]
fn refuses_text_that_is_not_nitro_cli_output() {
    for text in
        ["", "Enclave Image successfully created.", "{not json", r#"{"EifVersion": 4}"#, r#"{"Measurements": 3}"#]
    {
        assert!(matches!(measurements_from_nitro_cli_json(text), Err(PolicyError::NotNitroCliOutput(_))), "{text:?}");
    }
}

#[test]
fn key_policy_has_the_documented_statements_in_order() {
    let policy = key_policy(&KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![sample_set()])).unwrap();
    let sids: Vec<&str> = policy["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap()).collect();
    assert_eq!(
        sids,
        [
            "KeyAdministration",
            "EnclaveDataKeys",
            "DenyDataKeysWithoutAttestedPCR0",
            "DenyDataKeysWithoutAttestedPCR1",
            "DenyDataKeysWithoutAttestedPCR2"
        ]
    );
    assert_eq!(policy["Version"], "2012-10-17");
    let admin = statement(&policy, "KeyAdministration");
    assert_eq!(admin["Principal"]["AWS"], "arn:aws:iam::111122223333:root");
    assert_eq!(admin["Action"], "kms:*");
}

#[test]
fn key_policy_allows_the_gateway_only_with_every_pcr_attested() {
    let policy = key_policy(&KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![sample_set()])).unwrap();
    let allow = statement(&policy, "EnclaveDataKeys");
    assert_eq!(allow["Effect"], "Allow");
    assert_eq!(allow["Principal"]["AWS"], GATEWAY_ROLE);
    assert_eq!(allow["Action"], json!(["kms:GenerateDataKey", "kms:Decrypt"]));
    assert_eq!(
        allow["Condition"],
        json!({ "StringEqualsIgnoreCase": {
            "kms:RecipientAttestation:PCR0": [SAMPLE_PCR0],
            "kms:RecipientAttestation:PCR1": [SAMPLE_PCR1],
            "kms:RecipientAttestation:PCR2": [SAMPLE_PCR2],
        }})
    );
}

#[test]
fn key_policy_denies_everyone_per_pcr_when_that_pcr_is_not_attested() {
    let policy = key_policy(&KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![sample_set()])).unwrap();
    for (index, value) in [SAMPLE_PCR0, SAMPLE_PCR1, SAMPLE_PCR2].into_iter().enumerate() {
        let deny = statement(&policy, &format!("DenyDataKeysWithoutAttestedPCR{index}"));
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(deny["Principal"], "*");
        assert_eq!(deny["Action"], json!(["kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]));
        assert_eq!(
            deny["Condition"],
            json!({ "StringNotEqualsIgnoreCase": { format!("kms:RecipientAttestation:PCR{index}"): [value] } }),
            "exactly one condition key per Deny, so any single PCR mismatch fires it"
        );
    }
}

#[test]
fn key_policy_with_two_builds_lists_each_distinct_value_once() {
    let old = set_of(1);
    let new = PcrSet::from_bytes([9; PCR_LEN], *old.pcr(1).unwrap(), [11; PCR_LEN]);
    let policy = key_policy(&KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![old.clone(), new.clone()])).unwrap();
    let values = &statement(&policy, "EnclaveDataKeys")["Condition"]["StringEqualsIgnoreCase"];
    assert_eq!(values["kms:RecipientAttestation:PCR0"], json!([old.pcr_hex(0), new.pcr_hex(0)]));
    assert_eq!(values["kms:RecipientAttestation:PCR1"], json!([old.pcr_hex(1)]), "shared kernel listed once");
    let deny2 = &statement(&policy, "DenyDataKeysWithoutAttestedPCR2")["Condition"]["StringNotEqualsIgnoreCase"];
    assert_eq!(deny2["kms:RecipientAttestation:PCR2"], json!([old.pcr_hex(2), new.pcr_hex(2)]));
}

#[test]
fn key_policy_adds_key_administrators_without_data_key_actions() {
    let admin = "arn:aws:iam::111122223333:role/key-admin".to_owned();
    let policy = key_policy(
        &KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![sample_set()]).key_administrators(vec![admin.clone()]),
    )
    .unwrap();
    let admins = statement(&policy, "KeyAdministrators");
    assert_eq!(admins["Principal"]["AWS"], json!([admin]));
    let actions: Vec<&str> = admins["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(!actions.iter().any(|a| a.contains("Decrypt") || a.contains("GenerateDataKey") || *a == "kms:*"));
}

/// Whether an IAM action pattern (`kms:Put*`) matches an action (`kms:PutKeyPolicy`).
fn matches_action(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    }
}

#[test]
fn key_administrators_can_neither_rewrite_the_policy_nor_grant_themselves_access() {
    let admin = "arn:aws:iam::111122223333:role/key-admin".to_owned();
    let policy = key_policy(
        &KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![sample_set()]).key_administrators(vec![admin.clone()]),
    )
    .unwrap();
    let allowed = statement(&policy, "KeyAdministrators")["Action"].as_array().unwrap().clone();
    for action in ["kms:PutKeyPolicy", "kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom"] {
        assert!(
            !allowed.iter().any(|p| matches_action(p.as_str().unwrap(), action)),
            "key administrators are allowed {action}"
        );
    }
    // And denied outright, so an IAM grant of kms:* gives neither back.
    let denied = statement(&policy, "KeyAdministratorsCannotChangeThisPolicyOrGrantAccess");
    assert_eq!(denied["Effect"], "Deny");
    assert_eq!(denied["Principal"]["AWS"], json!([admin]));
    for action in ["kms:PutKeyPolicy", "kms:CreateGrant"] {
        assert!(denied["Action"].as_array().unwrap().iter().any(|p| matches_action(p.as_str().unwrap(), action)));
    }
}

#[test]
fn key_policy_takes_the_partition_from_the_gateway_role() {
    let role = "arn:aws-cn:iam::111122223333:role/keyward-gateway";
    let policy = key_policy(&KeyPolicyParams::new(ACCOUNT, role, vec![sample_set()])).unwrap();
    assert_eq!(statement(&policy, "KeyAdministration")["Principal"]["AWS"], "arn:aws-cn:iam::111122223333:root");
}

#[test]
fn key_policy_refuses_debug_mode_pcrs_unless_allowed() {
    let debug = PcrSet::from_bytes([0; PCR_LEN], [0; PCR_LEN], [0; PCR_LEN]);
    let params = KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![sample_set(), debug]);
    assert_eq!(key_policy(&params), Err(PolicyError::DebugModePcr { set: 1, name: "PCR0" }));
    assert!(key_policy(&params.allow_debug_mode(true)).is_ok());

    let zero_pcr2 = PcrSet::from_bytes([1; PCR_LEN], [2; PCR_LEN], [0; PCR_LEN]);
    let params = KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![zero_pcr2]);
    assert_eq!(key_policy(&params), Err(PolicyError::DebugModePcr { set: 0, name: "PCR2" }));
}

#[test]
fn key_policy_refuses_an_empty_pcr_set_list() {
    assert_eq!(key_policy(&KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![])), Err(PolicyError::NoPcrSets));
}

#[test]
fn key_policy_refuses_bad_account_ids_and_principals() {
    assert!(matches!(
        key_policy(&KeyPolicyParams::new("12345", GATEWAY_ROLE, vec![sample_set()])),
        Err(PolicyError::InvalidAccountId(_))
    ));
    for role in ["", "*", "keyward-gateway", "arn:aws:kms:us-east-1:111122223333:key/x", "arn:aws:iam::1:role/x"] {
        assert!(
            matches!(
                key_policy(&KeyPolicyParams::new(ACCOUNT, role, vec![sample_set()])),
                Err(PolicyError::InvalidArn { .. })
            ),
            "{role}"
        );
    }
    let params = KeyPolicyParams::new(ACCOUNT, GATEWAY_ROLE, vec![sample_set()]).key_administrators(vec!["*".into()]);
    assert!(matches!(key_policy(&params), Err(PolicyError::InvalidArn { what: "key administrator ARN", .. })));
}

#[test]
fn iam_policy_grants_the_enclave_calls_on_the_key_and_random_on_any_resource() {
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let policy = iam_policy(arn).unwrap();
    assert_eq!(
        policy["Statement"],
        json!([
            { "Sid": "EnclaveDataKeys", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": arn },
            { "Sid": "EnclaveRandom", "Effect": "Allow", "Action": "kms:GenerateRandom", "Resource": "*" },
        ])
    );
}

#[test]
fn iam_policy_refuses_anything_but_a_key_arn() {
    for arn in [
        "",
        "*",
        "alias/keyward",
        "arn:aws:kms:eu-west-1:111122223333:alias/keyward",
        "arn:aws:kms:eu-west-1:111122223333:key/",
        "arn:aws:s3:eu-west-1:111122223333:key/x",
    ] {
        assert!(matches!(iam_policy(arn), Err(PolicyError::InvalidArn { .. })), "{arn}");
    }
}

#[test]
fn pcr_set_debug_output_shows_hex() {
    let text = format!("{:?}", set_of(0xab));
    assert!(text.contains(&"ab".repeat(PCR_LEN)), "{text}");
}
