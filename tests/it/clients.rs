//! Integration tests of the shared HTTP layer and the CXone and Cognigy clients against real
//! loopback HTTP servers (wiremock, plus one closed port): auth, paging, retries, `Retry-After`,
//! timeouts, decode errors, keyset ties, log envelopes, and the request accounting.

use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use handover_exporter::config::{
    ClientAuth, CognigyConfig, CxoneConfig, DateLiteral, HttpSettings,
};
use handover_exporter::sources::cognigy::CognigyClient;
use handover_exporter::sources::cxone::CxoneClient;
use handover_exporter::sources::http::{
    CodeClass, Endpoint, RequestObserver, RetryCause, Source, SourceError,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The clause every OData read carries (the test project of `cognigy_config`).
const PROJECT_CLAUSE: &str = " and projectId eq '6601a2b3c4d5e6f708192a3b'";
const API_KEY: &str = "cognigy-api-key-SECRET-123";
const ACCESS_KEY_SECRET: &str = "access-key-SECRET-456";
const CLIENT_SECRET: &str = "client-SECRET-789";
const ACCESS_TOKEN: &str = "access-token-SECRET-abc";

/// Records every attempt and retry the layer reports.
#[derive(Default)]
struct CountingObserver {
    requests: Mutex<Vec<(Endpoint, CodeClass)>>,
    retries: Mutex<Vec<(Source, RetryCause)>>,
}

impl RequestObserver for CountingObserver {
    fn observe_request(&self, endpoint: Endpoint, code: CodeClass, _elapsed: Duration) {
        self.requests.lock().unwrap().push((endpoint, code));
    }
    fn observe_retry(&self, source: Source, cause: RetryCause) {
        self.retries.lock().unwrap().push((source, cause));
    }
}

impl CountingObserver {
    fn count(&self, endpoint: Endpoint, code: CodeClass) -> usize {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(e, c)| *e == endpoint && *c == code)
            .count()
    }
    fn attempts(&self, endpoint: Endpoint) -> usize {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|(e, _)| *e == endpoint).count()
    }
    fn retries(&self, cause: RetryCause) -> usize {
        let retries = self.retries.lock().unwrap();
        retries.iter().filter(|(_, c)| *c == cause).count()
    }
}

fn fast_http() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_secs(2),
        max_retries: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        requests_per_second: None,
        quota_requests: 100_000,
        quota_window: Duration::from_secs(1),
        max_concurrency: 4,
        http1_only: true,
    }
}

fn cxone_config(server: &MockServer, api_endpoint: Option<String>) -> CxoneConfig {
    CxoneConfig {
        issuer: server.uri(),
        client_id: "client-1".into(),
        client_secret: SecretString::from(CLIENT_SECRET),
        access_key_id: "AKID1".into(),
        access_key_secret: SecretString::from(ACCESS_KEY_SECRET),
        client_auth: ClientAuth::Basic,
        api_version: "v30.0".into(),
        api_endpoint,
        page_size: 100,
        max_pages: 10,
        http: fast_http(),
    }
}

fn cognigy_config(server: &MockServer) -> CognigyConfig {
    CognigyConfig {
        api_base_url: server.uri(),
        odata_base_url: format!("{}/v2.4", server.uri()),
        api_key: SecretString::from(API_KEY),
        project_id: "6601a2b3c4d5e6f708192a3b".into(),
        odata_page_size: 100,
        logs_page_size: 100,
        logs_filter: Vec::new(),
        max_pages: 10,
        date_literal: DateLiteral::Quoted,
        end_of_keyset_500: true,
        // The `$select` tests turn it on; the others read whole records as the mocks answer them.
        odata_select: false,
        late_window: Duration::from_secs(2700),
        late_sweep_interval: Duration::from_secs(900),
        http: fast_http(),
    }
}

fn id_token(issuer: &str) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.signature",
        b64(&json!({"alg": "RS256", "typ": "JWT"})),
        b64(&json!({"iss": issuer, "tenantId": "tenant-uuid-1", "icBUId": 4600000}))
    )
}

/// Mounts OIDC discovery, the token endpoint and `cxone-configuration` (API host = the server).
async fn mount_cxone_auth(server: &MockServer, expires_in: i64) {
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": server.uri(),
            "token_endpoint": format!("{}/auth/token", server.uri()),
            "jwks_uri": format!("{}/.well-known/jwks", server.uri()),
        })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": ACCESS_TOKEN,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "id_token": id_token(&server.uri()),
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/cxone-configuration"))
        .and(query_param("tenantId", "tenant-uuid-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "api_endpoint": server.uri(),
            "area": "na1",
        })))
        .mount(server)
        .await;
}

const CONTACTS_PATH: &str = "/inContactAPI/services/v30.0/contacts/completed";

fn contact_json(id: i64, minute: u32) -> Value {
    json!({
        "contactId": id,
        "masterContactId": id,
        "contactStartDate": format!("2026-03-20T09:{minute:02}:00.000Z"),
        "lastUpdateTime": format!("2026-03-20T09:{minute:02}:30.000Z"),
        "mediaTypeId": 4,
        "fromAddress": "+15551230000",
        "pointOfContactId": 3189288,
        "skillId": 4001,
        "agentId": 0,
        "totalDurationSeconds": 60,
    })
}

/// A last page holding `ids` of a read of the ids from 1 on (`totalRecords` counts them all, as
/// CXone does; `_links.next` is null).
fn contacts_page(ids: std::ops::Range<i64>) -> Value {
    contacts_page_of(ids.clone(), ids.end - 1)
}

/// A page holding `ids` of a read of `total` contacts.
fn contacts_page_of(ids: std::ops::Range<i64>, total: i64) -> Value {
    json!({
        "_links": {"self": "x", "next": null, "previous": null},
        "businessUnitId": 4600000,
        "lastPollTime": "2026-03-20T10:00:00.000Z",
        "totalRecords": total,
        "completedContacts": ids.map(|i| contact_json(i, (i % 60) as u32)).collect::<Vec<_>>(),
    })
}

async fn requests_to(server: &MockServer, wanted_path: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == wanted_path)
        .collect()
}

fn since() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 20, 9, 0, 0).unwrap()
}

fn observer() -> Arc<CountingObserver> {
    Arc::new(CountingObserver::default())
}

// ---------------------------------------------------------------------------------------------
// CXone
// ---------------------------------------------------------------------------------------------

/// Discovery, Basic-auth grant, host discovery and one contacts page send every documented parameter.
#[tokio::test]
async fn cxone_completed_contacts_happy_path() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("client-1:{CLIENT_SECRET}"));
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .and(query_param("updatedSince", "2026-03-20T09:00:00.000Z"))
        .and(query_param("orderBy", "lastUpdateTime asc"))
        .and(query_param("mediaTypeId", "4"))
        .and(query_param("top", "100"))
        .and(query_param("skip", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(1..4)))
        .expect(1)
        .mount(&server)
        .await;
    let obs = observer();
    let client = CxoneClient::new(&cxone_config(&server, None), obs.clone()).unwrap();
    let batch = client.completed_contacts(since(), 10).await.unwrap();
    assert_eq!(batch.contacts.len(), 3);
    assert_eq!(batch.pages, 1);
    assert!(!batch.truncated);
    assert_eq!(
        batch.last_poll_time,
        Some(Utc.with_ymd_and_hms(2026, 3, 20, 10, 0, 0).unwrap())
    );
    let token_requests = requests_to(&server, "/auth/token").await;
    assert_eq!(token_requests.len(), 1);
    let body = String::from_utf8(token_requests[0].body.clone()).unwrap();
    assert!(body.contains("grant_type=password"), "{body}");
    assert!(body.contains("username=AKID1"), "{body}");
    assert!(!body.contains("client_secret"), "{body}");
    assert_eq!(
        token_requests[0].headers.get("authorization").unwrap(),
        format!("Basic {basic}").as_str()
    );
    assert_eq!(
        obs.count(Endpoint::CxoneOpenidConfiguration, CodeClass::Success),
        1
    );
    assert_eq!(obs.count(Endpoint::CxoneToken, CodeClass::Success), 1);
    assert_eq!(
        obs.count(Endpoint::CxoneConfiguration, CodeClass::Success),
        1
    );
    assert_eq!(
        obs.count(Endpoint::CxoneContactsCompleted, CodeClass::Success),
        1
    );
}

/// `ClientAuth::Form` puts client credentials in the form; a configured `api_endpoint` skips discovery.
#[tokio::test]
async fn cxone_form_client_auth_and_configured_api_endpoint() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let mut config = cxone_config(&server, Some(format!("{}/", server.uri())));
    config.client_auth = ClientAuth::Form;
    let client = CxoneClient::new(&config, observer()).unwrap();
    client.completed_contacts(since(), 1).await.unwrap();
    let token_requests = requests_to(&server, "/auth/token").await;
    let body = String::from_utf8(token_requests[0].body.clone()).unwrap();
    assert!(body.contains("client_id=client-1"), "{body}");
    assert!(body.contains("client_secret=client-SECRET-789"), "{body}");
    assert!(token_requests[0].headers.get("authorization").is_none());
    assert!(requests_to(&server, "/.well-known/cxone-configuration")
        .await
        .is_empty());
}

/// HTTP 204 with no body is an empty result, one page, not an error.
#[tokio::test]
async fn cxone_204_is_empty() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let obs = observer();
    let client = CxoneClient::new(&cxone_config(&server, None), obs.clone()).unwrap();
    let batch = client.completed_contacts(since(), 10).await.unwrap();
    assert!(batch.contacts.is_empty());
    assert_eq!(batch.pages, 1);
    assert!(!batch.truncated);
    assert_eq!(
        obs.count(Endpoint::CxoneContactsCompleted, CodeClass::NoContent),
        1
    );
}

/// Pages of `top` continue with `skip` until `totalRecords` is read (3 requests for 2+2+1).
#[tokio::test]
async fn cxone_paging_across_pages() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    for (skip, ids) in [("0", 1..3), ("2", 3..5), ("4", 5..6)] {
        Mock::given(method("GET"))
            .and(path(CONTACTS_PATH))
            .and(query_param("skip", skip))
            .and(query_param("top", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page_of(ids, 5)))
            .mount(&server)
            .await;
    }
    let mut config = cxone_config(&server, None);
    config.page_size = 2;
    let client = CxoneClient::new(&config, observer()).unwrap();
    let batch = client.completed_contacts(since(), 10).await.unwrap();
    let ids: Vec<i64> = batch.contacts.iter().map(|c| c.contact_id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(batch.pages, 3);
    assert!(!batch.truncated);
    assert_eq!(requests_to(&server, CONTACTS_PATH).await.len(), 3);
}

/// `max_pages` stops a read of full pages and marks the batch truncated.
#[tokio::test]
async fn cxone_max_pages_truncates() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    for (skip, ids) in [("0", 1..3), ("2", 3..5)] {
        Mock::given(method("GET"))
            .and(path(CONTACTS_PATH))
            .and(query_param("skip", skip))
            .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page_of(ids, 9)))
            .mount(&server)
            .await;
    }
    let mut config = cxone_config(&server, None);
    config.page_size = 2;
    let client = CxoneClient::new(&config, observer()).unwrap();
    let batch = client.completed_contacts(since(), 2).await.unwrap();
    assert_eq!(batch.contacts.len(), 4);
    assert!(batch.truncated);
    assert_eq!(requests_to(&server, CONTACTS_PATH).await.len(), 2);
}

/// A server that caps `top` below what was asked: a short page whose `totalRecords` says more
/// does not end the read; the read continues at the contacts received and ends at the total.
#[tokio::test]
async fn cxone_short_page_with_more_records_continues() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    for (skip, ids) in [("0", 1..5), ("4", 5..9), ("8", 9..11)] {
        Mock::given(method("GET"))
            .and(path(CONTACTS_PATH))
            .and(query_param("skip", skip))
            .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page_of(ids, 10)))
            .mount(&server)
            .await;
    }
    let mut config = cxone_config(&server, None);
    config.page_size = 10;
    let client = CxoneClient::new(&config, observer()).unwrap();
    let batch = client.completed_contacts(since(), 10).await.unwrap();
    let ids: Vec<i64> = batch.contacts.iter().map(|c| c.contact_id).collect();
    assert_eq!(ids, (1..11).collect::<Vec<_>>());
    assert_eq!(batch.pages, 3);
    assert!(!batch.truncated);
}

/// Without `totalRecords`, a `_links.next` link on a short page continues the read; the page
/// without one ends it.
#[tokio::test]
async fn cxone_next_link_continues_a_short_page() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    let page = |ids: std::ops::Range<i64>, next: Option<&str>| {
        json!({
            "_links": {"self": "x", "next": next, "previous": null},
            "lastPollTime": "2026-03-20T10:00:00.000Z",
            "completedContacts": ids.map(|i| contact_json(i, (i % 60) as u32)).collect::<Vec<_>>(),
        })
    };
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .and(query_param("skip", "0"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(page(1..4, Some("https://x/next?skip=3"))),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .and(query_param("skip", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(4..6, None)))
        .mount(&server)
        .await;
    let mut config = cxone_config(&server, None);
    config.page_size = 100;
    let client = CxoneClient::new(&config, observer()).unwrap();
    let batch = client.completed_contacts(since(), 10).await.unwrap();
    assert_eq!(batch.contacts.len(), 5);
    assert_eq!(requests_to(&server, CONTACTS_PATH).await.len(), 2);
}

/// A full page whose `totalRecords` is reached ends the read without asking for an empty page.
#[tokio::test]
async fn cxone_total_reached_ends_on_a_full_page() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page_of(1..3, 2)))
        .mount(&server)
        .await;
    let mut config = cxone_config(&server, None);
    config.page_size = 2;
    let client = CxoneClient::new(&config, observer()).unwrap();
    let batch = client.completed_contacts(since(), 10).await.unwrap();
    assert_eq!(batch.contacts.len(), 2);
    assert_eq!(requests_to(&server, CONTACTS_PATH).await.len(), 1);
}

/// Numbers written with thousands separators (`"1,234"`) parse, in the envelope and in the
/// contacts; a decimal comma is refused as a decode error naming the value.
#[tokio::test]
async fn cxone_thousands_separators_parse() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    let mut contact = contact_json(1, 1);
    contact["totalDurationSeconds"] = json!("1,234");
    contact["inQueueSeconds"] = json!("2,345.5");
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .and(query_param("skip", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalRecords": "1,001",
            "lastPollTime": "2026-03-20T10:00:00.000Z",
            "completedContacts": [contact],
        })))
        .mount(&server)
        .await;
    let mut bad = contact_json(2, 2);
    bad["totalDurationSeconds"] = json!("1,5");
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .and(query_param("skip", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalRecords": "1,001",
            "completedContacts": [bad],
        })))
        .mount(&server)
        .await;
    let client = CxoneClient::new(&cxone_config(&server, None), observer()).unwrap();
    let page = client.completed_page(since(), 0).await.unwrap();
    assert!(page.more, "1 of 1,001 read");
    let c = &page.contacts[0];
    assert_eq!(c.total_duration_seconds, 1234.0);
    assert_eq!(c.in_queue_seconds, 2345.5);
    let error = client.completed_page(since(), 1).await.unwrap_err();
    assert_eq!(error.kind(), "decode");
    assert!(error.to_string().contains("1,5"), "{error}");
}

/// Old-generation field names, numbers and booleans as strings, and the `resultSet` wrapper.
#[tokio::test]
async fn cxone_old_generation_fields_and_string_numbers() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    let body = json!({"resultSet": {
        "lastPollTime": "2026-03-20T10:00:00.000Z",
        "totalRecords": "1",
        "completedContacts": [{
            "contactId": "712345678901",
            "masterContactId": "712345678900",
            "contactStart": "2026-03-20T09:01:00.000Z",
            "lastUpdateTime": "2026-03-20T09:05:00.000Z",
            "mediaType": "4",
            "fromAddr": "5551230000",
            "toAddr": "5559870000",
            "pointOfContactId": "3189288",
            "skillId": "4001",
            "agentId": "0",
            "abandoned": "True",
            "abandonSeconds": "41",
            "preQueueSeconds": "3.5",
            "inQueueSeconds": "41",
            "totalDurationSeconds": "251"
        }]
    }});
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let client = CxoneClient::new(&cxone_config(&server, None), observer()).unwrap();
    let batch = client.completed_contacts(since(), 1).await.unwrap();
    let c = &batch.contacts[0];
    assert_eq!(c.contact_id, 712345678901);
    assert_eq!(c.master_contact_id, 712345678900);
    assert_eq!(c.media_type_id, Some(4));
    assert_eq!(c.from_address, "5551230000");
    assert!(c.abandoned);
    assert_eq!(c.pre_queue_seconds, 3.5);
    assert_eq!(c.total_duration_seconds, 251.0);
}

/// A token is reused while fresh and requested again once 80 % of a short `expires_in` passed.
#[tokio::test]
async fn cxone_token_is_cached_and_refreshed() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let client = CxoneClient::new(&cxone_config(&server, None), observer()).unwrap();
    client.completed_contacts(since(), 1).await.unwrap();
    client.completed_contacts(since(), 1).await.unwrap();
    assert_eq!(requests_to(&server, "/auth/token").await.len(), 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    client.completed_contacts(since(), 1).await.unwrap();
    assert_eq!(requests_to(&server, "/auth/token").await.len(), 2);
    // Discovery is not repeated on refresh.
    assert_eq!(
        requests_to(&server, "/.well-known/openid-configuration")
            .await
            .len(),
        1
    );
}

/// A 401 on an API call makes exactly one re-authentication and one retry of the call.
#[tokio::test]
async fn cxone_401_reauthenticates_once() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(1..2)))
        .mount(&server)
        .await;
    let obs = observer();
    let client = CxoneClient::new(&cxone_config(&server, None), obs.clone()).unwrap();
    let batch = client.completed_contacts(since(), 1).await.unwrap();
    assert_eq!(batch.contacts.len(), 1);
    assert_eq!(requests_to(&server, "/auth/token").await.len(), 2);
    assert_eq!(requests_to(&server, CONTACTS_PATH).await.len(), 2);
    assert_eq!(
        obs.count(Endpoint::CxoneContactsCompleted, CodeClass::Unauthorized),
        1
    );
    assert_eq!(obs.retries(RetryCause::Reauthenticate), 1);
}

/// A 401 that persists after re-authenticating is a typed auth error after exactly two tries.
#[tokio::test]
async fn cxone_persistent_401_is_auth_error() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let client = CxoneClient::new(&cxone_config(&server, None), observer()).unwrap();
    let err = client.completed_contacts(since(), 1).await.unwrap_err();
    assert_eq!(err.kind(), "auth");
    assert_eq!(requests_to(&server, "/auth/token").await.len(), 2);
    assert_eq!(requests_to(&server, CONTACTS_PATH).await.len(), 2);
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(ACCESS_TOKEN) && !text.contains(ACCESS_KEY_SECRET),
        "{text}"
    );
}

/// Bad credentials at the token endpoint are a typed auth error naming the token endpoint.
#[tokio::test]
async fn cxone_token_rejected_is_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"token_endpoint": format!("{}/auth/token", server.uri())})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let client = CxoneClient::new(&cxone_config(&server, None), observer()).unwrap();
    let err = client.completed_contacts(since(), 1).await.unwrap_err();
    assert_eq!(err.kind(), "auth");
    assert_eq!(err.endpoint(), Endpoint::CxoneToken);
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(CLIENT_SECRET) && !text.contains(ACCESS_KEY_SECRET),
        "{text}"
    );
}

/// The token POST has no side effects, so a 5xx from it is retried like a GET.
#[tokio::test]
async fn cxone_token_post_is_retried_on_5xx() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let obs = observer();
    let client = CxoneClient::new(&cxone_config(&server, None), obs.clone()).unwrap();
    client.completed_contacts(since(), 1).await.unwrap();
    assert_eq!(requests_to(&server, "/auth/token").await.len(), 2);
    assert_eq!(obs.count(Endpoint::CxoneToken, CodeClass::ServerError), 1);
    assert_eq!(obs.retries(RetryCause::ServerError), 1);
}

/// `GET /contacts/{id}` unwraps the `contactId` envelope; 404 and 204 mean "no such contact".
#[tokio::test]
async fn cxone_single_contact_envelope_404_and_204() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    let base = "/inContactAPI/services/v30.0/contacts";
    Mock::given(method("GET"))
        .and(path(format!("{base}/11")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "businessUnitId": 4600000,
            "lastPollTime": "2026-03-20T10:00:00.000Z",
            "contactId": contact_json(11, 3),
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{base}/12")))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{base}/13")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let obs = observer();
    let client = CxoneClient::new(&cxone_config(&server, None), obs.clone()).unwrap();
    assert_eq!(client.contact(11).await.unwrap().unwrap().contact_id, 11);
    assert!(client.contact(12).await.unwrap().is_none());
    assert!(client.contact(13).await.unwrap().is_none());
    assert_eq!(obs.count(Endpoint::CxoneContact, CodeClass::NotFound), 1);
    // A 404 is final: not retried.
    assert_eq!(requests_to(&server, &format!("{base}/12")).await.len(), 1);
}

/// State history falls back to `/statehistory` when `/state-history` is 404.
#[tokio::test]
async fn cxone_state_history_falls_back() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    let base = "/inContactAPI/services/v30.0/contacts/21";
    Mock::given(method("GET"))
        .and(path(format!("{base}/state-history")))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{base}/statehistory")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"contactStateHistory": [
            {"stateIndex": 1, "contactId": "21", "contactStateId": 1, "contactStateName": "PreQueue",
             "startDate": "2026-03-20T09:00:00.000Z", "agentId": 0, "skillId": 4001, "duration": "PT3S"},
            {"stateIndex": "2", "contactId": "21", "contactStateName": "Released"}
        ]})))
        .mount(&server)
        .await;
    let client = CxoneClient::new(&cxone_config(&server, None), observer()).unwrap();
    let history = client.state_history(21).await.unwrap();
    assert_eq!(history.contact_state_history.len(), 2);
    assert_eq!(history.contact_state_history[1].state_index, Some(2));
}

/// A 4xx error names the endpoint, the status and CXone's `icStatusDescription`, and is final.
#[tokio::test]
async fn cxone_4xx_names_ic_status_description() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(
            ResponseTemplate::new(400).insert_header("icStatusDescription", "Invalid updatedSince"),
        )
        .mount(&server)
        .await;
    let client = CxoneClient::new(&cxone_config(&server, None), observer()).unwrap();
    let err = client.completed_contacts(since(), 1).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), "http_status");
    assert!(text.contains("contacts_completed"), "{text}");
    assert!(text.contains("HTTP 400"), "{text}");
    assert!(text.contains("Invalid updatedSince"), "{text}");
    assert_eq!(requests_to(&server, CONTACTS_PATH).await.len(), 1);
}

/// A truncated JSON page is a typed decode error naming the endpoint, never a partial batch.
#[tokio::test]
async fn cxone_malformed_page_is_decode_error() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .and(query_param("skip", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page_of(1..3, 4)))
        .mount(&server)
        .await;
    let full = contacts_page(3..5).to_string();
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .and(query_param("skip", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(full[..full.len() / 2].to_owned(), "application/json"),
        )
        .mount(&server)
        .await;
    let mut config = cxone_config(&server, None);
    config.page_size = 2;
    let client = CxoneClient::new(&config, observer()).unwrap();
    let err = client.completed_contacts(since(), 5).await.unwrap_err();
    assert!(matches!(err, SourceError::Decode { .. }), "{err:?}");
    assert_eq!(err.kind(), "decode");
    assert!(err.to_string().contains("contacts_completed"), "{err}");
    assert!(err.to_string().contains("EOF"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The shared layer (exercised through the Cognigy client, which needs no auth)
// ---------------------------------------------------------------------------------------------

fn session_json(id: &str, started_at: &str) -> Value {
    json!({
        "id": id,
        "sessionId": format!("session-{id}"),
        "startedAt": started_at,
        "userId": "+4930123456789",
        "handoverEscalations": 0,
        "projectId": "6601a2b3c4d5e6f708192a3b",
        "endpointName": "VG Inbound",
    })
}

fn odata(values: Vec<Value>) -> Value {
    json!({"@odata.context": "x", "value": values})
}

const SESSIONS_PATH: &str = "/v2.4/Sessions";

/// Answers every GET of `sessions_path` with one session, `a`.
async fn mount_one_session(server: &MockServer, sessions_path: &str) {
    Mock::given(method("GET"))
        .and(path(sessions_path))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(odata(vec![session_json("a", "2026-03-20T09:01:00.000Z")])),
        )
        .mount(server)
        .await;
}

/// `Retry-After: 1` (delta-seconds) on a 429 makes the layer wait about a second, then succeed.
#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(odata(vec![])))
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.http.max_backoff = Duration::from_secs(3);
    let obs = observer();
    let client = CognigyClient::new(&config, obs.clone()).unwrap();
    let started = Instant::now();
    client.sessions_since(since(), 1).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
    assert_eq!(obs.attempts(Endpoint::CognigySessions), 2);
    assert_eq!(
        obs.count(Endpoint::CognigySessions, CodeClass::TooManyRequests),
        1
    );
    assert_eq!(obs.retries(RetryCause::RateLimited), 1);
}

/// `Retry-After` as an HTTP-date two seconds ahead makes the layer wait until about then.
#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    let server = MockServer::start().await;
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", date.as_str()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(odata(vec![])))
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.http.max_backoff = Duration::from_secs(5);
    let obs = observer();
    let client = CognigyClient::new(&config, obs.clone()).unwrap();
    let started = Instant::now();
    client.sessions_since(since(), 1).await.unwrap();
    let waited = started.elapsed();
    // The date has one-second resolution: the wait is between one and two seconds.
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_millis(3500), "{waited:?}");
    assert_eq!(obs.attempts(Endpoint::CognigySessions), 2);
}

/// A huge `Retry-After` is capped at `max_backoff`.
#[tokio::test]
async fn retry_after_is_capped_at_max_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(odata(vec![])))
        .mount(&server)
        .await;
    let client = CognigyClient::new(&cognigy_config(&server), observer()).unwrap();
    let started = Instant::now();
    client.sessions_since(since(), 1).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A 429 without `Retry-After` is retried with backoff `max_retries` times, then is an error.
#[tokio::test]
async fn rate_limited_without_retry_after_exhausts_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(429))
        .mount(&server)
        .await;
    let obs = observer();
    let client = CognigyClient::new(&cognigy_config(&server), obs.clone()).unwrap();
    let started = Instant::now();
    let err = client.sessions_since(since(), 1).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert_eq!(
        obs.count(Endpoint::CognigySessions, CodeClass::TooManyRequests),
        4
    );
    assert_eq!(obs.retries(RetryCause::RateLimited), 3);
    // Backoff 10 ms doubling (with jitter, capped at 100 ms): well under a second in total.
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A burst of 5xx is retried and the eventual success is returned.
#[tokio::test]
async fn server_error_burst_then_success() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_one_session(&server, SESSIONS_PATH).await;
    let obs = observer();
    let client = CognigyClient::new(&cognigy_config(&server), obs.clone()).unwrap();
    let batch = client.sessions_since(since(), 1).await.unwrap();
    assert_eq!(batch.records.len(), 1);
    assert_eq!(
        obs.count(Endpoint::CognigySessions, CodeClass::ServerError),
        2
    );
    assert_eq!(obs.count(Endpoint::CognigySessions, CodeClass::Success), 1);
    assert_eq!(obs.retries(RetryCause::ServerError), 2);
}

/// An answer slower than the timeout is retried, then reported as a typed timeout error.
#[tokio::test]
async fn slow_answer_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(odata(vec![]))
                .set_delay(Duration::from_millis(800)),
        )
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.http.timeout = Duration::from_millis(150);
    config.http.max_retries = 1;
    let obs = observer();
    let client = CognigyClient::new(&config, obs.clone()).unwrap();
    let err = client.sessions_since(since(), 1).await.unwrap_err();
    assert!(matches!(err, SourceError::Timeout { .. }), "{err:?}");
    assert_eq!(err.kind(), "timeout");
    assert_eq!(obs.count(Endpoint::CognigySessions, CodeClass::Timeout), 2);
    assert_eq!(obs.retries(RetryCause::Timeout), 1);
    assert!(!format!("{err} {err:?}").contains(API_KEY));
}

/// A refused connection is retried, then a typed connect error without the API key in it.
#[tokio::test]
async fn refused_connection_is_connect_error() {
    let server = MockServer::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut config = cognigy_config(&server);
    config.odata_base_url = format!("http://{closed}/v2.4");
    let obs = observer();
    let client = CognigyClient::new(&config, obs.clone()).unwrap();
    let err = client.sessions_since(since(), 1).await.unwrap_err();
    assert_eq!(err.kind(), "connect", "{err:?}");
    assert_eq!(obs.count(Endpoint::CognigySessions, CodeClass::Error), 4);
    assert_eq!(obs.retries(RetryCause::Connect), 3);
    let text = format!("{err} {err:?}");
    assert!(!text.contains(API_KEY), "{text}");
    assert!(text.contains("apikey=[redacted]"), "{text}");
}

/// The rate limit spaces requests: 8 requests at 4 per second take at least about a second.
#[tokio::test]
async fn rate_limit_spaces_requests() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(odata(vec![])))
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.http.requests_per_second = Some(4.0);
    let client = CognigyClient::new(&config, observer()).unwrap();
    let started = Instant::now();
    for _ in 0..8 {
        client.sessions_since(since(), 1).await.unwrap();
    }
    // A burst of 4, then one every 250 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

/// The concurrency bound serialises requests: 3 concurrent 200 ms answers take 600 ms with 1 slot.
#[tokio::test]
async fn concurrency_is_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(odata(vec![]))
                .set_delay(Duration::from_millis(200)),
        )
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.http.max_concurrency = 1;
    let client = CognigyClient::new(&config, observer()).unwrap();
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        client.sessions_since(since(), 1),
        client.sessions_since(since(), 1),
        client.sessions_since(since(), 1)
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(590),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Cognigy
// ---------------------------------------------------------------------------------------------

/// Sessions are read with literal `$` names, quoted UTC millis, `apikey`, and both `id` and `_id`.
#[tokio::test]
async fn cognigy_sessions_query_is_literal() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .and(query_param("apikey", API_KEY))
        .and(query_param(
            "$filter",
            format!("startedAt gt '2026-03-20T09:00:00.000Z'{PROJECT_CLAUSE}").as_str(),
        ))
        .and(query_param("$orderby", "startedAt asc"))
        .and(query_param("$top", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(odata(vec![
            session_json("a", "2026-03-20T09:01:00.000Z"),
            json!({"_id": "b", "sessionId": "session-b", "startedAt": "2026-03-20T09:02:00.000Z",
                   "handoverEscalations": "2"}),
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let obs = observer();
    let client = CognigyClient::new(&cognigy_config(&server), obs.clone()).unwrap();
    let batch = client.sessions_since(since(), 5).await.unwrap();
    assert_eq!(batch.records.len(), 2);
    assert_eq!(batch.records[1].id.as_deref(), Some("b"));
    assert_eq!(batch.records[1].handover_escalations, 2);
    assert_eq!(
        batch.newest,
        Some(Utc.with_ymd_and_hms(2026, 3, 20, 9, 2, 0).unwrap())
    );
    let raw = requests_to(&server, SESSIONS_PATH).await[0]
        .url
        .query()
        .unwrap()
        .to_owned();
    assert!(raw.contains("$top=100"), "{raw}");
    assert!(raw.contains("$filter="), "{raw}");
    assert!(!raw.contains("%24"), "{raw}");
    assert_eq!(obs.count(Endpoint::CognigySessions, CodeClass::Success), 1);
}

/// `DateLiteral::Bare` writes the timestamp unquoted.
#[tokio::test]
async fn cognigy_bare_date_literal() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2.4/Conversations"))
        .and(query_param(
            "$filter",
            format!("timestamp gt 2026-03-20T09:00:00.000Z{PROJECT_CLAUSE}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(odata(vec![])))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.date_literal = DateLiteral::Bare;
    let client = CognigyClient::new(&config, observer()).unwrap();
    let batch = client.conversations_since(since(), 1).await.unwrap();
    assert!(batch.records.is_empty());
    assert_eq!(batch.newest, None);
}

/// The `$select` parameter of a request, if any.
fn select_param(request: &Request) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| v.into_owned())
}

/// For each request the server got on `wanted_path`, in order: whether it carried `$select`.
async fn selects_sent(server: &MockServer, wanted_path: &str) -> Vec<bool> {
    requests_to(server, wanted_path)
        .await
        .iter()
        .map(|r| select_param(r).is_some())
        .collect()
}

/// The Cognigy config of the mocks, with `$select` on.
fn selecting_config(server: &MockServer) -> CognigyConfig {
    CognigyConfig {
        odata_select: true,
        ..cognigy_config(server)
    }
}

/// With `odata_select`, pages ask only for the fields the wire types read, with the id named as
/// the OData version in the base URL names it (`id` in v2.4, `_id` in v2.3).
#[tokio::test]
async fn cognigy_select_asks_only_for_read_fields() {
    for (version, id) in [("v2.4", "id"), ("v2.3", "_id")] {
        let server = MockServer::start().await;
        mount_one_session(&server, &format!("/{version}/Sessions")).await;
        let mut config = selecting_config(&server);
        config.odata_base_url = format!("{}/{version}", server.uri());
        let client = CognigyClient::new(&config, observer()).unwrap();
        for _ in 0..2 {
            let batch = client.sessions_since(since(), 5).await.unwrap();
            assert_eq!(batch.records.len(), 1);
        }
        let requests = requests_to(&server, &format!("/{version}/Sessions")).await;
        assert_eq!(requests.len(), 2);
        for request in &requests {
            assert_eq!(
                select_param(request).as_deref(),
                Some(
                    format!("{id},sessionId,startedAt,userId,handoverEscalations,projectId,endpointName")
                        .as_str()
                )
            );
        }
    }
}

/// A server that rejects `$select` (HTTP 400) is asked again without it, and never with it again.
#[tokio::test]
async fn cognigy_select_rejected_falls_back_to_whole_records() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2.4/Conversations"))
        .respond_with(|request: &Request| match select_param(request) {
            Some(_) => ResponseTemplate::new(400).set_body_json(
                json!({"error": {"code": "400", "message": "Could not find a property named 'channel'"}}),
            ),
            None => ResponseTemplate::new(200).set_body_json(odata(vec![json!({
                "id": "c1", "sessionId": "s1", "timestamp": "2026-03-20T09:01:00.000Z",
                "type": "input", "source": "user"
            })])),
        })
        .mount(&server)
        .await;
    let config = selecting_config(&server);
    let obs = observer();
    let client = CognigyClient::new(&config, obs.clone()).unwrap();
    for _ in 0..2 {
        let batch = client.conversations_since(since(), 5).await.unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].id.as_deref(), Some("c1"));
    }
    assert_eq!(
        selects_sent(&server, "/v2.4/Conversations").await,
        vec![true, false, false]
    );
    assert_eq!(
        obs.count(Endpoint::CognigyConversations, CodeClass::ClientError),
        1
    );
}

/// A 400 that the page without `$select` gets too is the page's error, not the selection's: it
/// is returned, and the next read still asks with `$select`.
#[tokio::test]
async fn cognigy_select_kept_when_the_request_fails_without_it_too() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2.4/Conversations"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": {"code": "400", "message": "The query specified in the URI is not valid"}}),
        ))
        .mount(&server)
        .await;
    let config = selecting_config(&server);
    let client = CognigyClient::new(&config, observer()).unwrap();
    for _ in 0..2 {
        let err = client.conversations_since(since(), 5).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");
    }
    assert_eq!(
        selects_sent(&server, "/v2.4/Conversations").await,
        vec![true, false, true, false]
    );
}

/// A selection answered with HTTP 500 (which a keyset read takes as the end of the data) is
/// asked again without `$select`; when that brings records, only that collection stops
/// selecting: the others keep `$select`.
#[tokio::test]
async fn cognigy_select_answered_500_falls_back_for_that_collection_only() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2.4/Analytics"))
        .respond_with(|request: &Request| match select_param(request) {
            Some(_) => ResponseTemplate::new(500),
            None => ResponseTemplate::new(200).set_body_json(odata(vec![json!({
                "id": "an-1", "sessionId": "s1", "timestamp": "2026-03-20T09:01:00.000Z",
                "executionTime": 420
            })])),
        })
        .mount(&server)
        .await;
    mount_one_session(&server, SESSIONS_PATH).await;
    let config = selecting_config(&server);
    let client = CognigyClient::new(&config, observer()).unwrap();
    for _ in 0..2 {
        let batch = client.analytics_since(since(), 5).await.unwrap();
        assert_eq!(batch.records.len(), 1);
        assert!(!batch.ended_on_500);
        assert_eq!(
            client
                .sessions_since(since(), 5)
                .await
                .unwrap()
                .records
                .len(),
            1
        );
    }
    assert_eq!(
        selects_sent(&server, "/v2.4/Analytics").await,
        vec![true, false, false]
    );
    assert_eq!(selects_sent(&server, SESSIONS_PATH).await, vec![true, true]);
}

/// A server whose selected records come back without the selected id field (it names the id
/// otherwise) is asked again without `$select`, so records keep their ids.
#[tokio::test]
async fn cognigy_select_losing_the_id_falls_back_to_whole_records() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2.4/Analytics"))
        .respond_with(|request: &Request| {
            let mut record = json!({
                "_id": "an-1", "sessionId": "s1", "timestamp": "2026-03-20T09:01:00.000Z",
                "executionTime": 420, "custom1": "5000000001"
            });
            if let Some(select) = select_param(request) {
                let fields: Vec<&str> = select.split(',').collect();
                if let Some(map) = record.as_object_mut() {
                    map.retain(|k, _| fields.contains(&k.as_str()));
                }
            }
            ResponseTemplate::new(200).set_body_json(odata(vec![record]))
        })
        .mount(&server)
        .await;
    let config = selecting_config(&server);
    let client = CognigyClient::new(&config, observer()).unwrap();
    for _ in 0..2 {
        let batch = client.analytics_since(since(), 5).await.unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].id.as_deref(), Some("an-1"));
        assert_eq!(batch.records[0].custom1.as_deref(), Some("5000000001"));
    }
    assert_eq!(
        selects_sent(&server, "/v2.4/Analytics").await,
        vec![true, false, false]
    );
}

/// A fake OData collection that evaluates `$filter` (`gt`/`ge`/`eq` on one field), `$orderby`
/// asc (stable), `$skip` and `$top`, and can answer 500 for an empty page (Cognigy's quirk).
struct ODataSet {
    field: &'static str,
    records: Vec<Value>,
    empty_is_500: bool,
}

impl Respond for ODataSet {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let param = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let filter = param("$filter").unwrap_or_default();
        let filter = filter
            .strip_suffix(PROJECT_CLAUSE)
            .expect("every OData read is narrowed to the project");
        let parts: Vec<&str> = filter.splitn(3, ' ').collect();
        let (op, literal) = (parts[1], parts[2].trim_matches('\''));
        let bound: DateTime<Utc> = literal.parse().unwrap();
        let skip: usize = param("$skip").map(|s| s.parse().unwrap()).unwrap_or(0);
        let top: usize = param("$top").map(|s| s.parse().unwrap()).unwrap_or(1000);
        let mut matching: Vec<&Value> = self
            .records
            .iter()
            .filter(|r| {
                let t: DateTime<Utc> = r[self.field].as_str().unwrap().parse().unwrap();
                match op {
                    "gt" => t > bound,
                    "ge" => t >= bound,
                    other => panic!("unexpected operator {other}"),
                }
            })
            .collect();
        matching.sort_by_key(|r| r[self.field].as_str().unwrap().to_owned());
        let page: Vec<Value> = matching.into_iter().skip(skip).take(top).cloned().collect();
        if page.is_empty() && self.empty_is_500 {
            return ResponseTemplate::new(500);
        }
        ResponseTemplate::new(200).set_body_json(odata(page))
    }
}

fn analytics_json(id: &str, second: u32) -> Value {
    json!({
        "_id": id,
        "sessionId": "s-1",
        "timestamp": format!("2026-03-20T09:10:{second:02}.000Z"),
        "executionTime": 120,
        "custom1": "712345678900",
    })
}

/// Keyset paging over ties at page boundaries (even a whole page at one time) returns each record once.
#[tokio::test]
async fn cognigy_keyset_ties_are_neither_lost_nor_duplicated() {
    let server = MockServer::start().await;
    let records = vec![
        analytics_json("r1", 1),
        analytics_json("r2", 2),
        analytics_json("r3", 2),
        analytics_json("r4", 2),
        analytics_json("r5", 2),
        analytics_json("r6", 2),
        analytics_json("r7", 3),
        analytics_json("r8", 3),
        analytics_json("r9", 4),
    ];
    Mock::given(method("GET"))
        .and(path("/v2.4/Analytics"))
        .respond_with(ODataSet {
            field: "timestamp",
            records,
            empty_is_500: false,
        })
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.odata_page_size = 2;
    let client = CognigyClient::new(&config, observer()).unwrap();
    let batch = client.analytics_since(since(), 20).await.unwrap();
    let ids: Vec<&str> = batch
        .records
        .iter()
        .map(|r| r.id.as_deref().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"]
    );
    assert!(!batch.truncated);
    assert_eq!(batch.records[0].custom(1), Some("712345678900"));
    // 9 records in pages of 2: 5 pages, the last one short.
    assert_eq!(batch.pages, 5);
    let queries: Vec<String> = requests_to(&server, "/v2.4/Analytics")
        .await
        .iter()
        .map(|r| r.url.query().unwrap().to_owned())
        .collect();
    assert!(
        queries[1].contains("%20ge%20") && queries[1].contains("$skip=1"),
        "{queries:?}"
    );
    assert!(queries[2].contains("$skip=3"), "{queries:?}");
}

/// A `max_pages` cut holds back its last tie group, so resuming from `newest` loses nothing.
#[tokio::test]
async fn cognigy_truncated_batch_resumes_without_loss() {
    let server = MockServer::start().await;
    let records = vec![
        analytics_json("r1", 1),
        analytics_json("r2", 2),
        analytics_json("r3", 2),
        analytics_json("r4", 2),
        analytics_json("r5", 5),
    ];
    Mock::given(method("GET"))
        .and(path("/v2.4/Analytics"))
        .respond_with(ODataSet {
            field: "timestamp",
            records,
            empty_is_500: false,
        })
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.odata_page_size = 3;
    let client = CognigyClient::new(&config, observer()).unwrap();
    let first = client.analytics_since(since(), 1).await.unwrap();
    assert!(first.truncated);
    let ids: Vec<_> = first
        .records
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    assert_eq!(ids, vec!["r1"]);
    let second = client
        .analytics_since(first.newest.unwrap(), 5)
        .await
        .unwrap();
    let ids: Vec<_> = second
        .records
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    assert_eq!(ids, vec!["r2", "r3", "r4", "r5"]);
}

/// A keyset-end 500 is end of data (not retried) when configured, and a retried error when not.
#[tokio::test]
async fn cognigy_500_at_end_of_keyset() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ODataSet {
            field: "startedAt",
            records: vec![
                session_json("a", "2026-03-20T09:01:00.000Z"),
                session_json("b", "2026-03-20T09:02:00.000Z"),
            ],
            empty_is_500: true,
        })
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.odata_page_size = 2;
    let obs = observer();
    let client = CognigyClient::new(&config, obs.clone()).unwrap();
    let batch = client.sessions_since(since(), 5).await.unwrap();
    assert_eq!(batch.records.len(), 2);
    assert!(batch.ended_on_500);
    assert_eq!(batch.pages, 1);
    assert_eq!(client.keyset_500_ends(), 1);
    assert_eq!(
        obs.count(Endpoint::CognigySessions, CodeClass::ServerError),
        1
    );

    // First page already past the newest record.
    let later = Utc.with_ymd_and_hms(2026, 3, 20, 10, 0, 0).unwrap();
    let empty = client.sessions_since(later, 5).await.unwrap();
    assert!(empty.records.is_empty() && empty.ended_on_500);

    config.end_of_keyset_500 = false;
    let strict_obs = observer();
    let strict = CognigyClient::new(&config, strict_obs.clone()).unwrap();
    let err = strict.sessions_since(later, 5).await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(
        strict_obs.count(Endpoint::CognigySessions, CodeClass::ServerError),
        4
    );
    assert_eq!(strict.keyset_500_ends(), 0);
}

/// A malformed second OData page is a decode error, not a partial batch.
#[tokio::test]
async fn cognigy_malformed_page_is_decode_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .and(query_param(
            "$filter",
            format!("startedAt gt '2026-03-20T09:00:00.000Z'{PROJECT_CLAUSE}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(odata(vec![session_json("a", "2026-03-20T09:01:00.000Z")])),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .and(query_param(
            "$filter",
            format!("startedAt ge '2026-03-20T09:01:00.000Z'{PROJECT_CLAUSE}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(r#"{"value": [{"id": "b", "sessi"#, "application/json"),
        )
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.odata_page_size = 1;
    let client = CognigyClient::new(&config, observer()).unwrap();
    let err = client.sessions_since(since(), 5).await.unwrap_err();
    assert_eq!(err.kind(), "decode", "{err:?}");
    assert!(err.to_string().contains("odata_sessions"), "{err}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(API_KEY), "{text}");
}

/// The per-contact read (the catch-up bench's naive strategy) filters `sessionId eq` and
/// parses the session's conversations with their Voice Gateway event.
#[tokio::test]
async fn cognigy_conversations_for_one_session() {
    let server = MockServer::start().await;
    let input_data = json!({"event": "TRANSFER_REFER_ERROR", "payload": {"refer_status": 603}});
    Mock::given(method("GET"))
        .and(path("/v2.4/Conversations"))
        .and(query_param(
            "$filter",
            format!("sessionId eq 'session-a'{PROJECT_CLAUSE}").as_str(),
        ))
        .and(query_param("$orderby", "timestamp asc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(odata(vec![json!({
            "id": "c1", "sessionId": "session-a", "timestamp": "2026-03-20T09:01:05.000Z",
            "type": "input", "source": "user", "channel": "voiceGateway2",
            "inHandoverRequest": true, "inputData": input_data.to_string(),
        })])))
        .mount(&server)
        .await;
    let client = CognigyClient::new(&cognigy_config(&server), observer()).unwrap();
    let conversations = client.conversations_for_session("session-a").await.unwrap();
    assert!(conversations.records[0].in_handover_request);
    let event = conversations.records[0].input_data.event.as_ref().unwrap();
    assert_eq!(event.name, "TRANSFER_REFER_ERROR");
    assert_eq!(event.refer_status, Some(603));
}

const LOGS_PATH: &str = "/new/v2.0/projects/6601a2b3c4d5e6f708192a3b/logs";

fn log_json(id: &str, minute: u32, msg: &str) -> Value {
    json!({
        "_id": id,
        "timestamp": format!("2026-03-20T09:{minute:02}:00.000Z"),
        "msg": msg,
        "type": "error",
        "meta": {"sessionId": "session-a"},
        "traceId": "t",
    })
}

/// The query value of `name` in a request, if sent.
fn query_value(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A filtered logs page asks the server for the term (`filter`) and the lower bound
/// (`startDate`, ISO 8601 UTC), and keeps doing so once the server has answered it.
#[tokio::test]
async fn cognigy_logs_filter_and_start_date_are_sent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .and(query_param("filter", "handoverToCXone"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [log_json("l1", 40, "handoverToCXone: Signaled CXone with: 'Escalate'")],
            "total": 1, "nextCursor": null,
        })))
        .mount(&server)
        .await;
    let client = CognigyClient::new(&cognigy_config(&server), observer()).unwrap();
    let after = since() + ChronoDuration::minutes(10);
    for _ in 0..2 {
        let page = client
            .logs_page(after, None, Some("handoverToCXone"))
            .await
            .unwrap();
        assert_eq!(page.entries.len(), 1);
    }
    assert!(client.logs_filter_on());
    let requests = requests_to(&server, LOGS_PATH).await;
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(query_value(r, "filter").as_deref(), Some("handoverToCXone"));
        assert_eq!(
            query_value(r, "startDate").as_deref(),
            Some("2026-03-20T09:10:00.000Z")
        );
    }
}

/// A server that refuses `filter` (any HTTP error answer to the first filtered page) is asked
/// the same page again without `filter` and `startDate`; that answer is used, and every later
/// page is asked for unfiltered (the patterns still pick the lines).
#[tokio::test]
async fn cognigy_logs_filter_refused_falls_back_to_every_line() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .and(query_param("filter", "handoverToCXone"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": 400, "detail": "Unknown query parameter filter",
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [log_json("l1", 40, "handoverToCXone: Done"), log_json("l2", 39, "other")],
            "total": 2, "nextCursor": null,
        })))
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.http.max_retries = 0;
    let client = CognigyClient::new(&config, observer()).unwrap();
    let page = client
        .logs_page(since(), None, Some("handoverToCXone"))
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 2);
    assert!(!client.logs_filter_on());
    client
        .logs_page(since(), None, Some("handoverToCXone"))
        .await
        .unwrap();
    let filtered: Vec<bool> = requests_to(&server, LOGS_PATH)
        .await
        .iter()
        .map(|r| query_value(r, "filter").is_some() || query_value(r, "startDate").is_some())
        .collect();
    assert_eq!(filtered, vec![true, false, false]);
}

/// Logs page newest first by `nextCursor` to `after`, with `X-API-Key`, JSON `Accept`, both levels, no body.
#[tokio::test]
async fn cognigy_logs_next_cursor_paging() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .and(query_param("next", "cursor-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [log_json("l3", 20, "c"), log_json("l4", 5, "old")],
            "total": 4, "nextCursor": "cursor-3", "previousCursor": "cursor-1",
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .and(header("x-api-key", API_KEY))
        .and(header("accept", "application/json"))
        .and(query_param("sort", "timestamp:desc"))
        .and(query_param("limit", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [log_json("l1", 40, "a"), log_json("l2", 30, "b")],
            "total": 4, "nextCursor": "cursor-2", "previousCursor": null,
        })))
        .mount(&server)
        .await;
    let mut config = cognigy_config(&server);
    config.logs_page_size = 2;
    let obs = observer();
    let client = CognigyClient::new(&config, obs.clone()).unwrap();
    let after = since() + ChronoDuration::minutes(10);
    let batch = client.logs_since(after, 10).await.unwrap();
    let ids: Vec<_> = batch
        .records
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    assert_eq!(ids, vec!["l1", "l2", "l3"]);
    assert_eq!(batch.pages, 2);
    assert!(!batch.truncated);
    assert_eq!(
        batch.newest,
        Some(Utc.with_ymd_and_hms(2026, 3, 20, 9, 40, 0).unwrap())
    );
    let requests = requests_to(&server, LOGS_PATH).await;
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert!(r.body.is_empty());
        let types: Vec<String> = r
            .url
            .query_pairs()
            .filter(|(k, _)| k == "type")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(types, vec!["error", "info", "warn"]);
        assert!(!r.url.query().unwrap().contains("api_key"));
    }
    assert_eq!(obs.count(Endpoint::CognigyLogs, CodeClass::Success), 2);
}

/// The `next` envelope and the HAL envelope (cursor from `_links.next.href`) are both followed.
#[tokio::test]
async fn cognigy_logs_next_and_hal_variants() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .and(query_param("next", "hal-cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [log_json("l3", 20, "c")], "next": null,
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .and(query_param("next", "plain-next"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "_embedded": {"logEntry": [log_json("l2", 30, "b")]},
            "_links": {"next": {"href": format!("{LOGS_PATH}?limit=100&next=hal-cursor")}},
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [log_json("l1", 40, "a")], "next": "plain-next",
        })))
        .mount(&server)
        .await;
    let client = CognigyClient::new(&cognigy_config(&server), observer()).unwrap();
    let batch = client.logs_since(since(), 10).await.unwrap();
    let ids: Vec<_> = batch
        .records
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    assert_eq!(ids, vec!["l1", "l2", "l3"]);
    assert_eq!(batch.pages, 3);
}

/// A server that returns the same cursor again stops with a typed paging error, not a loop.
#[tokio::test]
async fn cognigy_logs_repeated_cursor_is_page_cap_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [log_json("l1", 40, "a")], "nextCursor": "same",
        })))
        .mount(&server)
        .await;
    let client = CognigyClient::new(&cognigy_config(&server), observer()).unwrap();
    let err = client.logs_since(since(), 10).await.unwrap_err();
    assert_eq!(err.kind(), "page_cap", "{err:?}");
    assert_eq!(requests_to(&server, LOGS_PATH).await.len(), 2);
}

/// No error's `Display` or `Debug` ever contains the Cognigy API key, for OData or REST.
#[tokio::test]
async fn api_key_never_appears_in_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(400).insert_header(
            "icStatusDescription",
            format!("bad query apikey={API_KEY}").as_str(),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(LOGS_PATH))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    let client = CognigyClient::new(&cognigy_config(&server), observer()).unwrap();
    let odata_err = client.sessions_since(since(), 1).await.unwrap_err();
    let logs_err = client.logs_since(since(), 1).await.unwrap_err();
    for err in [&odata_err, &logs_err] {
        let text = format!("{err} {err:?}");
        assert!(!text.contains(API_KEY), "{text}");
    }
    assert!(
        odata_err.to_string().contains("apikey=[redacted]"),
        "{odata_err}"
    );
    assert_eq!(logs_err.status(), Some(403));
    assert!(!format!("{client:?}").contains(API_KEY));
}

/// The token form is URL-encoded: `=`, `&` and spaces in a secret arrive escaped.
#[tokio::test]
async fn cxone_token_form_is_url_encoded() {
    let server = MockServer::start().await;
    mount_cxone_auth(&server, 3600).await;
    Mock::given(method("GET"))
        .and(path(CONTACTS_PATH))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let mut config = cxone_config(&server, None);
    config.access_key_secret = SecretString::from("a=b&c d");
    let client = CxoneClient::new(&config, observer()).unwrap();
    client.completed_contacts(since(), 1).await.unwrap();
    let matcher_hits = requests_to(&server, "/auth/token")
        .await
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("password=a%3Db%26c%20d"))
        .count();
    assert_eq!(matcher_hits, 1);
}

/// A POST not marked side-effect free is sent once, never retried, even on a 503.
#[tokio::test]
async fn non_idempotent_post_is_not_retried() {
    use handover_exporter::sources::http::{HttpLayer, HttpRequest};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/signal"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let obs = observer();
    let layer = HttpLayer::new(Source::Cxone, &fast_http(), obs.clone()).unwrap();
    let request = HttpRequest::post_form(
        Endpoint::CxoneToken,
        format!("{}/signal", server.uri()),
        &[("p1", "Escalate")],
    );
    let err = layer.send(&request).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(requests_to(&server, "/signal").await.len(), 1);
    assert_eq!(obs.retries(RetryCause::ServerError), 0);
    let retried = layer
        .send(&request.clone().side_effect_free())
        .await
        .unwrap_err();
    assert_eq!(retried.status(), Some(503));
    assert_eq!(requests_to(&server, "/signal").await.len(), 1 + 4);
}

/// A 408 is retried with the `request_timeout` cause; other 4xx (403) are final at once.
#[tokio::test]
async fn request_timeout_408_is_retried_but_403_is_not() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(408))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(odata(vec![])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2.4/Analytics"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    let obs = observer();
    let client = CognigyClient::new(&cognigy_config(&server), obs.clone()).unwrap();
    client.sessions_since(since(), 1).await.unwrap();
    assert_eq!(obs.retries(RetryCause::RequestTimeout), 1);
    assert_eq!(
        obs.count(Endpoint::CognigySessions, CodeClass::ClientError),
        1
    );
    let err = client.analytics_since(since(), 1).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(obs.attempts(Endpoint::CognigyAnalytics), 1);
}
