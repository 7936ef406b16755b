#![doc = include_str!("../README.md")]

mod policy;
mod principal;
mod replay;
mod request;

pub use policy::{Decision, DenyReason, Policy, Rule};
pub use principal::{Principal, PrincipalError, PrincipalId, PrincipalKey};
pub use replay::{ReplayError, ReplayGuard};
pub use request::{FieldTooLong, Operation, RequestToSign};
