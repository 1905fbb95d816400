//! The JSON drill-down API over the store: `/api/v1/diagnoses` (filtered by tenant, outcome,
//! failure, reason and time, newest first, bounded in rows and bytes) and `/api/v1/contacts/{id}`,
//! plus the `/api/v1` request limit (`503` beyond
//! [`max_api_requests`](super::ServerLimits::max_api_requests)). Store reads run on the blocking
//! pool so the async runtime never waits on SQLite; a store failure is a `500` whose body holds
//! no SQLite text or path (the details go to the log). This module only reads the store; it
//! renders no HTML (see `html`) and decides nothing.

use super::AppState;
use crate::labels::parse_named;
use crate::store::{DiagnosisFilter, Store, StoreError};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// Default and maximum `limit` of `/api/v1/diagnoses`.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

const DIAGNOSES_PARAMETERS: &[&str] = &["tenant", "outcome", "failure", "reason", "since", "limit"];

/// Answers `503` at once when
/// [`ServerLimits::max_api_requests`](super::ServerLimits::max_api_requests) API requests are in
/// progress.
pub(super) async fn limit_api(
    State(permits): State<Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match permits.try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => {
            let mut response = error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many API requests in progress; retry shortly".to_owned(),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

fn error_json(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn bad_request(message: String) -> Response {
    error_json(StatusCode::BAD_REQUEST, message)
}

pub(super) fn parse_filter(params: &[(String, String)]) -> Result<DiagnosisFilter, String> {
    let mut filter = DiagnosisFilter {
        limit: DEFAULT_LIMIT,
        ..DiagnosisFilter::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (name, _) in params {
        if !seen.insert(name.as_str()) {
            return Err(format!(
                "parameter {name}: given more than once; give each parameter at most once"
            ));
        }
    }
    for (name, value) in params {
        // `?outcome=&reason=x` (DESIGN §8 writes the empty form): an empty value means "any".
        if value.is_empty() && name != "limit" {
            continue;
        }
        match name.as_str() {
            "tenant" => filter.tenant = Some(value.clone()),
            "outcome" => filter.outcome = Some(parse_named("parameter outcome", value)?),
            "failure" => filter.failure = Some(parse_named("parameter failure", value)?),
            "reason" => filter.reason = Some(parse_named("parameter reason", value)?),
            "since" => {
                filter.since = Some(
                    DateTime::parse_from_rfc3339(value)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| {
                            format!(
                                "parameter since: {value:?} is not an RFC 3339 time \
                                 (e.g. 2026-03-01T10:00:00Z)"
                            )
                        })?,
                )
            }
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("parameter limit: {value:?} is not a number from 1 to {MAX_LIMIT}")
                    })?
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; valid parameters: {}",
                    DIAGNOSES_PARAMETERS.join(", ")
                ))
            }
        }
    }
    Ok(filter)
}

/// Runs a store read on the blocking pool and maps its failures to a 500 JSON response.
pub(super) async fn read_store<T: Send + 'static>(
    store: Arc<Mutex<Store>>,
    read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let joined = tokio::task::spawn_blocking(move || {
        // A poisoned lock means a writer panicked mid-call; SQLite rolled its transaction back.
        let store = store.lock().unwrap_or_else(|e| e.into_inner());
        read(&store)
    })
    .await;
    match joined {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            // The details (SQLite's text, paths) go to the log only.
            tracing::error!(%error, kind = "store", "API store read failed");
            Err(error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the state file could not be read; the daemon's log has the details".to_owned(),
            ))
        }
        Err(error) => {
            tracing::error!(%error, "store read task failed");
            Err(error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store read task failed".to_owned(),
            ))
        }
    }
}

pub(super) async fn diagnoses(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let filter = match parse_filter(&params) {
        Ok(filter) => filter,
        Err(message) => return bad_request(message),
    };
    let max_bytes = state.limits.max_api_response_bytes;
    match read_store(state.store, move |store| {
        diagnoses_body(store, &filter, max_bytes)
    })
    .await
    {
        Ok(body) => (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response(),
        Err(response) => response,
    }
}

/// `{"diagnoses": [...], "count": n, "truncated": bool}` written row by row, at most `max_bytes`
/// (the newest rows that fit; `truncated` says rows were left out). Memory is one answer and one
/// row, never the rows as a JSON tree.
fn diagnoses_body(
    store: &Store,
    filter: &DiagnosisFilter,
    max_bytes: usize,
) -> Result<Vec<u8>, StoreError> {
    /// Room kept for the closing `],"count":...,"truncated":...}`.
    const TAIL: usize = 64;
    let mut body = Vec::with_capacity(4096.min(max_bytes));
    body.extend_from_slice(b"{\"diagnoses\":[");
    let mut row_json = Vec::new();
    let mut count = 0usize;
    let mut truncated = false;
    store.visit_diagnoses(filter, |row| {
        row_json.clear();
        serde_json::to_writer(&mut row_json, &row).map_err(|source| StoreError::Json {
            what: "diagnosis",
            source,
        })?;
        if body.len() + 1 + row_json.len() + TAIL > max_bytes {
            truncated = true;
            return Ok(false);
        }
        if count > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&row_json);
        count += 1;
        Ok(true)
    })?;
    body.extend_from_slice(format!("],\"count\":{count},\"truncated\":{truncated}}}").as_bytes());
    Ok(body)
}

pub(super) async fn contact(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(contact_id) = id.parse::<i64>() else {
        return bad_request(format!("contact id must be a number, got {id:?}"));
    };
    match read_store(state.store, move |store| store.diagnosis(contact_id)).await {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => error_json(
            StatusCode::NOT_FOUND,
            format!("no diagnosis recorded for contact {contact_id} (unknown, pending or pruned)"),
        ),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::readiness::Readiness;
    use crate::server::test_server::{client, get_json, start, start_limited};
    use crate::server::{serve, ServerLimits};
    use std::time::Duration;

    /// /api/v1/diagnoses lists newest first, filters, and honours limit.
    #[tokio::test]
    async fn diagnoses_api() {
        let server = start().await;
        let ids = |v: &serde_json::Value| -> Vec<i64> {
            v["diagnoses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["diagnosis"]["contact_id"].as_i64().unwrap())
                .collect()
        };
        let (status, all) = get_json(&format!("{}/api/v1/diagnoses", server.base)).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&all), vec![1003, 1002, 1001]);
        assert_eq!(all["count"], 3);
        assert_eq!(all["diagnoses"][0]["tenant"], "acme");
        let (_, failed) = get_json(&format!(
            "{}/api/v1/diagnoses?tenant=acme&outcome=failed&limit=1",
            server.base
        ))
        .await;
        assert_eq!(ids(&failed), vec![1003]);
        let (_, rejected) = get_json(&format!(
            "{}/api/v1/diagnoses?failure=invalid_handover&reason=signal_rejected",
            server.base
        ))
        .await;
        assert_eq!(ids(&rejected), vec![1001]);
        let (status, empty) = get_json(&format!(
            "{}/api/v1/diagnoses?outcome=&failure=&reason=signal_rejected&since=",
            server.base
        ))
        .await;
        assert_eq!(status, 200, "empty parameters mean any value");
        assert_eq!(ids(&empty), vec![1001]);
        let (_, since) = get_json(&format!(
            "{}/api/v1/diagnoses?since=2026-03-01T10:06:00Z",
            server.base
        ))
        .await;
        assert_eq!(ids(&since), vec![1003, 1002]);
    }

    /// Bad parameters are 400 with a message naming the parameter and the valid values.
    #[tokio::test]
    async fn diagnoses_api_rejects_bad_parameters() {
        let server = start().await;
        let (status, body) =
            get_json(&format!("{}/api/v1/diagnoses?outcome=broken", server.base)).await;
        assert_eq!(status, 400);
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("parameter outcome"), "{message}");
        assert!(
            message.contains("contained, handed_over, abandoned, failed, undetermined"),
            "{message}"
        );
        for (query, names) in [
            ("failure=MissingContext", "parameter failure"),
            ("reason=nope", "parameter reason"),
            ("since=yesterday", "parameter since"),
            ("limit=1001", "parameter limit"),
            ("limit=0", "parameter limit"),
            ("limit=ten", "parameter limit"),
            ("colour=red", "unknown parameter \"colour\""),
        ] {
            let (status, body) =
                get_json(&format!("{}/api/v1/diagnoses?{query}", server.base)).await;
            assert_eq!(status, 400, "{query}");
            assert!(
                body["error"].as_str().unwrap().contains(names),
                "{query}: {body}"
            );
        }
    }

    /// /api/v1/contacts/{id} returns the diagnosis with evidence; 404 unknown; 400 non-numeric.
    #[tokio::test]
    async fn contact_api() {
        let server = start().await;
        let (status, body) = get_json(&format!("{}/api/v1/contacts/1001", server.base)).await;
        assert_eq!(status, 200);
        assert_eq!(body["diagnosis"]["reason"], "signal_rejected");
        assert_eq!(body["diagnosis"]["failure"], "invalid_handover");
        assert_eq!(body["diagnosis"]["evidence"]["session_id"], "session-1001");
        assert_eq!(body["diagnosed_at"], "2026-03-01T10:05:00Z");
        let (status, body) = get_json(&format!("{}/api/v1/contacts/424242", server.base)).await;
        assert_eq!(status, 404);
        assert!(body["error"].as_str().unwrap().contains("424242"));
        let (status, body) = get_json(&format!("{}/api/v1/contacts/abc", server.base)).await;
        assert_eq!(status, 400);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("contact id must be a number"));
    }

    /// More concurrent API requests than the cap: the excess is answered 503 at once (never
    /// queued), every answer is within the byte bound, and `limit` above 1000 is refused.
    #[tokio::test]
    async fn concurrent_api_reads_are_bounded() {
        let limits = ServerLimits {
            max_api_requests: 2,
            max_api_response_bytes: 1200,
            ..ServerLimits::default()
        };
        let server = start_limited(None, limits).await;
        let url = format!("{}/api/v1/diagnoses?limit=1000", server.base);
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let url = url.clone();
            requests.spawn(async move {
                let response = client().get(&url).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.bytes().await.unwrap())
            });
        }
        let (mut ok, mut busy, mut truncated) = (0, 0, false);
        while let Some(joined) = requests.join_next().await {
            let (status, body) = joined.unwrap();
            assert!(body.len() <= 1200, "an answer of {} bytes", body.len());
            match status {
                200 => {
                    ok += 1;
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let rows = v["diagnoses"].as_array().unwrap().len();
                    assert_eq!(v["count"], rows);
                    assert!(rows >= 1);
                    assert_eq!(v["truncated"], rows < 3, "{rows} of 3 rows");
                    truncated |= rows < 3;
                }
                503 => busy += 1,
                other => panic!("status {other}"),
            }
        }
        assert!(ok >= 1, "no request was served");
        assert!(truncated, "the byte bound was never reached");
        assert_eq!(ok + busy, 50);
        let (status, _) = get_json(&format!("{}/api/v1/diagnoses?limit=1001", server.base)).await;
        assert_eq!(status, 400);
    }

    /// A repeated query parameter is a 400 naming it, not "the last one wins".
    #[tokio::test]
    async fn repeated_parameters_are_refused() {
        let server = start().await;
        let (status, body) = get_json(&format!(
            "{}/api/v1/diagnoses?limit=1&outcome=failed&limit=2",
            server.base
        ))
        .await;
        assert_eq!(status, 400);
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("parameter limit: given more than once"),
            "{message}"
        );
    }

    /// A store failure is a 500 whose body holds no SQLite text.
    #[tokio::test]
    async fn store_errors_are_not_returned() {
        let store = Store::open(":memory:").unwrap();
        store
            .conn_for_tests()
            .execute_batch("DROP TABLE contacts")
            .unwrap();
        let state = AppState {
            metrics: Arc::new(Metrics::new(&[], "test")),
            store: Arc::new(Mutex::new(store)),
            readiness: Arc::new(Readiness::new(&[], Duration::from_secs(60))),
            telemetry_path: "/metrics".to_owned(),
            web_config: None,
            limits: ServerLimits::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, state, std::future::pending()));
        for path in ["/api/v1/diagnoses", "/api/v1/contacts/1"] {
            let (status, body) = get_json(&format!("{base}{path}")).await;
            assert_eq!(status, 500, "{path}");
            let message = body["error"].as_str().unwrap();
            assert!(
                !message.to_lowercase().contains("no such table"),
                "{message}"
            );
            assert!(!message.contains("contacts"), "{message}");
            assert!(
                message.contains("state file could not be read"),
                "{message}"
            );
        }
    }
}
