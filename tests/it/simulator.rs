//! Integration tests of the simulator over real HTTP on loopback: auth flow, paging, 204s, OData
//! filters and keysets, log cursors, every fault flag, world determinism and coverage, that the
//! crate's own wire types read every served body, that the crate's diagnosis agrees with the
//! simulator's ground truth, and that a replay dump reads back the same.

use crate::support::start_simulator;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{Duration, Utc};
use handover_exporter::engine::correlation::Inputs;
use handover_exporter::engine::diagnosis::{Horizon, Reason};
use handover_exporter::engine::{self, decide};
use handover_exporter::sources::cognigy::wire::{
    parse_log_page, Analytics, Conversation, LogEntry, ODataPage, Session,
};
use handover_exporter::sources::cxone::wire::{
    parse_completed_page, CompletedContact, SingleContactEnvelope, StateHistory,
};
use handover_simulator::world::GENERATED_REASONS;
use handover_simulator::{
    dump_replay, sim_rules, Faults, RetryAfter, SimCredentials, SimulatorOptions, World, WorldSpec,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn finite(calls: usize) -> SimulatorOptions {
    SimulatorOptions {
        seed: 7,
        calls: Some(calls),
        rate_per_day: None,
        backlog_hours: 1.0,
        ..SimulatorOptions::default()
    }
}

fn creds() -> SimCredentials {
    SimCredentials::default()
}

async fn token(client: &reqwest::Client, base: &str) -> String {
    let c = creds();
    let resp = client
        .post(format!("{base}/auth/token"))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", &c.access_key_id),
            ("password", &c.access_key_secret),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("token json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn set_faults(client: &reqwest::Client, base: &str, faults: &Faults) {
    let resp = client
        .post(format!("{base}/_sim/faults"))
        .json(faults)
        .send()
        .await
        .expect("faults");
    assert_eq!(resp.status(), 200);
}

fn completed_url(base: &str) -> String {
    format!("{base}/inContactAPI/services/v30.0/contacts/completed")
}

async fn all_contacts(
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    top: usize,
) -> Vec<CompletedContact> {
    let mut out = Vec::new();
    let mut skip = 0;
    loop {
        let resp = client
            .get(format!(
                "{}?orderBy=lastUpdateTime%20asc&mediaTypeId=4&top={top}&skip={skip}",
                completed_url(base)
            ))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("completed");
        let status = resp.status();
        let body = resp.bytes().await.expect("body");
        if status == 204 {
            assert!(body.is_empty(), "204 must have an empty body");
            break;
        }
        assert_eq!(status, 200);
        let page = parse_completed_page(&body).expect("page parses");
        let n = page.completed_contacts.len();
        assert!(n <= top);
        out.extend(page.completed_contacts);
        skip += n;
    }
    out
}

async fn odata_all<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    base: &str,
    collection: &str,
) -> Vec<T> {
    let url = format!("{base}/odata/v2.4/{collection}?apikey={}", creds().api_key);
    let resp = client.get(url).send().await.expect("odata");
    assert_eq!(resp.status(), 200);
    let page: ODataPage<T> =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("odata page parses");
    page.value
}

async fn all_logs(client: &reqwest::Client, base: &str, limit: usize) -> Vec<LogEntry> {
    let c = creds();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/new/v2.0/projects/{}/logs?limit={limit}&sort=timestamp:desc&type=error&type=info", c.project_id);
        if let Some(cur) = &cursor {
            url.push_str(&format!("&next={cur}"));
        }
        let resp = client
            .get(url)
            .header("X-API-Key", &c.api_key)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("logs");
        assert_eq!(resp.status(), 200);
        let page = parse_log_page(&resp.bytes().await.expect("body")).expect("log page parses");
        assert!(page.items.len() <= limit.min(100));
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out
}

/// Discovery, the password grant with Basic or form client credentials, 401s, and API host discovery.
#[tokio::test]
async fn token_flow_accepts_basic_and_form_and_rejects_bad_credentials() {
    let sim = start_simulator(finite(5)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let c = creds();
    let oidc: Value = client
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc["issuer"], json!(base));
    assert_eq!(oidc["token_endpoint"], json!(format!("{base}/auth/token")));

    let basic = client
        .post(format!("{base}/auth/token"))
        .header(
            "Authorization",
            format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", c.client_id, c.client_secret))
            ),
        )
        .form(&[
            ("grant_type", "password"),
            ("username", &c.access_key_id),
            ("password", &c.access_key_secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let body: Value = basic.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].is_string());
    let id_token = body["id_token"].as_str().unwrap();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["iss"], json!(base));
    assert_eq!(payload["tenantId"], json!(c.tenant_id));

    let form = client
        .post(format!("{base}/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", c.access_key_id.as_str()),
            ("password", c.access_key_secret.as_str()),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);

    let bad_client = client
        .post(format!("{base}/auth/token"))
        .basic_auth(&c.client_id, Some("wrong"))
        .form(&[
            ("grant_type", "password"),
            ("username", &c.access_key_id),
            ("password", &c.access_key_secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_client.status(), 401);
    let bad_key = client
        .post(format!("{base}/auth/token"))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", &c.access_key_id),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 401);

    let cfg: Value = client
        .get(format!(
            "{base}/.well-known/cxone-configuration?tenantId={}",
            c.tenant_id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["api_endpoint"], json!(base));
    assert_eq!(cfg["area"], "na1");
}

/// `contacts/completed` pages with skip/top, answers 204 with an empty body past the end or when
/// nothing matches, caps `top` at 10 000, requires a bearer token and ignores path case.
#[tokio::test]
async fn completed_contacts_page_and_answer_204_when_empty() {
    let sim = start_simulator(finite(40)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let bearer = token(&client, &base).await;
    let paged = all_contacts(&client, &base, &bearer, 7).await;
    let whole = all_contacts(&client, &base, &bearer, 10_000).await;
    assert!(
        paged.len() > 40,
        "bot calls have two or three contacts each"
    );
    assert_eq!(paged, whole);
    let ids: BTreeSet<i64> = paged.iter().map(|c| c.contact_id).collect();
    assert_eq!(ids.len(), paged.len(), "no contact twice across pages");

    let future = (Utc::now() + Duration::hours(1)).format("%Y-%m-%dT%H:%M:%S.000Z");
    let empty = client
        .get(format!("{}?updatedSince={future}", completed_url(&base)))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 204);
    assert!(empty.bytes().await.unwrap().is_empty());

    let capped: Value = client
        .get(format!("{}?top=50000", completed_url(&base)))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(capped["_links"]["self"]
        .as_str()
        .unwrap()
        .contains("top=10000"));
    assert_eq!(capped["totalRecords"], json!(paged.len()));
    assert!(capped["lastPollTime"].is_string() && capped["businessUnitId"].is_number());

    let lower = client
        .get(format!(
            "{base}/incontactapi/services/v30.0/contacts/completed?top=1"
        ))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);
    let unauth = client.get(completed_url(&base)).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    let bad = client
        .get(completed_url(&base))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}

/// Single contact (nested under `contactId`, 404 when unknown), both state-history spellings,
/// custom data and the 204 of the Signal API.
#[tokio::test]
async fn per_contact_endpoints_and_signal() {
    let sim = start_simulator(finite(5)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let bearer = token(&client, &base).await;
    let contacts = all_contacts(&client, &base, &bearer, 100).await;
    let id = contacts[0].contact_id;
    let api = format!("{base}/inContactAPI/services/v30.0");
    let single = client
        .get(format!("{api}/contacts/{id}"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(single.status(), 200);
    let env: SingleContactEnvelope =
        serde_json::from_slice(&single.bytes().await.unwrap()).unwrap();
    assert_eq!(env.contact.contact_id, id);
    let missing = client
        .get(format!("{api}/contacts/1"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    for path in ["state-history", "statehistory"] {
        let resp = client
            .get(format!("{api}/contacts/{id}/{path}"))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let h: StateHistory = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(
            h.contact_state_history.last().unwrap().contact_state_name,
            "Released"
        );
    }
    let custom: Value = client
        .get(format!("{api}/contacts/{id}/custom-data"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(custom["contactCustomData"].is_array());
    let signal = client
        .post(format!("{api}/interactions/{id}/signal"))
        .bearer_auth(&bearer)
        .json(&json!({"p1": "Escalate", "p2": "{}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signal.status(), 204);
}

/// The old-generation fault renames fields and sends numbers/booleans as strings; the crate's
/// lenient wire types still read the same contacts.
#[tokio::test]
async fn old_cxone_field_names_parse_to_the_same_contacts() {
    let sim = start_simulator(finite(10)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let bearer = token(&client, &base).await;
    let modern = all_contacts(&client, &base, &bearer, 1000).await;
    set_faults(
        &client,
        &base,
        &Faults {
            old_cxone_fields: true,
            ..Faults::default()
        },
    )
    .await;
    let raw: Value = client
        .get(completed_url(&base))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &raw["completedContacts"][0];
    assert!(first.get("contactStart").is_some() && first.get("contactStartDate").is_none());
    assert!(first.get("fromAddr").is_some() && first.get("mediaType").is_some());
    assert!(first["contactId"].is_string());
    assert!(first["abandoned"] == "True" || first["abandoned"] == "False");
    let old = all_contacts(&client, &base, &bearer, 1000).await;
    assert_eq!(old, modern);
}

/// OData `$filter` accepts quoted and bare date literals alike, keyset paging reads every
/// session once, and the end of a keyset is an empty page, or a 500 under the fault flag.
#[tokio::test]
async fn odata_keyset_with_quoted_and_bare_literals_and_500_at_end() {
    let sim = start_simulator(finite(30)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let key = creds().api_key;
    let all: Vec<Session> = odata_all(&client, &base, "Sessions").await;
    assert!(all.len() >= 20);
    let mid = all[all.len() / 2]
        .started_at
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let quoted: Value = client
        .get(format!("{base}/odata/v2.4/Sessions?$filter=startedAt gt '{mid}'&$orderby=startedAt asc&apikey={key}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bare: Value = client
        .get(format!("{base}/odata/v2.4/Sessions?$filter=startedAt gt {mid}&$orderby=startedAt asc&apikey={key}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(quoted["value"], bare["value"]);
    assert!(quoted["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("$metadata#Sessions"));
    let n = quoted["value"].as_array().unwrap().len();
    assert!(n > 0 && n < all.len());

    // Keyset walk with $top=4.
    let mut seen = Vec::new();
    let mut cursor = "2000-01-01T00:00:00.000Z".to_owned();
    loop {
        let resp = client
            .get(format!("{base}/odata/v2.4/Sessions?$filter=startedAt gt '{cursor}'&$orderby=startedAt asc&$top=4&apikey={key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let page: ODataPage<Session> =
            serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        if page.value.is_empty() {
            break;
        }
        cursor = page
            .value
            .last()
            .unwrap()
            .started_at
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        seen.extend(page.value.into_iter().map(|s| s.session_id));
    }
    let expected: Vec<String> = all.iter().map(|s| s.session_id.clone()).collect();
    assert_eq!(seen, expected);

    set_faults(
        &client,
        &base,
        &Faults {
            keyset_end_500: true,
            ..Faults::default()
        },
    )
    .await;
    let end = client
        .get(format!(
            "{base}/odata/v2.4/Sessions?$filter=startedAt gt '{cursor}'&$top=4&apikey={key}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(end.status(), 500);
    let not_end = client
        .get(format!(
            "{base}/odata/v2.4/Sessions?$filter=startedAt gt '{mid}'&$top=4&apikey={key}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(not_end.status(), 200);
    let by_session = client
        .get(format!(
            "{base}/odata/v2.4/Conversations?$filter=sessionId eq '{}'&apikey={key}",
            all[0].session_id
        ))
        .send()
        .await
        .unwrap();
    let convs: ODataPage<Conversation> =
        serde_json::from_slice(&by_session.bytes().await.unwrap()).unwrap();
    assert!(
        !convs.value.is_empty()
            && convs
                .value
                .iter()
                .all(|c| c.session_id == all[0].session_id)
    );
}

/// Only a literal `$top` is an OData option: `%24top` is rejected; a missing `apikey` is a 401.
#[tokio::test]
async fn odata_rejects_encoded_options_and_missing_key() {
    let sim = start_simulator(finite(10)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let key = creds().api_key;
    let literal: Value = client
        .get(format!("{base}/odata/v2.4/Analytics?$top=2&apikey={key}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(literal["value"].as_array().unwrap().len(), 2);
    let encoded = client
        .get(format!("{base}/odata/v2.4/Analytics?%24top=2&apikey={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.status(), 400);
    let nokey = client
        .get(format!("{base}/odata/v2.4/Analytics?$top=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(nokey.status(), 401);
    let record = &literal["value"][0];
    assert!(record["id"].is_string() && record.get("_id").is_none());
    assert!(
        record["inputData"].is_string(),
        "inputData is a JSON string"
    );
}

/// REST logs page by cursor without loss or repeats, cap `limit` at 100, honour `type` filters,
/// answer HAL when asked, and require the API key.
#[tokio::test]
async fn logs_cursor_paging_levels_hal_and_auth() {
    let sim = start_simulator(finite(60)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let c = creds();
    let small = all_logs(&client, &base, 7).await;
    let big = all_logs(&client, &base, 500).await;
    assert!(small.len() > 14, "several pages of logs");
    assert_eq!(small, big);
    assert!(
        small.windows(2).all(|w| w[0].timestamp >= w[1].timestamp),
        "timestamp:desc"
    );
    let url = format!("{base}/new/v2.1/projects/{}/logs", c.project_id);
    let errors: Value = client
        .get(format!("{url}?type=error&limit=100"))
        .header("X-API-Key", &c.api_key)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = errors["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.iter().all(|i| i["type"] == "error"));
    assert!(errors.get("nextCursor").is_some() && errors.get("previousCursor").is_some());
    let hal = client
        .get(format!("{url}?limit=3"))
        .header("X-API-Key", &c.api_key)
        .header("Accept", "application/hal+json")
        .send()
        .await
        .unwrap();
    let hal: Value = hal.json().await.unwrap();
    assert_eq!(hal["_embedded"]["logEntry"].as_array().unwrap().len(), 3);
    assert!(hal["_links"]["next"]["href"].is_string());
    let unauth = client
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
}

/// Every fault flag is observable: 429 with seconds, HTTP-date and no `Retry-After`, 503 bursts,
/// slow answers past a client timeout, truncated and malformed pages, short and dying tokens,
/// `_id` records; and `/_sim/stats` counts requests per path.
#[tokio::test]
async fn every_fault_flag_is_observable() {
    let sim = start_simulator(finite(10)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let bearer = token(&client, &base).await;
    let odata = format!("{base}/odata/v2.4/Sessions?apikey={}", creds().api_key);

    for (mode, check) in [
        (RetryAfter::Seconds(3), Some("3".to_owned())),
        (RetryAfter::None, None),
        (RetryAfter::HttpDate(5), Some("GMT".to_owned())),
    ] {
        set_faults(
            &client,
            &base,
            &Faults {
                rate_limit_429: 1,
                retry_after: mode,
                ..Faults::default()
            },
        )
        .await;
        let resp = client.get(&odata).send().await.unwrap();
        assert_eq!(resp.status(), 429);
        let header = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        match check {
            Some(expected) => assert!(header.unwrap().contains(&expected)),
            None => assert!(header.is_none()),
        }
    }
    set_faults(
        &client,
        &base,
        &Faults {
            server_error_burst: 2,
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(client.get(&odata).send().await.unwrap().status(), 503);
    assert_eq!(client.get(&odata).send().await.unwrap().status(), 503);
    assert_eq!(client.get(&odata).send().await.unwrap().status(), 200);

    set_faults(
        &client,
        &base,
        &Faults {
            slow_ms: 400,
            ..Faults::default()
        },
    )
    .await;
    let slow = client
        .get(&odata)
        .timeout(std::time::Duration::from_millis(100))
        .send()
        .await;
    assert!(slow.is_err_and(|e| e.is_timeout()));

    set_faults(
        &client,
        &base,
        &Faults {
            truncated_pages: 1,
            ..Faults::default()
        },
    )
    .await;
    let cut = client
        .get(completed_url(&base))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(parse_completed_page(&cut).is_err());
    assert!(parse_completed_page(
        &client
            .get(completed_url(&base))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    )
    .is_ok());
    set_faults(
        &client,
        &base,
        &Faults {
            malformed_pages: 1,
            ..Faults::default()
        },
    )
    .await;
    let bad = client
        .get(&odata)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(serde_json::from_slice::<Value>(&bad).is_err());

    set_faults(
        &client,
        &base,
        &Faults {
            token_ttl_seconds: Some(2),
            odata_underscore_id: true,
            ..Faults::default()
        },
    )
    .await;
    let c = creds();
    let short: Value = client
        .post(format!("{base}/auth/token"))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", &c.access_key_id),
            ("password", &c.access_key_secret),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(short["expires_in"], 2);
    let ids: Value = client
        .get(format!("{odata}&$top=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ids["value"][0]["_id"].is_string() && ids["value"][0].get("id").is_none());

    set_faults(
        &client,
        &base,
        &Faults {
            token_dies_after_seconds: Some(1),
            ..Faults::default()
        },
    )
    .await;
    let dying = token(&client, &base).await;
    assert_eq!(
        client
            .get(completed_url(&base))
            .bearer_auth(&dying)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(
        client
            .get(completed_url(&base))
            .bearer_auth(&dying)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let stats: Value = client
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["requests"]["/odata/v2.4/Sessions"].as_u64().unwrap() >= 8);
    assert!(stats["requests"]["/auth/token"].as_u64().unwrap() >= 3);
}

/// The same seed builds the same world and truth; another seed builds another.
#[test]
fn world_is_deterministic_per_seed() {
    let now = Utc::now();
    let spec = |seed| WorldSpec::finite(seed, 80, Duration::hours(1), Duration::seconds(60), now);
    let a = handover_simulator::Truth::of(&World::new(spec(1)), now);
    let b = handover_simulator::Truth::of(&World::new(spec(1)), now);
    let c = handover_simulator::Truth::of(&World::new(spec(2)), now);
    assert_eq!(a, b);
    assert_ne!(a.contacts, c.contacts);
    let streamed = {
        let mut w = World::new(WorldSpec {
            calls: None,
            ..spec(1)
        });
        w.extend_until(now);
        w
    };
    let finite = World::new(spec(1));
    let n = streamed.calls.len().min(finite.calls.len());
    assert!(n > 10);
    for (x, y) in streamed.calls.iter().zip(&finite.calls).take(n) {
        assert_eq!(
            (x.master_contact_id, &x.truth),
            (y.master_contact_id, &y.truth)
        );
    }
}

/// A world of 16+ calls covers every reason except `source_unavailable`, every match kind, and
/// includes calls that never entered the bot.
#[test]
fn world_covers_every_reason_and_match_kind() {
    let now = Utc::now();
    let world = World::new(WorldSpec::finite(
        3,
        200,
        Duration::hours(1),
        Duration::seconds(60),
        now,
    ));
    let truth = handover_simulator::Truth::of(&world, now);
    let reasons: BTreeSet<Reason> = truth.contacts.iter().map(|c| c.reason).collect();
    let expected: BTreeSet<Reason> = GENERATED_REASONS.iter().copied().collect();
    assert_eq!(reasons, expected);
    assert!(!reasons.contains(&Reason::SourceUnavailable));
    for kind in ["custom_field", "sip_header", "caller_time", "none"] {
        assert!(
            truth.totals.match_kind.get(kind).copied().unwrap_or(0) > 0,
            "{kind}"
        );
    }
    assert!(truth.totals.non_bot_contacts > 0);
    // Already the first 17 calls cover every reason, every match kind and a non-bot call.
    let small = World::new(WorldSpec::finite(
        8,
        17,
        Duration::hours(1),
        Duration::seconds(60),
        now,
    ));
    let small = handover_simulator::Truth::of(&small, now);
    assert_eq!(small.totals.reason.len(), GENERATED_REASONS.len());
    assert_eq!(small.totals.match_kind.len(), 4);
    assert_eq!(small.totals.non_bot_contacts, 1);
    let contained = truth.totals.outcome["contained"] + truth.totals.outcome["handed_over"];
    assert!(
        contained * 2 > truth.totals.contacts as u64,
        "mostly contained or handed over"
    );
}

/// Everything served reads with the crate's wire types, and the crate's own correlation and
/// diagnosis, run on those records, reach exactly the simulator's ground truth for every contact.
#[tokio::test]
async fn served_bodies_parse_and_diagnosis_matches_truth() {
    let sim = start_simulator(SimulatorOptions {
        seed: 11,
        ..finite(150)
    })
    .await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let bearer = token(&client, &base).await;
    let contacts = all_contacts(&client, &base, &bearer, 50).await;
    let sessions: Vec<Session> = odata_all(&client, &base, "Sessions").await;
    let conversations: Vec<Conversation> = odata_all(&client, &base, "Conversations").await;
    let analytics: Vec<Analytics> = odata_all(&client, &base, "Analytics").await;
    let logs = all_logs(&client, &base, 100).await;
    let truth: Value = client
        .get(format!("{base}/_sim/truth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected: BTreeMap<i64, (String, String)> = truth["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["contact_id"].as_i64().unwrap(),
                (
                    c["reason"].as_str().unwrap().to_owned(),
                    c["match"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(
        expected.len(),
        truth["totals"]["contacts"].as_u64().unwrap() as usize
    );
    assert!(expected.len() > 100);

    let rules = sim_rules();
    let inputs = Inputs {
        contacts: &contacts,
        sessions: &sessions,
        conversations: &conversations,
        analytics: &analytics,
        logs: &logs,
    };
    let mut got: BTreeMap<i64, (String, String)> = BTreeMap::new();
    for d in engine::diagnoses(decide(inputs, &rules, &Horizon::final_data())) {
        let m = d.evidence.match_kind.map_or("none", |m| m.as_str());
        got.insert(d.contact_id, (d.reason.as_str().to_owned(), m.to_owned()));
    }
    let mismatches: Vec<_> = expected
        .iter()
        .filter(|(id, want)| got.get(id) != Some(want))
        .map(|(id, want)| (id, want, got.get(id)))
        .collect();
    assert!(
        mismatches.is_empty(),
        "diagnosis disagrees with truth: {mismatches:?}"
    );
    assert_eq!(
        got.len(),
        expected.len(),
        "non-bot contacts must not be diagnosed"
    );
}

/// `dump_replay` writes the replay layout of DESIGN §8 whose files parse with the wire types,
/// with a `[rules]` config and the same truth as the server.
#[test]
fn dump_writes_a_replay_directory_that_parses() {
    let now = Utc::now();
    let world = World::new(WorldSpec::finite(
        5,
        60,
        Duration::hours(1),
        Duration::seconds(60),
        now,
    ));
    let dir = tempfile::tempdir().unwrap();
    let truth = dump_replay(&world, dir.path(), now).unwrap();
    let read =
        |rel: &str| std::fs::read(dir.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let page = parse_completed_page(&read("cxone/contacts-completed-001.json")).unwrap();
    let want: usize = world.calls.iter().map(|c| c.contacts.len()).sum();
    assert_eq!(page.completed_contacts.len(), want);
    let s: ODataPage<Session> = serde_json::from_slice(&read("cognigy/Sessions-001.json")).unwrap();
    let c: ODataPage<Conversation> =
        serde_json::from_slice(&read("cognigy/Conversations-001.json")).unwrap();
    let a: ODataPage<Analytics> =
        serde_json::from_slice(&read("cognigy/Analytics-001.json")).unwrap();
    assert!(!s.value.is_empty() && c.value.len() > s.value.len() && !a.value.is_empty());
    let logs = parse_log_page(&read("cognigy/logs-001.json")).unwrap();
    assert!(!logs.items.is_empty());
    let config: toml::Table =
        toml::from_str(&String::from_utf8(read("config.toml")).unwrap()).unwrap();
    let rules = config["rules"].as_table().unwrap();
    assert_eq!(rules["contact_id_field"].as_str(), Some("custom1"));
    assert_eq!(rules["handover_deadline_seconds"].as_integer(), Some(15));
    let dumped: Value = serde_json::from_slice(&read("truth.json")).unwrap();
    assert_eq!(dumped, serde_json::to_value(&truth).unwrap());
    assert_eq!(
        truth.contacts.len(),
        world.calls.iter().filter(|c| c.truth.is_some()).count()
    );
}

/// A streaming world shows only calls that have ended, and `?until=` narrows the truth.
#[tokio::test]
async fn streaming_truth_grows_with_time_and_honours_until() {
    let options = SimulatorOptions {
        calls: None,
        rate_per_day: Some(8640.0),
        backlog_hours: 0.5,
        ..SimulatorOptions::default()
    };
    let sim = start_simulator(options).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let now: Value = client
        .get(format!("{base}/_sim/truth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = now["totals"]["contacts"].as_u64().unwrap();
    assert!(n > 50, "backlog of half an hour at one call per 10 s: {n}");
    let early = (Utc::now() - Duration::minutes(15)).format("%Y-%m-%dT%H:%M:%SZ");
    let before: Value = client
        .get(format!("{base}/_sim/truth?until={early}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = before["totals"]["contacts"].as_u64().unwrap();
    assert!(m < n && m > 0);
    let bad = client
        .get(format!("{base}/_sim/truth?until=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    sim.stop().await.unwrap();
}

/// `POST /_sim/faults` changes only the keys it names, `PUT` replaces all, and bad JSON or an
/// unknown fault is a 400 that names the problem.
#[tokio::test]
async fn fault_control_merges_replaces_and_rejects_unknown_keys() {
    let sim = start_simulator(finite(3)).await;
    let base = sim.base_url.clone();
    let client = reqwest::Client::new();
    let url = format!("{base}/_sim/faults");
    client
        .post(&url)
        .json(&json!({"slow_ms": 5}))
        .send()
        .await
        .unwrap();
    client
        .post(&url)
        .json(&json!({"keyset_end_500": true, "retry_after": {"seconds": 2}}))
        .send()
        .await
        .unwrap();
    let now: Faults = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(now.slow_ms, 5);
    assert!(now.keyset_end_500);
    assert_eq!(now.retry_after, RetryAfter::Seconds(2));
    client
        .put(&url)
        .json(&json!({"old_cxone_fields": true}))
        .send()
        .await
        .unwrap();
    let replaced: Faults = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        replaced,
        Faults {
            old_cxone_fields: true,
            ..Faults::default()
        }
    );
    let unknown = client
        .post(&url)
        .json(&json!({"explode": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(unknown.text().await.unwrap().contains("explode"));
}

/// `run` serves until its shutdown future completes, then returns cleanly; bad options are refused.
#[tokio::test]
async fn run_serves_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(handover_simulator::run(listener, finite(3), async move {
        let _ = rx.await;
    }));
    let resp = reqwest::get(format!("http://{addr}/.well-known/openid-configuration"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bad = SimulatorOptions {
        calls: Some(0),
        ..SimulatorOptions::default()
    };
    let err = handover_simulator::run(listener, bad, async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--calls"));
}
