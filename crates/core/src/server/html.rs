//! The HTML drill-down routes for people: `/diagnoses` (the API's filter plus `page`) and
//! `/contacts/{id}`. They parse the request, read the store through the API's [`read_store`]
//! (on the blocking pool, under the API's request limit) and hand the rows to [`crate::pages`],
//! which renders them. This module renders no page itself and never writes the store.

use super::api::{parse_filter, read_store};
use super::AppState;
use crate::store::Store;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Rows per page of the `/diagnoses` page, unless `limit` says otherwise.
const PAGE_ROWS: usize = 50;
/// The deepest page the `/diagnoses` page serves (older rows: narrow the filter).
const MAX_PAGE: usize = 200;

fn html_response(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// `/diagnoses`: the API's filter parameters (empty form fields mean "any") plus `page`.
pub(super) async fn diagnoses_html(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let telemetry_path = state.telemetry_path.clone();
    let mut page = 0usize;
    let mut rest = Vec::new();
    for (name, value) in params {
        match (name.as_str(), value.trim()) {
            (_, "") => {}
            ("page", value) => match value.parse::<usize>() {
                Ok(n) if n <= MAX_PAGE && !rest.iter().any(|(n, _): &(String, String)| n == "page") => {
                    page = n;
                    rest.push((name, value.to_owned()));
                }
                _ => {
                    return html_response(
                        StatusCode::BAD_REQUEST,
                        crate::pages::bad_request_page(
                            &format!("parameter page: {value:?} is not a number from 0 to {MAX_PAGE} (or is repeated)"),
                            &telemetry_path,
                        ),
                    )
                }
            },
            (_, value) => rest.push((name, value.to_owned())),
        }
    }
    rest.retain(|(n, _)| n != "page");
    let mut filter = match parse_filter(&rest) {
        Ok(filter) => filter,
        Err(message) => {
            return html_response(
                StatusCode::BAD_REQUEST,
                crate::pages::bad_request_page(&message, &telemetry_path),
            )
        }
    };
    if !rest.iter().any(|(n, _)| n == "limit") {
        filter.limit = PAGE_ROWS;
    }
    let read = move |store: &Store| {
        let counts = store.reason_counts(&filter)?;
        let mut one_more = filter.clone();
        one_more.offset = page * filter.limit;
        one_more.limit = filter.limit + 1;
        let mut rows = store.diagnoses(&one_more)?;
        let has_more = rows.len() > filter.limit;
        rows.truncate(filter.limit);
        Ok((filter, counts, rows, has_more))
    };
    match read_store(state.store, read).await {
        Ok((filter, counts, rows, has_more)) => html_response(
            StatusCode::OK,
            crate::pages::diagnoses_page(&crate::pages::DiagnosesView {
                rows: &rows,
                filter: &filter,
                counts: &counts,
                page,
                has_more,
                telemetry_path: &telemetry_path,
            }),
        ),
        Err(response) => response,
    }
}

/// `/contacts/{id}`: one call's story, or a 404 page.
pub(super) async fn contact_html(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let telemetry_path = state.telemetry_path.clone();
    let Ok(contact_id) = id.parse::<i64>() else {
        return html_response(
            StatusCode::BAD_REQUEST,
            crate::pages::bad_request_page(
                &format!("a contact id is a number, got {id:?}"),
                &telemetry_path,
            ),
        );
    };
    let read = move |store: &Store| {
        let Some(row) = store.diagnosis(contact_id)? else {
            return Ok(None);
        };
        let session = match &row.diagnosis.evidence.session_id {
            Some(session_id) => Some(store.session_records(&row.tenant, session_id)?),
            None => None,
        };
        Ok(Some((row, session)))
    };
    match read_store(state.store, read).await {
        Ok(Some((row, session))) => html_response(
            StatusCode::OK,
            crate::pages::contact_page(&row, session.as_ref(), &telemetry_path),
        ),
        Ok(None) => html_response(
            StatusCode::NOT_FOUND,
            crate::pages::contact_not_found_page(&id, &telemetry_path),
        ),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::diagnosis::Reason;
    use crate::server::test_server::{at, client, diagnosis, start};
    use crate::store::CycleCommit;

    /// The pages for people: the list with counts per reason narrows by filter and pages, a
    /// contact page shows its deciding rule and timeline with outside text escaped, an unknown
    /// contact is a 404 page and a bad parameter a 400 page.
    #[tokio::test]
    async fn html_pages() {
        let server = start().await;
        {
            let mut d = diagnosis(1004, Reason::SignalUnavailable);
            d.evidence.timeline.push(crate::engine::diagnosis::Fact {
                source: crate::engine::diagnosis::FactSource::CognigyLog,
                id: "log-1".into(),
                at: Some(at(1)),
                detail: "handoverToCXone: <script>alert(1)</script>"
                    .to_owned()
                    .into(),
            });
            d.evidence.decided_by = vec![d.evidence.timeline[0].clone()];
            let store = server.store.clone();
            let one = [d];
            store
                .lock()
                .unwrap()
                .commit_cycle(
                    "acme",
                    CycleCommit {
                        diagnoses: &one,
                        ..CycleCommit::empty(at(8))
                    },
                )
                .unwrap();
        }
        let get = |path: &str| {
            let url = format!("{}{path}", server.base);
            async move {
                let r = client().get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        let (status, list) = get("/diagnoses").await;
        assert_eq!(status, 200);
        for id in [1001, 1002, 1003, 1004] {
            assert!(
                list.contains(&format!("href=\"/contacts/{id}\"")),
                "{id} in {list}"
            );
        }
        assert!(list.contains(">signal_rejected</a></td><td class=\"failed\">failed</td><td>invalid_handover</td><td>1</td>"), "{list}");
        let (_, failed) = get("/diagnoses?outcome=failed&failure=&reason=&since=&tenant=").await;
        assert!(!failed.contains("href=\"/contacts/1002\""), "{failed}");
        assert!(failed.contains("href=\"/contacts/1003\""), "{failed}");
        let (_, first) = get("/diagnoses?limit=2").await;
        assert!(
            first.contains("page=1\">Older</a>") && !first.contains(">Newer<"),
            "{first}"
        );
        let (_, second) = get("/diagnoses?limit=2&page=1").await;
        assert!(
            second.contains("href=\"/contacts/1002\"") && second.contains(">Newer<"),
            "{second}"
        );
        let (status, contact) = get("/contacts/1004").await;
        assert_eq!(status, 200);
        assert!(
            contact.contains("Rule 5 of the diagnosis table"),
            "{contact}"
        );
        assert!(
            contact.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{contact}"
        );
        assert!(!contact.contains("<script>"), "{contact}");
        assert!(contact.contains("(decided the outcome)"), "{contact}");
        let (status, missing) = get("/contacts/999").await;
        assert_eq!(status, 404);
        assert!(
            missing.contains("No diagnosis for contact 999"),
            "{missing}"
        );
        let (status, bad) = get("/diagnoses?outcome=maybe").await;
        assert_eq!(status, 400);
        assert!(bad.contains("parameter outcome"), "{bad}");
        let (status, _) = get("/diagnoses?page=1&page=2").await;
        assert_eq!(status, 400);
    }
}
