#![doc = include_str!("../README.md")]

mod audit;
mod document;
mod policy;
mod principal;
mod replay;
mod request;

pub use audit::{AuditChain, AuditEntry, AuditError, Receipt, SignedRecord, verify_log};
pub use document::{MAX_RULE_PRINCIPALS, MAX_RULES, PolicyDocumentError};
pub use policy::{Decision, DenyReason, KeyState, Policy, Rule};
pub use principal::{Principal, PrincipalError, PrincipalId, PrincipalKey};
pub use replay::{ReplayError, ReplayGuard};
pub use request::{FieldTooLong, Operation, RequestToSign};
