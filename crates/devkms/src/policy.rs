//! A key-policy evaluator with AWS's semantics for the parts a KMS key policy for Nitro
//! Enclaves uses: an explicit Deny wins, else any Allow allows, else the request is denied.
//!
//! Supported: `Effect`, `Action`/`NotAction` (string or list; `*` and `?` wildcards, case
//! ignored), `Resource`/`NotResource` (`*` or ARN patterns, compared with the key's ARN), and
//! `Condition` with `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`,
//! `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`, `Null` and `Bool`, each but `Null`
//! optionally with the `IfExists` suffix. Several values for one key are ORed, several keys in
//! one operator and several operators are ANDed. Negated operators hold when the key is absent,
//! positive ones do not; `IfExists` operators hold when the key is absent.
//!
//! `Principal` and `NotPrincipal` are NOT evaluated: the emulator cannot authenticate callers
//! (neither LocalStack nor moto checks SigV4), so every caller counts as matching every
//! statement. That is the conservative reading for Deny statements and the permissive one for
//! Allow statements, which is why the key policies this project generates gate data keys with
//! Deny statements that name `*`. For the usual account-root statement (`kms:*` for
//! `arn:aws:iam::<account>:root`) it matches AWS: that statement delegates to IAM, and the
//! caller's IAM policy is assumed to allow the call.
//!
//! Anything else (unknown operators or fields, set operators such as `ForAnyValue:`, policy
//! variables) makes the whole policy malformed, and a malformed policy denies every request:
//! the evaluator fails closed.

use std::collections::BTreeMap;

use serde_json::Value;

mod parse;
#[cfg(test)]
mod tests;

/// The condition-key prefix of values taken from a `Recipient` attestation document.
pub const RECIPIENT_ATTESTATION_PREFIX: &str = "kms:RecipientAttestation:";

/// Why a key policy could not be used. The evaluator turns each into a denial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy text is not a JSON object.
    #[error("key policy is not a JSON object: {0}")]
    NotJson(String),
    /// The policy has no `Statement`, or it is neither an object nor a list of them.
    #[error("key policy has no usable Statement list")]
    NoStatements,
    /// A statement uses something this evaluator does not support or AWS would refuse.
    #[error("key policy {statement} is malformed or unsupported: {reason}")]
    Statement {
        /// `statement "Sid"` or `statement #n`.
        statement: String,
        /// What is wrong.
        reason: String,
    },
}

/// Condition keys and their values for one request. Keys are compared without regard to case,
/// as AWS does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionContext {
    entries: BTreeMap<String, Vec<String>>,
}

impl ConditionContext {
    /// An empty context: a request without any condition keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// The context KMS builds from a verified `Recipient` document: one
    /// `kms:RecipientAttestation:PCR<n>` per PCR in lower-case hex, and
    /// `kms:RecipientAttestation:ImageSha384` (which is PCR0).
    pub fn for_recipient<'a>(pcrs: impl IntoIterator<Item = (u16, &'a [u8])>) -> Self {
        let mut context = Self::new();
        for (index, value) in pcrs {
            let value = hex::encode(value);
            if index == 0 {
                context.insert(&format!("{RECIPIENT_ATTESTATION_PREFIX}ImageSha384"), vec![value.clone()]);
            }
            context.insert(&format!("{RECIPIENT_ATTESTATION_PREFIX}PCR{index}"), vec![value]);
        }
        context
    }

    /// Sets `key` to `values`.
    pub fn insert(&mut self, key: &str, values: Vec<String>) {
        self.entries.insert(key.to_ascii_lowercase(), values);
    }

    /// The values of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.entries.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// True when the request carried a `Recipient` attestation document.
    pub fn has_recipient(&self) -> bool {
        let prefix = RECIPIENT_ATTESTATION_PREFIX.to_ascii_lowercase();
        self.entries.keys().any(|key| key.starts_with(&prefix))
    }
}

/// What is being asked: `action` (e.g. `kms:Decrypt`) on the key `resource` (its ARN).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The action, e.g. `kms:GenerateDataKey`.
    pub action: &'a str,
    /// The key ARN.
    pub resource: &'a str,
    /// The condition keys of the request.
    pub context: &'a ConditionContext,
}

/// The outcome, with a reason that names the deciding statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An Allow statement applies and no Deny does.
    Allow(String),
    /// A Deny statement applies, no Allow statement does, or the policy is unusable.
    Deny(String),
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Self::Allow(reason) | Self::Deny(reason) => reason,
        }
    }
}

/// A parsed key policy. Only [`KeyPolicy::parse`] makes one, so every statement in it is one
/// the evaluator understands.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// A list of patterns, or (for `NotAction`/`NotResource`) their complement.
#[derive(Debug, Clone)]
struct Patterns {
    patterns: Vec<String>,
    negated: bool,
}

#[derive(Debug, Clone)]
struct Statement {
    /// `statement "Sid"` or `statement #n`.
    label: String,
    effect: Effect,
    actions: Patterns,
    resources: Patterns,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Null,
    Bool,
}

impl Operator {
    fn is_negated(self) -> bool {
        matches!(self, Self::StringNotEquals | Self::StringNotEqualsIgnoreCase | Self::StringNotLike)
    }

    /// Whether one request value matches one policy value, for the positive form of the
    /// operator (negation is applied over all values).
    fn value_matches(self, policy: &str, request: &str) -> bool {
        match self {
            Self::StringEquals | Self::StringNotEquals => policy == request,
            Self::StringEqualsIgnoreCase | Self::StringNotEqualsIgnoreCase | Self::Bool => {
                policy.eq_ignore_ascii_case(request)
            }
            Self::StringLike | Self::StringNotLike => wildcard_match(policy, request, false),
            // Null looks at presence only; see Condition::evaluate.
            Self::Null => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Condition {
    operator: Operator,
    if_exists: bool,
    /// As written in the policy, for messages.
    key: String,
    values: Vec<String>,
}

impl Condition {
    /// Whether the condition holds, and the request fact that decided it.
    fn evaluate(&self, context: &ConditionContext) -> (bool, String) {
        let Some(actual) = context.get(&self.key) else {
            let holds = match self.operator {
                // "true" asks for the key to be absent.
                Operator::Null => self.values.iter().any(|v| v.eq_ignore_ascii_case("true")),
                operator => self.if_exists || operator.is_negated(),
            };
            return (holds, self.absent_fact());
        };
        if self.operator == Operator::Null {
            let holds = self.values.iter().any(|v| v.eq_ignore_ascii_case("false"));
            return (holds, format!("{} is present", self.key));
        }
        let any_match = actual.iter().any(|a| self.values.iter().any(|p| self.operator.value_matches(p, a)));
        let holds = any_match != self.operator.is_negated();
        let shown = actual.join(", ");
        // A failed positive condition and a firing negated one both mean: the request's value
        // is not among the policy's values.
        let fact = if any_match {
            format!("{} is {shown}", self.key)
        } else {
            format!("{} is {shown} which the key policy does not allow", self.key)
        };
        (holds, fact)
    }

    fn absent_fact(&self) -> String {
        if self.key.to_ascii_lowercase().starts_with(&RECIPIENT_ATTESTATION_PREFIX.to_ascii_lowercase()) {
            format!("{} is absent (the request has no Recipient attestation document)", self.key)
        } else {
            format!("{} is absent", self.key)
        }
    }
}

impl Statement {
    /// Whether the statement's action and resource cover the request (conditions aside).
    fn covers(&self, request: &Request<'_>) -> bool {
        let action = self.actions.patterns.iter().any(|p| wildcard_match(p, request.action, true));
        let resource = self.resources.patterns.iter().any(|p| p == "*" || wildcard_match(p, request.resource, false));
        action != self.actions.negated && resource != self.resources.negated
    }

    /// `Ok(facts)` when every condition holds, else `Err(fact)` of the first that does not.
    fn conditions_hold(&self, context: &ConditionContext) -> Result<Vec<String>, String> {
        self.conditions
            .iter()
            .map(|condition| match condition.evaluate(context) {
                (true, fact) => Ok(fact),
                (false, fact) => Err(fact),
            })
            .collect()
    }
}

impl KeyPolicy {
    /// Parses a key policy as `GetKeyPolicy` returns it.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        parse::policy(text)
    }

    /// AWS's evaluation: an applicable Deny wins, else an applicable Allow allows, else deny.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        for statement in self.statements.iter().filter(|s| s.effect == Effect::Deny && s.covers(request)) {
            if let Ok(facts) = statement.conditions_hold(request.context) {
                let why = if facts.is_empty() {
                    format!("it denies {} unconditionally", request.action)
                } else {
                    facts.join(" and ")
                };
                return Decision::Deny(format!("denied by {}: {why}", statement.label));
            }
        }
        let (mut allowing, mut near_misses) = (Vec::new(), Vec::new());
        for statement in self.statements.iter().filter(|s| s.effect == Effect::Allow && s.covers(request)) {
            match statement.conditions_hold(request.context) {
                Ok(_) => allowing.push(statement.label.as_str()),
                Err(fact) => near_misses.push(format!("{} does not apply because {fact}", statement.label)),
            }
        }
        // All of them, because with principals unevaluated the account-root statement allows
        // too, and the reader wants to see the statement meant for the caller.
        if !allowing.is_empty() {
            return Decision::Allow(format!("allowed by {}", allowing.join(" and ")));
        }
        let mut reason = format!("no statement allows {}", request.action);
        if !request.context.has_recipient() {
            reason.push_str(" without a Recipient attestation document");
        }
        if !near_misses.is_empty() {
            reason.push_str(": ");
            reason.push_str(&near_misses.join("; "));
        }
        Decision::Deny(reason)
    }
}

/// Parses `policy_json` and evaluates `request`; a policy that cannot be parsed denies.
pub fn evaluate(policy_json: &str, request: &Request<'_>) -> Decision {
    match KeyPolicy::parse(policy_json) {
        Ok(policy) => policy.evaluate(request),
        Err(e) => Decision::Deny(format!("{e}; the dev KMS denies every request under a policy it cannot evaluate")),
    }
}

/// `*` matches any run of characters, `?` exactly one; `ignore_case` folds ASCII case (action
/// names are case-insensitive in IAM, ARNs and condition values are not).
fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |c: char| {
        if ignore_case { c.to_ascii_lowercase() } else { c }
    };
    let pattern: Vec<char> = pattern.chars().map(fold).collect();
    let text: Vec<char> = text.chars().map(fold).collect();
    // Greedy matching that backtracks to the most recent `*`: linear in practice, and at worst
    // quadratic, never exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            // `t < text.len()` holds inside the loop.
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A JSON scalar as IAM reads it: strings as they are, numbers and booleans in their JSON form.
fn scalar_to_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
