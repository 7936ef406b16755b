//! KMS access for the keyward enclave.

pub mod cms;
