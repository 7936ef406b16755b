#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test.

use keyward_kms::policy::{KeyPolicyParams, PCR_LEN, PcrSet, key_policy};
use serde_json::json;

use super::*;

const KEY_ARN: &str = "arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555";
const GATEWAY_ROLE: &str = "arn:aws:iam::000000000000:role/keyward-gateway";

fn context(pairs: &[(&str, &str)]) -> ConditionContext {
    let mut context = ConditionContext::new();
    for (key, value) in pairs {
        context.insert(key, vec![(*value).to_owned()]);
    }
    context
}

fn decide(policy: &Value, action: &str, context: &ConditionContext) -> Decision {
    evaluate(&policy.to_string(), &Request { action, resource: KEY_ARN, context })
}

fn one_statement(statement: Value) -> Value {
    json!({ "Version": "2012-10-17", "Statement": [statement] })
}

fn allow_if(condition: Value) -> Value {
    one_statement(json!({
        "Sid": "Conditional", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
        "Condition": condition,
    }))
}

#[test]
fn condition_operators_follow_aws_semantics() {
    let key = "kms:EncryptionContext:app";
    // (condition, request value or None for absent, expected to hold)
    let cases: &[(Value, Option<&str>, bool)] = &[
        (json!({ "StringEquals": { key: "a" } }), Some("a"), true),
        (json!({ "StringEquals": { key: "a" } }), Some("A"), false),
        (json!({ "StringEquals": { key: ["x", "a"] } }), Some("a"), true),
        (json!({ "StringEquals": { key: "a" } }), None, false),
        (json!({ "StringEqualsIfExists": { key: "a" } }), None, true),
        (json!({ "StringEqualsIfExists": { key: "a" } }), Some("b"), false),
        (json!({ "StringNotEquals": { key: "a" } }), Some("b"), true),
        (json!({ "StringNotEquals": { key: ["a", "b"] } }), Some("b"), false),
        (json!({ "StringNotEquals": { key: "a" } }), None, true),
        (json!({ "StringNotEqualsIfExists": { key: "a" } }), None, true),
        (json!({ "StringEqualsIgnoreCase": { key: "AbC" } }), Some("aBc"), true),
        (json!({ "StringEqualsIgnoreCase": { key: "abc" } }), None, false),
        (json!({ "StringNotEqualsIgnoreCase": { key: "AbC" } }), Some("abc"), false),
        (json!({ "StringNotEqualsIgnoreCase": { key: "abc" } }), None, true),
        (json!({ "StringLike": { key: "ke?ward-*" } }), Some("keyward-prod"), true),
        (json!({ "StringLike": { key: "keyward-*" } }), Some("Keyward-prod"), false),
        (json!({ "StringLike": { key: "*" } }), None, false),
        (json!({ "StringNotLike": { key: "keyward-*" } }), Some("other"), true),
        (json!({ "StringNotLike": { key: "keyward-*" } }), None, true),
        (json!({ "Null": { key: "true" } }), None, true),
        (json!({ "Null": { key: "true" } }), Some("a"), false),
        (json!({ "Null": { key: "false" } }), Some("a"), true),
        (json!({ "Null": { key: false } }), None, false),
        (json!({ "Bool": { key: "true" } }), Some("True"), true),
        (json!({ "Bool": { key: true } }), Some("false"), false),
        (json!({ "Bool": { key: "true" } }), None, false),
        (json!({ "BoolIfExists": { key: "true" } }), None, true),
        // Several keys in one operator, and several operators, are ANDed.
        (json!({ "StringEquals": { key: "a", "kms:Other": "b" } }), Some("a"), false),
        (json!({ "StringEquals": { key: "a" }, "Null": { "kms:Other": "true" } }), Some("a"), true),
        (json!({ "StringEquals": { key: "a" }, "Null": { key: "true" } }), Some("a"), false),
    ];
    for (condition, value, holds) in cases {
        let ctx = match value {
            Some(v) => context(&[(key, v)]),
            None => ConditionContext::new(),
        };
        let decision = decide(&allow_if(condition.clone()), "kms:Decrypt", &ctx);
        assert_eq!(decision.is_allowed(), *holds, "{condition} with {value:?}: {decision:?}");
    }
}

#[test]
fn condition_keys_are_case_insensitive() {
    let policy = allow_if(json!({ "StringEquals": { "KMS:RecipientAttestation:pcr0": "ab" } }));
    let decision = decide(&policy, "kms:Decrypt", &context(&[("kms:recipientattestation:PCR0", "ab")]));
    assert!(decision.is_allowed(), "{decision:?}");
}

#[test]
fn actions_match_with_wildcards_and_without_case() {
    let cases: &[(Value, &str, bool)] = &[
        (json!("kms:Decrypt"), "kms:Decrypt", true),
        (json!("KMS:decrypt"), "kms:Decrypt", true),
        (json!("kms:*"), "kms:GenerateDataKey", true),
        (json!("*"), "kms:GenerateDataKey", true),
        (json!("kms:GenerateDataKey*"), "kms:GenerateDataKeyWithoutPlaintext", true),
        (json!("kms:GenerateDataKey*"), "kms:GenerateDataKey", true),
        (json!("kms:GenerateDataKey"), "kms:GenerateDataKeyPair", false),
        (json!("kms:?ecrypt"), "kms:Decrypt", true),
        (json!("kms:?ecrypt"), "kms:ReEncrypt", false),
        (json!(["kms:Encrypt", "kms:Decrypt"]), "kms:Decrypt", true),
        (json!("kms:Encrypt"), "kms:Decrypt", false),
        (json!("s3:*"), "kms:Decrypt", false),
    ];
    for (action, requested, allowed) in cases {
        let policy = one_statement(json!({ "Effect": "Allow", "Principal": "*", "Action": action, "Resource": "*" }));
        assert_eq!(
            decide(&policy, requested, &ConditionContext::new()).is_allowed(),
            *allowed,
            "{action} vs {requested}"
        );
    }
}

#[test]
fn not_action_applies_to_every_other_action() {
    let policy = json!({ "Statement": [
        { "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*" },
        { "Sid": "OnlyDescribe", "Effect": "Deny", "Principal": "*", "NotAction": "kms:Describe*", "Resource": "*" },
    ]});
    assert!(decide(&policy, "kms:DescribeKey", &ConditionContext::new()).is_allowed());
    let decision = decide(&policy, "kms:Decrypt", &ConditionContext::new());
    assert_eq!(
        decision,
        Decision::Deny("denied by statement \"OnlyDescribe\": it denies kms:Decrypt unconditionally".into())
    );
}

#[test]
fn resources_must_be_star_or_match_the_key_arn() {
    let cases: &[(Value, bool)] = &[
        (json!("*"), true),
        (json!(KEY_ARN), true),
        (json!("arn:aws:kms:us-east-1:000000000000:key/*"), true),
        (json!("arn:aws:kms:eu-west-1:000000000000:key/*"), false),
    ];
    for (resource, allowed) in cases {
        let policy =
            one_statement(json!({ "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": resource }));
        assert_eq!(decide(&policy, "kms:Decrypt", &ConditionContext::new()).is_allowed(), *allowed, "{resource}");
    }
}

#[test]
fn explicit_deny_wins_over_any_allow() {
    let policy = json!({ "Statement": [
        { "Sid": "Everything", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*" },
        { "Sid": "NoDecrypt", "Effect": "Deny", "Principal": { "AWS": "arn:aws:iam::000000000000:root" }, "Action": "kms:Decrypt", "Resource": "*" },
    ]});
    let decision = decide(&policy, "kms:Decrypt", &ConditionContext::new());
    assert!(decision.reason().starts_with("denied by statement \"NoDecrypt\""), "{decision:?}");
    assert_eq!(
        decide(&policy, "kms:Encrypt", &ConditionContext::new()),
        Decision::Allow("allowed by statement \"Everything\"".into())
    );
}

#[test]
fn nothing_allowed_is_an_implicit_deny_that_says_so() {
    let policy = allow_if(json!({ "StringEqualsIgnoreCase": { "kms:RecipientAttestation:PCR0": "aa" } }));
    assert_eq!(
        decide(&policy, "kms:Decrypt", &ConditionContext::new()),
        Decision::Deny(
            "no statement allows kms:Decrypt without a Recipient attestation document: statement \"Conditional\" \
             does not apply because kms:RecipientAttestation:PCR0 is absent (the request has no Recipient attestation document)"
                .into()
        )
    );
    let policy =
        one_statement(json!({ "Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*" }));
    assert_eq!(
        decide(&policy, "kms:Decrypt", &context(&[("kms:RecipientAttestation:PCR0", "aa")])),
        Decision::Deny("no statement allows kms:Decrypt".into())
    );
}

#[test]
fn statements_without_a_sid_are_named_by_position() {
    let policy = json!({ "Statement": [
        { "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*" },
        { "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*" },
    ]});
    assert!(decide(&policy, "kms:Decrypt", &ConditionContext::new()).reason().starts_with("denied by statement #2:"));
}

#[test]
fn a_single_statement_object_is_accepted() {
    let policy = json!({ "Statement": { "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*" } });
    assert!(decide(&policy, "kms:Decrypt", &ConditionContext::new()).is_allowed());
}

#[test]
fn unsupported_or_malformed_policies_deny_everything() {
    let base = json!({ "Sid": "S", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*" });
    let with = |field: &str, value: Value| {
        let mut statement = base.clone();
        statement[field] = value;
        one_statement(statement)
    };
    let without = |field: &str| {
        let mut statement = base.clone();
        statement.as_object_mut().unwrap().remove(field);
        one_statement(statement)
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            with("Condition", json!({ "NumericLessThan": { "kms:X": "1" } })),
            "unsupported condition operator \"NumericLessThan\"",
        ),
        (with("Condition", json!({ "ForAnyValue:StringEquals": { "kms:X": "a" } })), "unsupported condition operator"),
        (with("Condition", json!({ "NullIfExists": { "kms:X": "true" } })), "unsupported condition operator"),
        (with("Condition", json!({ "StringEquals": { "kms:X": "${aws:username}" } })), "policy variables"),
        (with("Condition", json!({ "StringEquals": { "kms:X": { "a": 1 } } })), "values must be strings"),
        (with("Condition", json!({ "Bool": { "kms:X": "yes" } })), "values must be true or false"),
        (with("Condition", json!({ "StringEquals": {} })), "names no condition keys"),
        (with("Condition", json!("StringEquals")), "Condition is not an object"),
        (with("Effect", json!("allow")), "Effect is"),
        (with("Action", json!(7)), "Action is not a string"),
        (with("Action", json!([])), "Action is empty"),
        (with("NotAction", json!("kms:Decrypt")), "exactly one of Action and NotAction"),
        (with("Principals", json!("*")), "unknown field \"Principals\""),
        (without("Principal"), "exactly one of Principal and NotPrincipal"),
        (without("Resource"), "exactly one of Resource and NotResource"),
        (without("Effect"), "Effect is None"),
        (json!({ "Statement": [] }), "no usable Statement"),
        (json!({ "Version": "2020-01-01", "Statement": [base.clone()] }), "unsupported policy Version"),
        (json!(["not", "an", "object"]), "not a JSON object"),
    ];
    for (policy, expected) in cases {
        let decision = decide(&policy, "kms:Decrypt", &ConditionContext::new());
        assert!(!decision.is_allowed(), "{policy}");
        assert!(decision.reason().contains(expected), "{policy}: {decision:?}");
        assert!(decision.reason().contains("denies every request"), "{decision:?}");
    }
    let garbage =
        evaluate("{not json", &Request { action: "kms:Decrypt", resource: KEY_ARN, context: &ConditionContext::new() });
    assert!(!garbage.is_allowed());
}

#[test]
fn wildcard_matching_handles_edge_cases() {
    for (pattern, text, matches) in [
        ("", "", true),
        ("", "a", false),
        ("*", "", true),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXbY", false),
        ("*a", "bbba", true),
        ("a**", "a", true),
        ("?", "", false),
        ("*?*", "x", true),
        ("é*", "éa", true),
    ] {
        assert_eq!(wildcard_match(pattern, text, false), matches, "{pattern:?} vs {text:?}");
    }
}

// Round trips with the policies `keyward_kms::policy::key_policy` generates.

fn build(byte: u8) -> PcrSet {
    PcrSet::from_bytes([byte; PCR_LEN], [byte + 1; PCR_LEN], [byte + 2; PCR_LEN])
}

fn generated(sets: Vec<PcrSet>) -> Value {
    key_policy(&KeyPolicyParams::new("000000000000", GATEWAY_ROLE, sets)).unwrap()
}

fn attested(set: &PcrSet) -> ConditionContext {
    let pcrs: Vec<(u16, Vec<u8>)> =
        (0..16u16).map(|i| (i, set.pcr(usize::from(i)).map_or(vec![0; PCR_LEN], |p| p.to_vec()))).collect();
    ConditionContext::for_recipient(pcrs.iter().map(|(i, v)| (*i, v.as_slice())))
}

#[test]
fn generated_policy_allows_an_enclave_with_matching_pcrs() {
    let set = build(1);
    let policy = generated(vec![set.clone()]);
    for action in ["kms:GenerateDataKey", "kms:Decrypt"] {
        assert_eq!(
            decide(&policy, action, &attested(&set)),
            Decision::Allow("allowed by statement \"KeyAdministration\" and statement \"EnclaveDataKeys\"".into())
        );
    }
}

#[test]
fn generated_policy_denies_each_single_pcr_mismatch_and_names_it() {
    let set = build(1);
    let policy = generated(vec![set.clone()]);
    for index in 0..3u8 {
        let mut ctx = attested(&set);
        let wrong = hex::encode([0xee; PCR_LEN]);
        ctx.insert(&format!("kms:RecipientAttestation:PCR{index}"), vec![wrong.clone()]);
        let decision = decide(&policy, "kms:Decrypt", &ctx);
        assert_eq!(
            decision,
            Decision::Deny(format!(
                "denied by statement \"DenyDataKeysWithoutAttestedPCR{index}\": \
                 kms:RecipientAttestation:PCR{index} is {wrong} which the key policy does not allow"
            ))
        );
    }
}

#[test]
fn generated_policy_denies_calls_without_a_recipient_even_for_the_account_root() {
    let policy = generated(vec![build(1)]);
    for action in ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom"] {
        assert_eq!(
            decide(&policy, action, &ConditionContext::new()),
            Decision::Deny(
                "denied by statement \"DenyDataKeysWithoutAttestedPCR0\": kms:RecipientAttestation:PCR0 is absent \
                 (the request has no Recipient attestation document)"
                    .into()
            ),
            "{action}"
        );
    }
    // Administration stays possible: the account root's kms:* still covers it.
    assert!(decide(&policy, "kms:PutKeyPolicy", &ConditionContext::new()).is_allowed());
}

#[test]
fn generated_policy_with_two_builds_allows_either() {
    let (old, new) = (build(1), build(7));
    let policy = generated(vec![old.clone(), new.clone()]);
    assert!(decide(&policy, "kms:Decrypt", &attested(&old)).is_allowed());
    assert!(decide(&policy, "kms:Decrypt", &attested(&new)).is_allowed());
    assert!(!decide(&policy, "kms:Decrypt", &attested(&build(20))).is_allowed());
}

#[test]
fn recipient_context_holds_every_pcr_and_the_image_digest() {
    let ctx = ConditionContext::for_recipient([(0, &[0xAB; 48][..]), (3, &[0x01; 48][..])]);
    assert_eq!(ctx.get("kms:RecipientAttestation:ImageSha384"), Some(&["ab".repeat(48)][..]));
    assert_eq!(ctx.get("KMS:RECIPIENTATTESTATION:PCR0"), Some(&["ab".repeat(48)][..]));
    assert_eq!(ctx.get("kms:RecipientAttestation:PCR3"), Some(&["01".repeat(48)][..]));
    assert!(ctx.has_recipient());
    assert!(!ConditionContext::new().has_recipient());
}
