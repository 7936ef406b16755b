//! Bad-input cases for the HTTP API: each request, the status and stable code it must get,
//! and a part of the message that names the problem for a person.

use keyward_e2e::Stack;
use serde_json::Value;

pub struct Case {
    pub what: &'static str,
    pub method: &'static str,
    pub path: String,
    pub auth: Auth,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub status: u16,
    /// The stable error code the answer must carry.
    pub code: &'static str,
    /// A part of the message that names the problem for a person.
    pub message: &'static str,
}

pub enum Auth {
    None,
    Api,
    Admin,
    Wrong,
}

pub fn json_case(
    what: &'static str,
    path: &str,
    body: &str,
    status: u16,
    code: &'static str,
    message: &'static str,
) -> Case {
    Case {
        what,
        method: "POST",
        path: path.to_owned(),
        auth: Auth::Api,
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        code,
        message,
    }
}

pub fn get_case(what: &'static str, path: &str, status: u16, code: &'static str, message: &'static str) -> Case {
    Case {
        what,
        method: "GET",
        path: path.to_owned(),
        auth: Auth::None,
        content_type: None,
        body: vec![],
        status,
        code,
        message,
    }
}

/// A case with another method (DELETE, or a POST without JSON).
pub fn method_case(
    what: &'static str,
    method: &'static str,
    path: &str,
    auth: Auth,
    status: u16,
    code: &'static str,
    message: &'static str,
) -> Case {
    Case { method, auth, ..get_case(what, path, status, code, message) }
}

/// Sends every case and checks status, code and message.
pub async fn run_cases(stack: &Stack, cases: &[Case]) {
    let base = format!("http://127.0.0.1:{}", stack.api_port);
    let admin_token = std::fs::read_to_string(stack.path().join("admin-token")).expect("admin token");
    let http = reqwest::Client::new();
    for case in cases {
        let mut request = match case.method {
            "GET" => http.get(format!("{base}{}", case.path)),
            "DELETE" => http.delete(format!("{base}{}", case.path)),
            _ => http.post(format!("{base}{}", case.path)).body(case.body.clone()),
        };
        if let Some(ct) = case.content_type {
            request = request.header("Content-Type", ct);
        }
        request = match case.auth {
            Auth::None => request,
            Auth::Api => request.bearer_auth(&stack.token),
            Auth::Admin => request.bearer_auth(admin_token.trim()),
            Auth::Wrong => request.bearer_auth("0".repeat(48)),
        };
        let response = request.send().await.unwrap_or_else(|e| panic!("{}: {e}", case.what));
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.bytes().await.expect("body"))
            .unwrap_or_else(|e| panic!("{}: error body is not JSON: {e}", case.what));
        assert_eq!(status, case.status, "{}: {body}", case.what);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.what);
        let message =
            body["error"]["message"].as_str().unwrap_or_else(|| panic!("{}: no error.message in {body}", case.what));
        assert!(message.contains(case.message), "{}: {message:?} lacks {:?}", case.what, case.message);
    }
}
