//! From policy JSON to statements the evaluator understands, refusing everything else.

use serde_json::{Map, Value};

use super::{Condition, Effect, KeyPolicy, Operator, Patterns, PolicyError, Statement, scalar_to_string};

const STATEMENT_FIELDS: [&str; 9] =
    ["Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"];

pub(super) fn policy(text: &str) -> Result<KeyPolicy, PolicyError> {
    let value: Value = serde_json::from_str(text).map_err(|e| PolicyError::NotJson(e.to_string()))?;
    let document = value.as_object().ok_or_else(|| PolicyError::NotJson("not an object".into()))?;
    if let Some(version) = document.get("Version")
        && !matches!(version.as_str(), Some("2012-10-17" | "2008-10-17"))
    {
        return Err(PolicyError::NotJson(format!("unsupported policy Version {version}")));
    }
    let statements: Vec<&Value> = match document.get("Statement") {
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => return Err(PolicyError::NoStatements),
    };
    let statements =
        statements.into_iter().enumerate().map(|(index, value)| statement(index, value)).collect::<Result<_, _>>()?;
    Ok(KeyPolicy { statements })
}

fn statement(index: usize, value: &Value) -> Result<Statement, PolicyError> {
    let fields = value.as_object();
    let label = match fields.and_then(|f| f.get("Sid")).and_then(Value::as_str) {
        Some(sid) if !sid.is_empty() => format!("statement {sid:?}"),
        _ => format!("statement #{}", index + 1),
    };
    let malformed = |reason: String| PolicyError::Statement { statement: label.clone(), reason };
    let fields = fields.ok_or_else(|| malformed("not an object".into()))?;
    if let Some(unknown) = fields.keys().find(|k| !STATEMENT_FIELDS.contains(&k.as_str())) {
        return Err(malformed(format!("unknown field {unknown:?}")));
    }
    if let Some(sid) = fields.get("Sid")
        && !sid.is_string()
    {
        return Err(malformed("Sid is not a string".into()));
    }
    let effect = match fields.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        other => {
            return Err(malformed(format!("Effect is {other:?}, not \"Allow\" or \"Deny\"")));
        }
    };
    // Principals are not evaluated (see the module documentation), but a key policy statement
    // without one is one KMS would refuse.
    match (fields.get("Principal"), fields.get("NotPrincipal")) {
        (Some(p), None) | (None, Some(p)) if p.is_string() || p.is_object() => {}
        _ => {
            return Err(malformed("needs exactly one of Principal and NotPrincipal, a string or an object".into()));
        }
    }
    let actions = patterns(fields, "Action", "NotAction").map_err(&malformed)?;
    let resources = patterns(fields, "Resource", "NotResource").map_err(&malformed)?;
    let conditions = match fields.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(block)) => conditions(block).map_err(&malformed)?,
        Some(_) => return Err(malformed("Condition is not an object".into())),
    };
    Ok(Statement { label, effect, actions, resources, conditions })
}

fn patterns(fields: &Map<String, Value>, name: &str, not_name: &str) -> Result<Patterns, String> {
    let (value, negated) = match (fields.get(name), fields.get(not_name)) {
        (Some(v), None) => (v, false),
        (None, Some(v)) => (v, true),
        _ => return Err(format!("needs exactly one of {name} and {not_name}")),
    };
    let patterns = string_list(value).ok_or_else(|| format!("{name} is not a string or a list of strings"))?;
    if patterns.is_empty() {
        return Err(format!("{name} is empty"));
    }
    Ok(Patterns { patterns, negated })
}

fn string_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

fn conditions(block: &Map<String, Value>) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    for (operator_name, keys) in block {
        let (operator, if_exists) = operator(operator_name)?;
        let keys = keys.as_object().ok_or_else(|| format!("{operator_name} is not an object of condition keys"))?;
        if keys.is_empty() {
            return Err(format!("{operator_name} names no condition keys"));
        }
        for (key, values) in keys {
            let values = match values {
                Value::Array(items) => items.iter().map(scalar_to_string).collect::<Option<Vec<_>>>(),
                scalar => scalar_to_string(scalar).map(|v| vec![v]),
            }
            .ok_or_else(|| format!("{operator_name} {key}: values must be strings, numbers or booleans"))?;
            if values.iter().any(|v| v.contains("${")) {
                return Err(format!("{operator_name} {key}: policy variables are not supported"));
            }
            let boolean = |v: &String| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false");
            if matches!(operator, Operator::Null | Operator::Bool) && !values.iter().all(boolean) {
                return Err(format!("{operator_name} {key}: values must be true or false"));
            }
            out.push(Condition { operator, if_exists, key: key.clone(), values });
        }
    }
    Ok(out)
}

fn operator(name: &str) -> Result<(Operator, bool), String> {
    let (base, if_exists) = match name.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let operator = match base {
        "StringEquals" => Operator::StringEquals,
        "StringNotEquals" => Operator::StringNotEquals,
        "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
        "StringNotEqualsIgnoreCase" => Operator::StringNotEqualsIgnoreCase,
        "StringLike" => Operator::StringLike,
        "StringNotLike" => Operator::StringNotLike,
        // AWS has no NullIfExists: the operator is about existence already.
        "Null" if !if_exists => Operator::Null,
        "Bool" => Operator::Bool,
        _ => return Err(format!("unsupported condition operator {name:?}")),
    };
    Ok((operator, if_exists))
}
