//! The one KMS endpoint an enclave talks to.

use std::fmt;

use crate::KmsError;

/// A parsed KMS endpoint URL: `https://kms.<region>.amazonaws.com` in production, or
/// `http://127.0.0.1:<port>` of the attesting dev proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct KmsEndpoint {
    url: String,
    tls: bool,
    host: String,
    port: u16,
}

impl KmsEndpoint {
    /// Parses `scheme://host[:port][/]`. Paths, queries and credentials in the URL are refused.
    pub fn parse(url: &str) -> Result<Self, KmsError> {
        let bad = |reason: &str| KmsError::Config(format!("invalid KMS endpoint {url:?}: {reason}"));
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("must start with https:// or http://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(bad("only scheme://host[:port] is allowed"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                (host, port.parse::<u16>().map_err(|_| bad("port must be 1-65535"))?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() || port == 0 {
            return Err(bad("missing host or port"));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let url = format!("{}://{}", if tls { "https" } else { "http" }, authority);
        Ok(KmsEndpoint { url, tls, host, port })
    }

    /// The URL without a trailing slash, as given to the SDK.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the endpoint speaks HTTPS (TLS terminating inside the enclave).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Host name (lower case, no brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, the one target the relay may connect to.
    pub fn relay_target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// True for the public AWS KMS endpoints (`kms.<region>.amazonaws.com`, including the
    /// FIPS variants) over HTTPS on 443.
    pub fn is_aws_kms(&self) -> bool {
        let Some(rest) = self.host.strip_prefix("kms.").or_else(|| self.host.strip_prefix("kms-fips.")) else {
            return false;
        };
        let region = rest.strip_suffix(".amazonaws.com").or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
        self.tls
            && self.port == 443
            && region.is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    }
}

impl fmt::Display for KmsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl fmt::Debug for KmsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmsEndpoint({})", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_production_and_dev_endpoints() {
        let prod = KmsEndpoint::parse("https://kms.us-east-1.amazonaws.com").unwrap();
        assert!(prod.is_tls() && prod.is_aws_kms());
        assert_eq!(prod.relay_target(), "kms.us-east-1.amazonaws.com:443");
        let fips = KmsEndpoint::parse("https://kms-fips.us-gov-west-1.amazonaws.com/").unwrap();
        assert!(fips.is_aws_kms());
        assert_eq!(fips.url(), "https://kms-fips.us-gov-west-1.amazonaws.com");
        let dev = KmsEndpoint::parse("http://127.0.0.1:4567").unwrap();
        assert!(!dev.is_tls() && !dev.is_aws_kms());
        assert_eq!(dev.relay_target(), "127.0.0.1:4567");
        assert_eq!(KmsEndpoint::parse("http://localhost").unwrap().port(), 80);
    }

    #[test]
    fn non_aws_or_plain_http_endpoints_are_not_aws_kms() {
        for url in [
            "http://kms.us-east-1.amazonaws.com",
            "https://kms.us-east-1.amazonaws.com:8443",
            "https://kms.us-east-1.amazonaws.com.evil.com",
            "https://evil.com",
            "https://kms..amazonaws.com",
            "https://s3.us-east-1.amazonaws.com",
        ] {
            assert!(!KmsEndpoint::parse(url).unwrap().is_aws_kms(), "{url}");
        }
    }

    #[test]
    fn refuses_anything_but_scheme_host_port() {
        for url in [
            "kms.us-east-1.amazonaws.com",
            "ftp://x",
            "https://",
            "https://user@kms.us-east-1.amazonaws.com",
            "https://kms.us-east-1.amazonaws.com/path",
            "https://kms.us-east-1.amazonaws.com?x=1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:99999",
        ] {
            let err = KmsEndpoint::parse(url).unwrap_err();
            assert!(err.to_string().contains("invalid KMS endpoint"), "{url}: {err}");
        }
    }
}
