//! The daemon's HTTP interface (DESIGN §8): the landing page, the OpenMetrics exposition (gzip
//! when asked), `/healthz`, `/readyz` (every tenant and source polled successfully within three
//! poll intervals, as [`Readiness`] tells), the router that joins them with the JSON drill-down
//! API and the pages for people, and the check of `--web.telemetry-path`.
//!
//! Handlers only read: metrics are encoded from memory, store reads run on the blocking pool so
//! the async runtime never waits on SQLite, and readiness is fed by the pipeline through
//! [`Readiness`] (defined outside this module, so the core does not depend on HTTP). Responses
//! never carry secrets or store error text. This module does not poll, diagnose or write the
//! store.
//!
//! Its parts: `api` (the JSON drill-down API and its request limit), `html` (the routes of the
//! pages rendered by [`crate::pages`]), `web_config` (`--web.config.file` and basic auth), `tls`
//! (`tls_server_config` into rustls settings) and `listener` ([`serve`]: the accept loop under
//! [`ServerLimits`]).

mod api;
mod html;
mod listener;
#[cfg(test)]
mod test_server;
mod tls;
mod web_config;

pub use api::{DEFAULT_LIMIT, MAX_LIMIT};
pub use listener::{serve, ServerLimits, DEFAULT_MAX_CONNECTIONS};
pub use tls::{ClientAuthType, TlsSettings};
pub use web_config::{WebConfig, WebConfigError, MAX_BCRYPT_COST, MAX_PASSWORD_BYTES};

use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::store::Store;
use api::{contact, diagnoses, limit_api};
use axum::extract::State;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use html::{contact_html, diagnoses_html};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use web_config::{require_basic_auth, AuthGuard};

/// The content type of the metrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Mutex<Store>>,
    pub readiness: Arc<Readiness>,
    /// Where the exposition is served (`--web.telemetry-path`, default `/metrics`).
    pub telemetry_path: String,
    /// `--web.config.file`, if given: basic-auth users enforced on every route but `/healthz`
    /// and `/readyz`, and TLS.
    pub web_config: Option<Arc<WebConfig>>,
    /// Timeouts and caps of the server.
    pub limits: ServerLimits,
}

/// Paths the telemetry path must not take: the routes of this server and the reserved pages.
const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/api", "/diagnoses", "/contacts"];

/// Checks `--web.telemetry-path`: a plain absolute path (printable ASCII, no `?`, `#`, `%` and no
/// route syntax `:`, `*`, `{`, `}`) that is not `/` and does not shadow `/healthz`, `/readyz`,
/// `/api/...`, `/diagnoses` or `/contacts/...`. The error names the flag and the value.
pub fn validate_telemetry_path(path: &str) -> Result<(), String> {
    let refuse = |why: String| Err(format!("--web.telemetry-path {path:?}: {why}"));
    if !path.starts_with('/') {
        return refuse("must start with '/', e.g. /metrics".to_owned());
    }
    if path == "/" {
        return refuse("must not be '/', which is the landing page".to_owned());
    }
    if !path.chars().all(|c| c.is_ascii_graphic()) || path.contains(['?', '#', '%']) {
        return refuse(
            "must be a plain path of printable ASCII without spaces, '?', '#' or '%'".to_owned(),
        );
    }
    if path.contains([':', '*', '{', '}']) {
        return refuse("must not contain ':', '*', '{' or '}' (route syntax)".to_owned());
    }
    let trimmed = path.trim_end_matches('/');
    for reserved in RESERVED_PATHS {
        if trimmed == *reserved || path.starts_with(&format!("{reserved}/")) {
            return refuse(format!(
                "{reserved} is taken by the server (reserved: {}, and everything under /api/, \
                 /diagnoses/ and /contacts/)",
                RESERVED_PATHS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Builds the router (exposed for embedding; [`serve`] is the usual entry point). With basic
/// auth configured, every route needs credentials except `/healthz` and `/readyz` (which reveal
/// no tenant or source names then), so that probes need none.
pub fn router(state: AppState) -> std::io::Result<Router> {
    let path = state.telemetry_path.clone();
    validate_telemetry_path(&path)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let guard = state
        .web_config
        .clone()
        .filter(|c| c.requires_auth())
        .map(|c| Arc::new(AuthGuard::new(c, &state.limits)));
    let api_permits = Arc::new(tokio::sync::Semaphore::new(
        state.limits.max_api_requests.max(1),
    ));
    // The pages for people read the store like the API and share its request limit.
    let api = Router::new()
        .route("/api/v1/diagnoses", get(diagnoses))
        .route("/api/v1/contacts/{id}", get(contact))
        .route("/diagnoses", get(diagnoses_html))
        .route("/contacts/{id}", get(contact_html))
        .route_layer(axum::middleware::from_fn_with_state(api_permits, limit_api));
    let protected = Router::new()
        .route("/", get(landing))
        .route(&path, get(metrics))
        .merge(api)
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            require_basic_auth,
        ));
    Ok(Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(state))
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let metrics = html_escape(&state.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>handover-exporter</title></head>\n\
         <body><h1>handover-exporter</h1>\n\
         <p>Diagnoses NICE CXone &harr; Cognigy.AI voicebot handovers.</p>\n<ul>\n\
         <li><a href=\"{metrics}\">Metrics</a></li>\n\
         <li><a href=\"/healthz\">Health</a></li>\n\
         <li><a href=\"/readyz\">Readiness</a></li>\n\
         <li><a href=\"/diagnoses\">Recent diagnoses</a> (<a href=\"/diagnoses?outcome=failed\">failures</a>; \
         one call: <code>/contacts/{{id}}</code>)</li>\n\
         <li><a href=\"/api/v1/diagnoses\">Recent diagnoses (JSON)</a></li>\n\
         <li>One contact: <code>/api/v1/contacts/{{id}}</code></li>\n\
         </ul>\n<p>Version {}</p></body></html>\n",
        env!("CARGO_PKG_VERSION")
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether the Accept-Encoding header lists gzip with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            value.split(',').any(|item| {
                let mut parts = item.split(';').map(str::trim);
                let coding = parts.next().unwrap_or("");
                let zero_quality = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f64>().ok())
                        == Some(0.0)
                });
                (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero_quality
            })
        })
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let text = state.metrics.encode();
    let content_type = [(
        CONTENT_TYPE,
        HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    )];
    if accepts_gzip(&headers) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        match encoder
            .write_all(text.as_bytes())
            .and_then(|()| encoder.finish())
        {
            Ok(body) => {
                return (
                    content_type,
                    [
                        (CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                        (VARY, HeaderValue::from_static("Accept-Encoding")),
                    ],
                    body,
                )
                    .into_response()
            }
            Err(error) => tracing::warn!(%error, "gzip of the exposition failed; sending it plain"),
        }
    }
    (
        content_type,
        [(VARY, HeaderValue::from_static("Accept-Encoding"))],
        text,
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let missing = state.readiness.not_ready(Instant::now());
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else if state.web_config.as_ref().is_some_and(|c| c.requires_auth()) {
        // Open without credentials, so it names no tenant or source; /metrics (handover_up)
        // tells which.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {} source(s) without a recent successful poll (see handover_up in \
                 the metrics)\n",
                missing.len()
            ),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", missing.join("\n")),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::test_server::{client, start};
    use crate::sources::http::Source;
    use std::io::Read as _;
    use std::time::Duration;

    /// The landing page links every other route; /healthz answers ok.
    #[tokio::test]
    async fn landing_and_health() {
        let server = start().await;
        let page = client().get(&server.base).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()[CONTENT_TYPE.as_str()]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = page.text().await.unwrap();
        for link in [
            "href=\"/metrics\"",
            "href=\"/healthz\"",
            "href=\"/readyz\"",
            "href=\"/api/v1/diagnoses\"",
        ] {
            assert!(body.contains(link), "{link} missing in {body}");
        }
        let health = client()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.unwrap(), "ok");
    }

    /// /metrics serves OpenMetrics text with its content type, including store-seeded totals.
    #[tokio::test]
    async fn metrics_plain() {
        let server = start().await;
        let response = client()
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[CONTENT_TYPE.as_str()],
            OPENMETRICS_CONTENT_TYPE
        );
        assert!(response.headers().get(CONTENT_ENCODING.as_str()).is_none());
        let body = response.text().await.unwrap();
        assert!(
            body.contains(r#"handover_contacts_total{tenant="acme",outcome="failed"} 2"#),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));
    }

    /// /metrics is gzip-compressed when the client accepts gzip, and decompresses to the text.
    #[tokio::test]
    async fn metrics_gzip() {
        let server = start().await;
        let response = client()
            .get(format!("{}/metrics", server.base))
            .header("Accept-Encoding", "deflate, gzip;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_ENCODING.as_str()], "gzip");
        assert_eq!(
            response.headers()[CONTENT_TYPE.as_str()],
            OPENMETRICS_CONTENT_TYPE
        );
        let raw = response.bytes().await.unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("# TYPE handover_contacts counter"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let refused = client()
            .get(format!("{}/metrics", server.base))
            .header("Accept-Encoding", "gzip;q=0")
            .send()
            .await
            .unwrap();
        assert!(refused.headers().get(CONTENT_ENCODING.as_str()).is_none());
    }

    /// /readyz is 503 naming each source until every source polled recently, then 200.
    #[tokio::test]
    async fn readyz_turns_ready() {
        let server = start().await;
        let url = format!("{}/readyz", server.base);
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 503);
        let body = response.text().await.unwrap();
        assert!(
            body.contains("acme/cxone: no successful poll yet"),
            "{body}"
        );
        assert!(
            body.contains("acme/cognigy: no successful poll yet"),
            "{body}"
        );

        server.readiness.mark_success("acme", Source::Cxone);
        let stale = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
        server
            .readiness
            .mark_success_at("acme", Source::Cognigy, stale);
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 503);
        let body = response.text().await.unwrap();
        assert!(!body.contains("acme/cxone"), "{body}");
        assert!(
            body.contains("acme/cognigy: last successful poll 10s ago (limit 3s)"),
            "{body}"
        );

        server.readiness.mark_success("acme", Source::Cognigy);
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    /// A telemetry path that would shadow the landing page or the API is refused.
    #[test]
    fn bad_telemetry_path_is_refused() {
        let state = AppState {
            metrics: Arc::new(Metrics::new(&[], "test")),
            store: Arc::new(Mutex::new(Store::open(":memory:").unwrap())),
            readiness: Arc::new(Readiness::new(&[], Duration::from_secs(60))),
            telemetry_path: "metrics".to_owned(),
            web_config: None,
            limits: ServerLimits::default(),
        };
        let error = router(state).unwrap_err();
        assert!(
            error.to_string().contains("--web.telemetry-path"),
            "{error}"
        );
    }

    /// Telemetry paths that would shadow a route, are route syntax or are not plain paths are
    /// refused naming the flag; ordinary ones pass.
    #[test]
    fn telemetry_path_validation() {
        for bad in [
            "",
            "metrics",
            "/",
            "/healthz",
            "/readyz",
            "/readyz/",
            "/api",
            "/api/v1/x",
            "/diagnoses",
            "/contacts/1",
            "/:x",
            "/{x}",
            "/*x",
            "/me trics",
            "/m?x",
            "/m#x",
            "/m%20",
        ] {
            let error = validate_telemetry_path(bad).expect_err(bad);
            assert!(error.starts_with("--web.telemetry-path"), "{error}");
        }
        for good in [
            "/metrics",
            "/prometheus/metrics",
            "/healthz-metrics",
            "/x.txt",
        ] {
            validate_telemetry_path(good).expect(good);
        }
    }
}
