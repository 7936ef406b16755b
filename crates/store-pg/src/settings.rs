//! `database.url`, parsed once: the driver's settings, how the server's certificate is
//! checked, and a form to show that never carries the password.

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use rustls::pki_types::{CertificateDer, pem::PemObject};

/// How the connection to the server is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// `sslmode=disable`: plain TCP (development on loopback only; production refuses it).
    Disabled,
    /// `sslmode=verify-full` (the default): TLS, the server's certificate checked against
    /// `sslrootcert` (a PEM bundle, e.g. Amazon RDS's) or the Mozilla roots, and its name
    /// against the host.
    VerifyFull {
        /// `sslrootcert`.
        roots: Option<PathBuf>,
    },
}

/// A parsed `postgres://` URL.
#[derive(Clone)]
pub struct PgSettings {
    pub(crate) config: tokio_postgres::Config,
    tls: Tls,
    shown: String,
}

/// What is wrong with a `database.url`.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("database.url must start with postgres:// or postgresql://")]
    Scheme,
    #[error(
        "database.url has sslmode={0}, which does not check the server's certificate; use sslmode=verify-full (the default, with sslrootcert=<CA bundle> for Amazon RDS), or sslmode=disable for a development database on loopback"
    )]
    WeakTls(String),
    #[error("database.url: {0}")]
    Invalid(String),
    #[error("database.url names no host (a Unix socket is not supported; use host:port)")]
    NoHost,
    #[error("cannot read the database CA bundle {path}: {message}")]
    Roots { path: PathBuf, message: String },
}

impl FromStr for PgSettings {
    type Err = SettingsError;

    fn from_str(url: &str) -> Result<Self, SettingsError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SettingsError::Scheme);
        }
        // The query starts after the authority, so a `?` in a password is not taken for it.
        let authority_end = url.rfind('@').unwrap_or(0);
        let (base, query) = match url[authority_end..].find('?') {
            Some(at) => (&url[..authority_end + at], &url[authority_end + at + 1..]),
            None => (url, ""),
        };
        let (mut mode, mut roots, mut rest) = (None, None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", value)) => mode = Some(value.to_owned()),
                Some(("sslrootcert", value)) => roots = Some(PathBuf::from(value)),
                // The host is the URL's own: another given here would be reached instead of
                // the one shown, checked for loopback and matched against the certificate.
                Some(("host" | "hostaddr", _)) => {
                    return Err(SettingsError::Invalid(
                        "give the host in the URL, not as a host or hostaddr parameter".into(),
                    ));
                }
                _ => rest.push(pair),
            }
        }
        let tls = match mode.as_deref().unwrap_or("verify-full") {
            "verify-full" => Tls::VerifyFull { roots },
            "disable" if roots.is_none() => Tls::Disabled,
            "disable" => return Err(SettingsError::Invalid("sslrootcert with sslmode=disable".into())),
            other => return Err(SettingsError::WeakTls(other.to_owned())),
        };
        let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let host = match config.get_hosts() {
            [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
            [] => return Err(SettingsError::NoHost),
            _ => return Err(SettingsError::Invalid("one host only (a fleet reaches one primary endpoint)".into())),
        };
        config.ssl_mode(match tls {
            Tls::Disabled => tokio_postgres::config::SslMode::Disable,
            Tls::VerifyFull { .. } => tokio_postgres::config::SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives_idle(Duration::from_secs(30));
        // A server that stops acknowledging (a failover, a network partition) is given up on
        // in 15 s instead of TCP's minutes.
        config.tcp_user_timeout(Duration::from_secs(15));
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let shown = format!(
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or(""),
            config.get_dbname().unwrap_or(config.get_user().unwrap_or(""))
        );
        Ok(PgSettings { config, tls, shown })
    }
}

impl PgSettings {
    /// Whether the URL carried a password.
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// Sets the password (from a file of its own).
    pub fn set_password(&mut self, password: &str) {
        self.config.password(password);
    }

    /// How the server's certificate is checked.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// Whether the server is on this machine (127.0.0.0/8, ::1 or `localhost`).
    pub fn is_loopback(&self) -> bool {
        self.config.get_hosts().iter().all(|h| match h {
            tokio_postgres::config::Host::Tcp(host) => {
                host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            #[allow(unreachable_patterns)]
            _ => false,
        })
    }

    /// The rustls configuration for [`Tls::VerifyFull`], `None` when TLS is off.
    pub(crate) fn rustls(&self) -> Result<Option<rustls::ClientConfig>, SettingsError> {
        let Tls::VerifyFull { roots } = &self.tls else { return Ok(None) };
        let mut store = rustls::RootCertStore::empty();
        match roots {
            Some(path) => {
                let failed = |message: String| SettingsError::Roots { path: path.clone(), message };
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| failed(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| failed(e.to_string()))?;
                if certs.is_empty() {
                    return Err(failed("no certificate in it".into()));
                }
                for cert in certs {
                    store.add(cert).map_err(|e| failed(e.to_string()))?;
                }
            }
            None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SettingsError::Invalid(format!("TLS: {e}")))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Some(config))
    }
}

/// The URL without its password or parameters.
impl fmt::Display for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings").field("url", &self.shown).field("tls", &self.tls).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_full_is_the_default_and_weaker_modes_are_refused() {
        let s: PgSettings = "postgres://kw:secret@db.example.com:6432/keyward".parse().unwrap();
        assert_eq!(s.tls(), &Tls::VerifyFull { roots: None });
        assert_eq!(s.to_string(), "postgres://kw@db.example.com:6432/keyward");
        assert!(!format!("{s:?}").contains("secret"), "{s:?}");
        assert!(!s.is_loopback());
        for mode in ["require", "prefer", "allow", "verify-ca"] {
            let refused = format!("postgres://kw@db/k?sslmode={mode}").parse::<PgSettings>().unwrap_err();
            assert!(matches!(&refused, SettingsError::WeakTls(m) if m == mode), "{refused}");
        }
        let with_roots: PgSettings =
            "postgresql://kw@db/k?sslrootcert=/etc/rds.pem&application_name=gw".parse().unwrap();
        assert_eq!(with_roots.tls(), &Tls::VerifyFull { roots: Some("/etc/rds.pem".into()) });
        assert_eq!(with_roots.config.get_application_name(), Some("gw"));
    }

    #[test]
    fn plain_tcp_only_when_asked_and_only_one_host() {
        let s: PgSettings = "postgres://kw@127.0.0.1:5432/k?sslmode=disable".parse().unwrap();
        assert_eq!((s.tls(), s.is_loopback()), (&Tls::Disabled, true));
        assert!(s.rustls().unwrap().is_none());
        assert!(matches!("mysql://x".parse::<PgSettings>(), Err(SettingsError::Scheme)));
        assert!(matches!("postgres://kw@a,b/k".parse::<PgSettings>(), Err(SettingsError::Invalid(_))));
        let sneaky = "postgres://kw@localhost/k?sslmode=disable&hostaddr=10.0.0.9".parse::<PgSettings>();
        assert!(matches!(sneaky, Err(SettingsError::Invalid(_))), "{sneaky:?}");
        let odd = "postgres://kw:p?sslmode=require@db/k".parse::<PgSettings>().unwrap();
        assert_eq!(odd.tls(), &Tls::VerifyFull { roots: None }, "a ? in the password is not a query");
        let missing = "postgres://kw@db/k?sslrootcert=/nonexistent.pem".parse::<PgSettings>().unwrap();
        assert!(matches!(missing.rustls(), Err(SettingsError::Roots { .. })));
    }
}
