//! Wire types against fixtures written from the documented API shapes (../shared/api/).

use crate::support::fixture_bytes;
use handover_exporter::sources::cognigy::wire::{
    parse_log_page, Analytics, Conversation, ODataPage, Session,
};
use handover_exporter::sources::cxone::wire::{
    parse_completed_page, CustomData, SingleContactEnvelope, StateHistory,
};

/// The new-generation completed-contacts envelope parses with every field the diagnosis reads.
#[test]
fn cxone_completed_new_generation() {
    let page = parse_completed_page(&fixture_bytes(
        "cxone/contacts-completed-new-generation.json",
    ))
    .unwrap();
    assert_eq!(page.total_records, Some(12));
    assert_eq!(page.completed_contacts.len(), 8);
    assert!(page.links.unwrap().next.is_some());
    let c = &page.completed_contacts[0];
    assert_eq!(c.contact_id, 712345678900);
    assert_eq!(c.media_type_id, Some(4));
    assert_eq!(c.from_address, "+15551230000");
    assert_eq!(c.point_of_contact_id, 3189288);
    assert_eq!(c.skill_id, 4001);
    assert!(c.abandoned);
    assert_eq!(c.in_queue_seconds, 41.0);
    assert_eq!(
        c.contact_start_date.to_rfc3339(),
        "2026-03-20T09:10:00+00:00"
    );
}

/// Old field names (`contactStart`, `fromAddr`, `mediaType`) and string-typed numbers and
/// booleans parse to exactly the same records as the new generation.
#[test]
fn cxone_old_generation_equals_new() {
    let old = parse_completed_page(&fixture_bytes(
        "cxone/contacts-completed-old-generation.json",
    ))
    .unwrap();
    let new = parse_completed_page(&fixture_bytes(
        "replay/api-examples/cxone/contacts-completed-001.json",
    ))
    .unwrap();
    let new2 = parse_completed_page(&fixture_bytes(
        "replay/api-examples/cxone/contacts-completed-002.json",
    ))
    .unwrap();
    let mut all_new = new.completed_contacts.clone();
    all_new.extend(new2.completed_contacts);
    assert_eq!(old.completed_contacts, all_new);
    assert_eq!(old.total_records, Some(12));
}

/// The 2016-era `resultSet` wrapper is unwrapped.
#[test]
fn cxone_result_set_wrapper() {
    let page =
        parse_completed_page(&fixture_bytes("cxone/contacts-completed-resultset.json")).unwrap();
    assert_eq!(page.completed_contacts.len(), 12);
}

/// An empty body (HTTP 204) is an empty page, not a parse error.
#[test]
fn cxone_204_empty_body_is_empty_page() {
    let page = parse_completed_page(b"").unwrap();
    assert!(page.completed_contacts.is_empty());
}

/// A malformed number is an error naming the offending value, not a silent zero.
#[test]
fn cxone_bad_number_is_an_error() {
    let body =
        br#"{"completedContacts":[{"contactId":"12x","contactStartDate":"2026-03-20T09:10:00Z"}]}"#;
    let err = parse_completed_page(body).unwrap_err().to_string();
    assert!(err.contains("\"12x\""), "{err}");
}

/// The single-contact envelope nests the contact under a key named `contactId`.
#[test]
fn cxone_single_contact_envelope() {
    let env: SingleContactEnvelope =
        serde_json::from_slice(&fixture_bytes("cxone/contact-single.json")).unwrap();
    assert_eq!(env.contact.contact_id, 712345678900);
}

/// State history (string contact ids) and custom data parse.
#[test]
fn cxone_state_history_and_custom_data() {
    let h: StateHistory =
        serde_json::from_slice(&fixture_bytes("cxone/state-history.json")).unwrap();
    assert_eq!(h.contact_state_history.len(), 3);
    assert_eq!(
        h.contact_state_history[0].contact_id.as_deref(),
        Some("712345678900")
    );
    assert_eq!(h.contact_state_history[2].contact_state_name, "Released");
    let d: CustomData = serde_json::from_slice(&fixture_bytes("cxone/custom-data.json")).unwrap();
    assert_eq!(d.items[0].name, "CognigySessionId");
    let bulk: CustomData =
        serde_json::from_str(r#"{"ContactCustomData":[{"contactId":1,"name":"a","value":"b"}]}"#)
            .unwrap();
    assert_eq!(bulk.items[0].value, "b");
}

/// OData Sessions parse with `id`, `handoverEscalations` and `startedAt`.
#[test]
fn cognigy_sessions() {
    let page: ODataPage<Session> =
        serde_json::from_slice(&fixture_bytes("cognigy/Sessions.json")).unwrap();
    assert_eq!(page.value.len(), 2);
    assert_eq!(
        page.value[1].session_id,
        "2f0c9a64-3b1e-4d7a-9a55-7f1c2e3d4b5a"
    );
    assert_eq!(page.value[1].handover_escalations, 1);
    assert_eq!(
        page.value[1].id.as_deref(),
        Some("6601f0a1b2c3d4e5f6a7b8e1")
    );
}

/// Conversations decode `inputData` strings: SIP headers and Voice Gateway events.
#[test]
fn cognigy_conversations_input_data() {
    let page: ODataPage<Conversation> =
        serde_json::from_slice(&fixture_bytes("cognigy/Conversations.json")).unwrap();
    let sip = &page.value[0].input_data;
    assert_eq!(sip.master_contact_id.as_deref(), Some("712345678900"));
    assert_eq!(sip.spawned_contact_id.as_deref(), Some("712345678901"));
    assert!(page.value[2].in_handover_request);
    let event = page.value[5].input_data.event.as_ref().unwrap();
    assert_eq!(event.name, "TRANSFER_REFER_ERROR");
    assert_eq!(event.refer_status, Some(603));
}

/// A masked (non-JSON) `inputData` decodes to nothing known instead of failing the page.
#[test]
fn cognigy_masked_input_data() {
    let body =
        r#"{"value":[{"sessionId":"s","timestamp":"2026-03-20T09:00:00Z","inputData":"*****"}]}"#;
    let page: ODataPage<Conversation> = serde_json::from_str(body).unwrap();
    assert!(page.value[0].input_data.is_empty());
}

/// Analytics accept both `id` (v2.4) and `_id` (v2.3) and read custom fields and execution time.
#[test]
fn cognigy_analytics_id_variants() {
    let page: ODataPage<Analytics> =
        serde_json::from_slice(&fixture_bytes("cognigy/Analytics.json")).unwrap();
    assert!(page.value[0].id.is_some());
    assert!(page.value[1].id.is_some(), "_id is read too");
    assert_eq!(page.value[1].custom(1), Some("100000000000"));
    assert_eq!(page.value[0].custom(1), None, "empty custom field is none");
    assert_eq!(page.value[0].execution_time, 800.0);
}

/// REST log pages parse in all three envelopes: `nextCursor`, v2.0 `next`, and HAL.
#[test]
fn cognigy_log_envelopes() {
    let a = parse_log_page(&fixture_bytes("cognigy/logs.json")).unwrap();
    assert_eq!(a.items.len(), 2);
    assert_eq!(a.next_cursor.as_deref(), Some("6601f0a1b2c3d4e5f6a7b8c9"));
    assert_eq!(
        a.items[0].meta.session_id.as_deref(),
        Some("a1111111-0000-4000-8000-00000000000a")
    );
    let b = parse_log_page(&fixture_bytes("cognigy/logs-v2.0-next.json")).unwrap();
    assert_eq!(b.next_cursor.as_deref(), Some("6601f0a1b2c3d4e5f6a7e003"));
    let c = parse_log_page(&fixture_bytes("cognigy/logs-hal.json")).unwrap();
    assert_eq!(c.items.len(), 2);
    assert!(c
        .next_cursor
        .unwrap()
        .contains("next=6601f0a1b2c3d4e5f6a7e005"));
    assert!(parse_log_page(br#"{"total":0}"#).is_err());
}

/// Non-finite numbers ("inf", "NaN") and timestamps outside 1970..=9999 are errors naming the
/// value, so no later arithmetic on them can overflow or poison a histogram.
#[test]
fn absurd_values_are_refused() {
    for body in [
        r#"{"completedContacts":[{"contactId":1,"contactStartDate":"2026-03-20T09:10:00Z","totalDurationSeconds":"inf"}]}"#,
        r#"{"completedContacts":[{"contactId":1,"contactStartDate":"2026-03-20T09:10:00Z","inQueueSeconds":"NaN"}]}"#,
        r#"{"completedContacts":[{"contactId":1,"contactStartDate":"0001-01-01T00:00:00Z"}]}"#,
    ] {
        assert!(parse_completed_page(body.as_bytes()).is_err(), "{body}");
    }
    let huge = r#"{"completedContacts":[{"contactId":1,"contactStartDate":"9999-12-31T00:00:00Z","totalDurationSeconds":1e300}]}"#;
    let page = parse_completed_page(huge.as_bytes()).unwrap();
    // Clamped to 30 days: computing the end does not overflow.
    let _ = page.completed_contacts[0].ended_at();
}

/// A 200 CXone page without a `completedContacts` array (`{}`, `[]`, another envelope) is an
/// error naming the missing array, never an empty page that would skip contacts.
#[test]
fn completed_page_without_the_array_is_an_error() {
    for body in [
        "{}",
        "[]",
        "{\"foo\":1}",
        "{\"value\":[]}",
        "{\"completedContacts\":{}}",
    ] {
        let error = handover_exporter::sources::cxone::wire::parse_completed_page(body.as_bytes())
            .expect_err(body)
            .to_string();
        assert!(error.contains("completedContacts"), "{body}: {error}");
    }
    let empty = handover_exporter::sources::cxone::wire::parse_completed_page(
        b"{\"completedContacts\":[],\"totalRecords\":0}",
    )
    .expect("an empty array is an empty page");
    assert!(empty.completed_contacts.is_empty());
}
