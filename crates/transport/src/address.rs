//! Parsing of `vsock://`, `tcp://` and `unix://` addresses.

use std::{fmt, path::PathBuf, str::FromStr};

use crate::TransportError;

/// vsock CID meaning "any CID" when listening.
pub const VSOCK_CID_ANY: u32 = u32::MAX;
/// vsock CID of the parent instance as seen from inside a Nitro Enclave.
pub const VSOCK_CID_PARENT: u32 = 3;

/// Where to listen or connect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// AF_VSOCK context id and port.
    Vsock {
        /// Context id (`VSOCK_CID_ANY` to listen on every CID).
        cid: u32,
        /// Port.
        port: u32,
    },
    /// TCP host (name or IP literal, IPv6 in brackets) and port.
    Tcp {
        /// Host name or IP literal, without brackets.
        host: String,
        /// Port.
        port: u16,
    },
    /// Unix domain socket path.
    Unix(PathBuf),
}

impl FromStr for Address {
    type Err = TransportError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| TransportError::InvalidAddress { input: input.to_owned(), reason };
        let (scheme, rest) = input.split_once("://").ok_or_else(|| invalid("missing scheme"))?;
        match scheme {
            "vsock" => {
                let (cid, port) = rest.rsplit_once(':').ok_or_else(|| invalid("missing port"))?;
                let cid = if cid.eq_ignore_ascii_case("any") {
                    VSOCK_CID_ANY
                } else {
                    cid.parse().map_err(|_| invalid("CID must be a number or \"any\""))?
                };
                let port = port.parse().map_err(|_| invalid("port must be a number"))?;
                Ok(Address::Vsock { cid, port })
            }
            "tcp" => {
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| invalid("missing port"))?;
                let host = match host.strip_prefix('[') {
                    Some(v6) => v6.strip_suffix(']').ok_or_else(|| invalid("unclosed '['"))?,
                    None if host.contains(':') => return Err(invalid("IPv6 hosts need [brackets]")),
                    None => host,
                };
                if host.is_empty() {
                    return Err(invalid("missing host"));
                }
                // Brackets only delimit an IPv6 literal. Inside a host they would print back as
                // a different address ("tcp://[[h]]:1" would print as "tcp://[h]:1", host "h").
                if host.contains(['[', ']']) {
                    return Err(invalid("'[' and ']' may only enclose an IPv6 host"));
                }
                let port = port.parse().map_err(|_| invalid("port must be 0-65535"))?;
                Ok(Address::Tcp { host: host.to_owned(), port })
            }
            "unix" => {
                if !rest.starts_with('/') {
                    return Err(invalid("unix socket path must be absolute (unix:///path)"));
                }
                Ok(Address::Unix(PathBuf::from(rest)))
            }
            _ => Err(invalid("unknown scheme")),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Vsock { cid: VSOCK_CID_ANY, port } => write!(f, "vsock://any:{port}"),
            Address::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transport_and_prints_it_back() {
        for (text, expected) in [
            ("vsock://16:5000", Address::Vsock { cid: 16, port: 5000 }),
            ("vsock://any:5000", Address::Vsock { cid: VSOCK_CID_ANY, port: 5000 }),
            ("vsock://3:8000", Address::Vsock { cid: VSOCK_CID_PARENT, port: 8000 }),
            ("tcp://127.0.0.1:5000", Address::Tcp { host: "127.0.0.1".into(), port: 5000 }),
            ("tcp://localhost:0", Address::Tcp { host: "localhost".into(), port: 0 }),
            ("tcp://[::1]:7", Address::Tcp { host: "::1".into(), port: 7 }),
            ("unix:///run/keyward/enclave.sock", Address::Unix("/run/keyward/enclave.sock".into())),
        ] {
            let parsed: Address = text.parse().unwrap();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_addresses_with_the_reason() {
        for (text, reason) in [
            ("16:5000", "missing scheme"),
            ("http://127.0.0.1:80", "unknown scheme"),
            ("vsock://16", "missing port"),
            ("vsock://x:5000", "CID must be a number or \"any\""),
            ("vsock://16:99999999999", "port must be a number"),
            ("tcp://127.0.0.1:70000", "port must be 0-65535"),
            ("tcp://:80", "missing host"),
            ("tcp://::1:80", "IPv6 hosts need [brackets]"),
            ("tcp://[[::1]]:80", "'[' and ']' may only enclose an IPv6 host"),
            ("tcp://[x]]:80", "'[' and ']' may only enclose an IPv6 host"),
            ("tcp://a]:80", "'[' and ']' may only enclose an IPv6 host"),
            ("unix://relative.sock", "unix socket path must be absolute (unix:///path)"),
        ] {
            match text.parse::<Address>() {
                Err(TransportError::InvalidAddress { input, reason: got }) => {
                    assert_eq!(input, text);
                    assert_eq!(got, reason, "{text}");
                }
                other => panic!("{text}: expected InvalidAddress, got {other:?}"),
            }
        }
    }
}
