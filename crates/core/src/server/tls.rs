//! The TLS half of `--web.config.file`: `tls_server_config` (`cert_file`, `key_file`,
//! `client_auth_type`, `client_ca_file`, `min_version`, `max_version`; relative paths are resolved
//! against the web config file's directory, as exporter-toolkit does) becomes a rustls
//! `ServerConfig` with the ring provider. Certificates and keys are read once at start-up (a bad
//! file is a start-up error naming the key and the file; they are not reloaded on change). Keys
//! this build cannot honour (`cipher_suites`, `client_allowed_sans`, inline `cert`/`key`, TLS
//! 1.0/1.1, unverified client certificates) are refused by name, never ignored. The private key
//! never appears in errors or `Debug` output. This module does not accept connections or run
//! handshakes (see `listener`).

use super::web_config::MAX_WEB_FILE_BYTES;
use serde::Deserialize;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

/// The `tls_server_config` keys this build honours; any other key is refused by name.
const TLS_KEYS: &[&str] = &[
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsConfig {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

/// Which client certificates the TLS server asks for (exporter-toolkit `client_auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthType {
    /// No client certificate is requested (the default).
    NoClientCert,
    /// A client certificate is optional, but verified against `client_ca_file` when sent.
    VerifyClientCertIfGiven,
    /// Every client must present a certificate that verifies against `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuthType {
    fn parse(value: &str) -> Result<ClientAuthType, String> {
        match value {
            "" | "NoClientCert" => Ok(ClientAuthType::NoClientCert),
            "VerifyClientCertIfGiven" => Ok(ClientAuthType::VerifyClientCertIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuthType::RequireAndVerifyClientCert),
            "RequestClientCert" | "RequireAnyClientCert" => Err(format!(
                "tls_server_config.client_auth_type: {value} (client certificates accepted \
                 without verification) is not supported by this build; use \
                 VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
            )),
            other => Err(format!(
                "tls_server_config.client_auth_type: unknown value {other:?}; valid values: \
                 NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            )),
        }
    }
}

/// The TLS half of a web config: the ready rustls settings and, for Debug, where they came from.
pub struct TlsSettings {
    cert_file: PathBuf,
    client_auth: ClientAuthType,
    pub(super) server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of Debug output; the certificate's path and the policy are not secret.
        f.debug_struct("TlsSettings")
            .field("cert_file", &self.cert_file)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

fn tls_version(
    key: &str,
    value: &str,
) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match value {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{key}: {value} is not supported by this build (it speaks TLS12 \
             and TLS13 only)"
        )),
        other => Err(format!(
            "tls_server_config.{key}: unknown value {other:?}; valid values: TLS12, TLS13"
        )),
    }
}

/// Reads a file named by a `tls_server_config` key (a regular file of at most 1 MiB); the error
/// names the key and the path.
fn read_tls_file(key: &str, path: &FsPath) -> Result<Vec<u8>, String> {
    crate::config::read_regular_file(path, MAX_WEB_FILE_BYTES).map_err(|e| {
        let e = e.strip_prefix("cannot be read: ").unwrap_or(&e).to_owned();
        format!(
            "tls_server_config.{key}: cannot read {}: {e}",
            path.display()
        )
    })
}

/// Every certificate of a PEM file, in order; an empty or malformed file is an error naming it.
fn read_certificates(
    key: &str,
    path: &FsPath,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = read_tls_file(key, path)?;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "tls_server_config.{key}: {} is not valid PEM: {e}",
                path.display()
            )
        })?;
    if certificates.is_empty() {
        return Err(format!(
            "tls_server_config.{key}: {} contains no PEM CERTIFICATE block",
            path.display()
        ));
    }
    Ok(certificates)
}

/// Resolves a configured path against the web config file's directory (exporter-toolkit does).
fn resolve(base: &FsPath, path: &str) -> PathBuf {
    let path = FsPath::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// Builds the TLS settings from `tls_server_config`; `None` when it is absent or empty. Every
/// setting is checked before any file is read.
pub(super) fn parse_tls(
    value: &serde_norway::Value,
    base: &FsPath,
) -> Result<Option<TlsSettings>, String> {
    if checked_settings(value)?.is_none() {
        return Ok(None);
    }
    let raw: RawTlsConfig =
        serde_norway::from_value(value.clone()).map_err(|e| format!("tls_server_config: {e}"))?;
    let required = |key: &str, value: Option<String>| {
        value
            .filter(|v| !v.is_empty())
            .map(|v| resolve(base, &v))
            .ok_or_else(|| format!("tls_server_config.{key}: required when TLS is configured"))
    };
    let cert_file = required("cert_file", raw.cert_file)?;
    let key_file = required("key_file", raw.key_file)?;
    let (client_auth, client_ca_file) =
        client_auth(raw.client_auth_type.as_deref(), raw.client_ca_file, base)?;
    let versions = protocol_versions(raw.min_version.as_deref(), raw.max_version.as_deref())?;

    let certificates = read_certificates("cert_file", &cert_file)?;
    let key = read_private_key(&key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match client_verifier(client_auth, client_ca_file.as_deref(), provider)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut server_config = builder.with_single_cert(certificates, key).map_err(|e| {
        format!(
            "tls_server_config: the key in {} does not serve the certificate in {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    // The router speaks HTTP/1.1 only (axum's http2 feature is off).
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsSettings {
        cert_file,
        client_auth,
        server_config: Arc::new(server_config),
    }))
}

/// The settings of `tls_server_config`, every key one this build honours ([`TLS_KEYS`]); `None`
/// when it is absent or empty (plain HTTP, as in exporter-toolkit).
fn checked_settings(value: &serde_norway::Value) -> Result<Option<&serde_norway::Mapping>, String> {
    let mapping = match value {
        serde_norway::Value::Null => return Ok(None),
        serde_norway::Value::Mapping(m) if m.is_empty() => return Ok(None),
        serde_norway::Value::Mapping(m) => m,
        _ => return Err("tls_server_config: expected a mapping of settings".to_owned()),
    };
    for key in mapping.keys() {
        let name = key
            .as_str()
            .map_or_else(|| format!("{key:?}"), str::to_owned);
        if !TLS_KEYS.contains(&name.as_str()) {
            return Err(format!(
                "tls_server_config.{name}: not supported by this build (supported keys: {})",
                TLS_KEYS.join(", ")
            ));
        }
    }
    Ok(Some(mapping))
}

/// `client_auth_type` and `client_ca_file` (resolved in `base`), refused when they do not fit
/// together: a CA file without verification, or verification without a CA file.
fn client_auth(
    client_auth_type: Option<&str>,
    client_ca_file: Option<String>,
    base: &FsPath,
) -> Result<(ClientAuthType, Option<PathBuf>), String> {
    let client_auth = ClientAuthType::parse(client_auth_type.unwrap_or(""))?;
    let client_ca_file = client_ca_file
        .filter(|v| !v.is_empty())
        .map(|v| resolve(base, &v));
    match (client_auth, &client_ca_file) {
        (ClientAuthType::NoClientCert, Some(_)) => {
            return Err(
                "tls_server_config.client_ca_file: set, but client_auth_type is \
                        NoClientCert; set client_auth_type to RequireAndVerifyClientCert or \
                        VerifyClientCertIfGiven"
                    .to_owned(),
            )
        }
        (ClientAuthType::NoClientCert, None) | (_, Some(_)) => {}
        (_, None) => {
            return Err(
                "tls_server_config.client_ca_file: required to verify client certificates"
                    .to_owned(),
            )
        }
    }
    Ok((client_auth, client_ca_file))
}

/// The protocol versions from `min_version` (default TLS12) to `max_version` (default TLS13).
fn protocol_versions(
    min_version: Option<&str>,
    max_version: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let min = match min_version {
        None | Some("") => &rustls::version::TLS12,
        Some(v) => tls_version("min_version", v)?,
    };
    let max = match max_version {
        None | Some("") => &rustls::version::TLS13,
        Some(v) => tls_version("max_version", v)?,
    };
    let rank = |v: &rustls::SupportedProtocolVersion| u16::from(v.version);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
            .collect();
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".to_owned());
    }
    Ok(versions)
}

/// The private key of `key_file` (PEM: PKCS#8, PKCS#1 or SEC1); the error names the file.
fn read_private_key(
    key_file: &FsPath,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = read_tls_file("key_file", key_file)?;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "tls_server_config.key_file: {} holds no usable PEM private key (PKCS#8, \
             PKCS#1 or SEC1): {e}",
            key_file.display()
        )
    })
}

/// The verifier of client certificates against the CAs of `client_ca_file` (optional ones with
/// `VerifyClientCertIfGiven`); `None` when no client certificate is asked for.
fn client_verifier(
    client_auth: ClientAuthType,
    client_ca_file: Option<&FsPath>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, String> {
    let ca_file = match (client_auth, client_ca_file) {
        (ClientAuthType::NoClientCert, _) | (_, None) => return Ok(None),
        (_, Some(ca_file)) => ca_file,
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_certificates("client_ca_file", ca_file)? {
        roots.add(certificate).map_err(|e| {
            format!(
                "tls_server_config.client_ca_file: {}: {e}",
                ca_file.display()
            )
        })?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let verifier = if client_auth == ClientAuthType::VerifyClientCertIfGiven {
        verifier.allow_unauthenticated()
    } else {
        verifier
    };
    let verifier = verifier.build().map_err(|e| {
        format!(
            "tls_server_config.client_ca_file: {}: {e}",
            ca_file.display()
        )
    })?;
    Ok(Some(verifier))
}

#[cfg(test)]
mod tests {
    use crate::server::test_server::{client, start_with};
    use crate::server::web_config::{WebConfig, WebConfigError};
    use crate::server::OPENMETRICS_CONTENT_TYPE;
    use axum::http::header::CONTENT_TYPE;
    use std::time::Duration;

    const TLS_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tls");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{TLS_FIXTURES}/{name}")).unwrap()
    }

    /// Copies the TLS fixtures into a fresh directory beside a web.yml holding `yaml`, so that the
    /// relative paths in `yaml` only resolve against the web config file's own directory.
    fn tls_web_config(yaml: &str) -> (tempfile::TempDir, Result<WebConfig, WebConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "ca.crt",
            "server.crt",
            "server.key",
            "client.crt",
            "client.key",
        ] {
            std::fs::write(dir.path().join(name), fixture(name)).unwrap();
        }
        let path = dir.path().join("web.yml");
        std::fs::write(&path, yaml).unwrap();
        let config = WebConfig::load(&path);
        (dir, config)
    }

    const SERVER_TLS: &str =
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

    /// A client that trusts only the test CA.
    fn tls_client() -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(&fixture("ca.crt")).unwrap();
        reqwest::Client::builder()
            .no_gzip()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
    }

    /// With tls_server_config (paths relative to the web config file), /metrics and /healthz are
    /// served over HTTPS to a client trusting the test CA, and shutdown still completes.
    #[tokio::test]
    async fn tls_serves_metrics_and_health() {
        let (_dir, config) = tls_web_config(SERVER_TLS);
        let config = config.unwrap();
        assert!(config.tls_enabled());
        assert!(
            !format!("{config:?}").contains("PRIVATE KEY"),
            "key leaked into Debug"
        );
        let mut server = start_with(Some(config)).await;
        assert!(
            server.base.starts_with("https://127.0.0.1:"),
            "{}",
            server.base
        );
        let client = tls_client().build().unwrap();
        let metrics = client
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200);
        assert_eq!(
            metrics.headers()[CONTENT_TYPE.as_str()],
            OPENMETRICS_CONTENT_TYPE
        );
        assert!(metrics.text().await.unwrap().ends_with("# EOF\n"));
        let health = client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.unwrap(), "ok");

        server.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), &mut server.task).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
        assert!(tls_client()
            .build()
            .unwrap()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err());
    }

    /// Plain HTTP to the TLS port and a client not trusting the CA both fail, and neither the
    /// failed handshakes nor a client stalled mid-handshake keep others from being served.
    #[tokio::test]
    async fn tls_refuses_plain_http_and_survives_bad_clients() {
        let (_dir, config) = tls_web_config(SERVER_TLS);
        let server = start_with(Some(config.unwrap())).await;
        let address = server.base.trim_start_matches("https://").to_owned();
        let plain = client()
            .get(format!("http://{address}/healthz"))
            .send()
            .await;
        assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
        let untrusting = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .build()
            .unwrap()
            .get(format!("{}/healthz", server.base))
            .send()
            .await;
        assert!(untrusting.is_err(), "{untrusting:?}");
        // A connection that never starts its handshake must not hold up the next client.
        let _stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
        let served = tokio::time::timeout(
            Duration::from_secs(5),
            tls_client()
                .build()
                .unwrap()
                .get(format!("{}/healthz", server.base))
                .send(),
        )
        .await
        .expect("a stalled handshake blocked another client")
        .unwrap();
        assert_eq!(served.status(), 200);
    }

    /// Basic auth is still enforced, and accepted, over TLS.
    #[tokio::test]
    async fn tls_with_basic_auth() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let (_dir, config) = tls_web_config(&format!(
            "{SERVER_TLS}basic_auth_users:\n  prometheus: '{hash}'\n"
        ));
        let server = start_with(Some(config.unwrap())).await;
        let client = tls_client().build().unwrap();
        let url = format!("{}/metrics", server.base);
        let anonymous = client.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let right = client
            .get(&url)
            .basic_auth("prometheus", Some("s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200);
    }

    /// RequireAndVerifyClientCert serves a client with a CA-signed certificate and refuses one
    /// without.
    #[tokio::test]
    async fn tls_requires_client_certificate() {
        let (_dir, config) = tls_web_config(&format!(
            "{SERVER_TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        ));
        let server = start_with(Some(config.unwrap())).await;
        let url = format!("{}/healthz", server.base);
        let anonymous = tls_client().build().unwrap().get(&url).send().await;
        assert!(
            anonymous.is_err(),
            "served without a client certificate: {anonymous:?}"
        );
        let mut pem = fixture("client.crt");
        pem.extend(fixture("client.key"));
        let identity = reqwest::Identity::from_pem(&pem).unwrap();
        let response = tls_client()
            .identity(identity)
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// VerifyClientCertIfGiven serves a client without a certificate and one with a CA-signed
    /// certificate, but refuses a certificate the CA did not sign.
    #[tokio::test]
    async fn tls_verifies_client_certificate_if_given() {
        let (_dir, config) = tls_web_config(&format!(
            "{SERVER_TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
        ));
        let server = start_with(Some(config.unwrap())).await;
        let url = format!("{}/healthz", server.base);
        let anonymous = tls_client()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 200);
        let identity = |cert: &str, key: &str| {
            let mut pem = fixture(cert);
            pem.extend(fixture(key));
            reqwest::Identity::from_pem(&pem).unwrap()
        };
        let signed = tls_client()
            .identity(identity("client.crt", "client.key"))
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(signed.status(), 200);
        // The server certificate is CA-signed but only for serverAuth, so it is no client identity.
        let misused = tls_client()
            .identity(identity("server.crt", "server.key"))
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await;
        assert!(
            misused.is_err(),
            "a serverAuth-only certificate was accepted: {misused:?}"
        );
    }

    /// min_version TLS13 refuses a client limited to TLS 1.2 and serves a TLS 1.3 one.
    #[tokio::test]
    async fn tls_min_version_is_enforced() {
        let (_dir, config) = tls_web_config(&format!("{SERVER_TLS}  min_version: TLS13\n"));
        let server = start_with(Some(config.unwrap())).await;
        let url = format!("{}/healthz", server.base);
        let old = tls_client()
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await;
        assert!(old.is_err(), "TLS 1.2 was served: {old:?}");
        let new = tls_client()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(new.status(), 200);
    }

    /// Missing or unusable TLS files and settings this build cannot honour are start-up errors
    /// naming the key, the file or the value.
    #[test]
    fn tls_config_errors_name_the_problem() {
        let error = |yaml: &str| -> String {
            let (dir, config) = tls_web_config(yaml);
            let message = config.unwrap_err().to_string();
            assert!(message.contains("web.yml"), "{message}");
            message.replace(&dir.path().display().to_string(), "DIR")
        };
        let missing = error("tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n");
        assert!(
            missing.contains("tls_server_config.cert_file: cannot read DIR/nope.crt"),
            "{missing}"
        );
        let not_a_key =
            error("tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n");
        assert!(
            not_a_key.contains("tls_server_config.key_file: DIR/server.crt"),
            "{not_a_key}"
        );
        let not_a_cert =
            error("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n");
        assert!(
            not_a_cert.contains("DIR/server.key contains no PEM CERTIFICATE"),
            "{not_a_cert}"
        );
        let wrong_key =
            error("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n");
        assert!(wrong_key.contains("DIR/client.key"), "{wrong_key}");
        for (yaml, names) in [
            (
                "tls_server_config:\n  key_file: server.key\n",
                "tls_server_config.cert_file: required",
            ),
            (
                &format!("{SERVER_TLS}  client_allowed_sans: [a]\n"),
                "tls_server_config.client_allowed_sans: not supported",
            ),
            (
                &format!("{SERVER_TLS}  min_version: TLS10\n"),
                "tls_server_config.min_version: TLS10 is not supported",
            ),
            (
                &format!("{SERVER_TLS}  max_version: TLS14\n"),
                "tls_server_config.max_version: unknown value \"TLS14\"",
            ),
            (
                &format!("{SERVER_TLS}  min_version: TLS13\n  max_version: TLS12\n"),
                "min_version is above max_version",
            ),
            (
                &format!("{SERVER_TLS}  client_auth_type: RequireAnyClientCert\n"),
                "tls_server_config.client_auth_type: RequireAnyClientCert",
            ),
            (
                &format!("{SERVER_TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
                "tls_server_config.client_ca_file: required",
            ),
            (
                &format!("{SERVER_TLS}  client_ca_file: ca.crt\n"),
                "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert",
            ),
        ] {
            let message = error(yaml);
            assert!(message.contains(names), "{yaml}: {message}");
        }
        // An empty tls_server_config means plain HTTP, as in exporter-toolkit.
        assert!(!WebConfig::parse("tls_server_config: {}\n")
            .unwrap()
            .tls_enabled());
    }
}
