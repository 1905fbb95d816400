//! Property tests: every parser of outside input is fed arbitrary bytes, arbitrary JSON and YAML
//! shapes, and mutations (flipped, inserted, deleted bytes, truncations) of real bodies, and must
//! never panic; it answers a value or its typed error. Parsers: the CXone `contacts/completed`
//! page (live and replay), the Cognigy OData pages (Sessions, Conversations, Analytics; live and
//! replay), the Cognigy logs page (live and replay), whole replay directories, the TOML
//! configuration (daemon and replay `config.toml`) and the web-config YAML. Case counts are small
//! so that the suite stays quick on two cores.

use handover_exporter::config;
use handover_exporter::replay;
use handover_exporter::server::WebConfig;
use handover_exporter::sources::cognigy::wire::{
    parse_log_page, Analytics, Conversation, ODataPage, Session,
};
use handover_exporter::sources::cxone::wire::parse_completed_page;
use proptest::prelude::*;
use std::path::Path;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture")
}

/// Real bodies to mutate.
fn seeds() -> Vec<Vec<u8>> {
    [
        "cxone/contacts-completed-new-generation.json",
        "cxone/contacts-completed-old-generation.json",
        "cxone/contacts-completed-resultset.json",
        "cognigy/Sessions.json",
        "cognigy/Conversations.json",
        "cognigy/Analytics.json",
        "cognigy/logs.json",
        "cognigy/logs-hal.json",
        "cognigy/logs-v2.0-next.json",
    ]
    .iter()
    .map(|name| fixture(name))
    .collect()
}

/// One edit of a body: at a relative position, flip a byte, insert one, delete a run, or cut.
#[derive(Debug, Clone)]
enum Edit {
    Flip(f64, u8),
    Insert(f64, u8),
    Delete(f64, usize),
    Truncate(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = 0.0..1.0f64;
    // Bytes that matter to JSON, TOML and YAML, and any byte.
    let byte = prop_oneof![
        prop::sample::select(b"{}[]\":,'\\-0123456789.eE+tfn \n\t#=$&*!|>".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        (at.clone(), byte.clone()).prop_map(|(a, b)| Edit::Flip(a, b)),
        (at.clone(), byte).prop_map(|(a, b)| Edit::Insert(a, b)),
        (at.clone(), 1..64usize).prop_map(|(a, n)| Edit::Delete(a, n)),
        at.prop_map(Edit::Truncate),
    ]
}

fn apply(mut body: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let at = |f: f64| ((body.len() as f64) * f) as usize;
        match *edit {
            Edit::Flip(f, b) => {
                let i = at(f);
                if i < body.len() {
                    body[i] = b;
                }
            }
            Edit::Insert(f, b) => {
                let i = at(f).min(body.len());
                body.insert(i, b);
            }
            Edit::Delete(f, n) => {
                let i = at(f).min(body.len());
                let end = (i + n).min(body.len());
                body.drain(i..end);
            }
            Edit::Truncate(f) => {
                let i = at(f);
                body.truncate(i);
            }
        }
    }
    body
}

/// A real body with a few edits.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds()),
        prop::collection::vec(edit(), 1..8),
    )
        .prop_map(|(seed, edits)| apply(seed, &edits))
}

/// Arbitrary JSON whose keys are often the ones the parsers look for.
fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let key = prop_oneof![
        prop::sample::select(vec![
            "completedContacts",
            "resultSet",
            "value",
            "items",
            "_embedded",
            "logEntry",
            "contactId",
            "masterContactId",
            "contactStartDate",
            "contactStart",
            "lastUpdateTime",
            "sessionId",
            "timestamp",
            "startedAt",
            "inputData",
            "msg",
            "meta",
            "executionTime",
            "custom1",
            "handoverEscalations",
            "preQueueSeconds",
            "@odata.nextLink",
            "nextCursor",
            "_links",
            "next",
            "id",
            "_id",
            "totalRecords",
            "skillId",
            "abandoned",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_@.]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            "[0-9]{1,14}",
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z?",
            ".{0,24}",
            "PT[0-9]{1,5}(\\.[0-9]+)?S",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON body parser, live and replay; each returns, none panics.
fn parse_every_json_way(body: &[u8]) {
    let _ = parse_completed_page(body);
    let _ = serde_json::from_slice::<ODataPage<Session>>(body);
    let _ = serde_json::from_slice::<ODataPage<Conversation>>(body);
    let _ = serde_json::from_slice::<ODataPage<Analytics>>(body);
    let _ = parse_log_page(body);
    let _ = replay::parse_cxone_page(body);
    let _ = replay::parse_odata::<Session>(body);
    let _ = replay::parse_odata::<Conversation>(body);
    let _ = replay::parse_odata::<Analytics>(body);
    let _ = replay::parse_logs(body);
}

fn env(_: &str) -> Option<String> {
    Some("a-secret".to_owned())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic a JSON page parser.
    #[test]
    fn json_parsers_survive_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_every_json_way(&body);
    }

    /// Mutated real pages never panic a JSON page parser.
    #[test]
    fn json_parsers_survive_mutated_pages(body in mutated()) {
        parse_every_json_way(&body);
    }

    /// Arbitrary JSON shapes with the parsers' own keys never panic them.
    #[test]
    fn json_parsers_survive_arbitrary_shapes(value in json()) {
        let body = serde_json::to_vec(&value).expect("serializes");
        parse_every_json_way(&body);
        for key in ["completedContacts", "value", "items"] {
            let wrapped = serde_json::to_vec(&serde_json::json!({ key: [value.clone()] }))
                .expect("serializes");
            parse_every_json_way(&wrapped);
        }
    }

    /// Arbitrary and mutated TOML never panics the configuration parsers; errors name the origin.
    #[test]
    fn config_parsers_survive_arbitrary_and_mutated_toml(
        text in prop_oneof![
            ".{0,256}",
            (prop::collection::vec(edit(), 1..8)).prop_map(|edits| {
                let seed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/config/minimal.toml")).expect("fixture");
                String::from_utf8_lossy(&apply(seed, &edits)).into_owned()
            }),
        ]
    ) {
        if let Err(e) = config::parse(&text, "fuzz.toml", &env) {
            prop_assert!(e.to_string().starts_with("fuzz.toml: "), "{}", e);
        }
        if let Err(e) = config::parse_replay_rules(&text, "config.toml") {
            prop_assert!(e.to_string().starts_with("config.toml: "), "{}", e);
        }
    }

    /// Arbitrary and mutated YAML never panics the web-config parser.
    #[test]
    fn web_config_parser_survives_arbitrary_and_mutated_yaml(
        text in prop_oneof![
            ".{0,256}",
            (prop::collection::vec(edit(), 1..8)).prop_map(|edits| {
                let seed = b"basic_auth_users:\n  prometheus: '$2b$04$abcdefghijklmnopqrstuuLr3Ku2qz5v6KChSmLEZ0vK0D2fGk2RW'\n  alice: '$2y$10$abcdefghijklmnopqrstuuLr3Ku2qz5v6KChSmLEZ0vK0D2fGk2RW'\ntls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n  min_version: TLS12\n".to_vec();
                String::from_utf8_lossy(&apply(seed, &edits)).into_owned()
            }),
        ]
    ) {
        let _ = WebConfig::parse(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A replay directory of arbitrary and mutated files never panics the reader or the
    /// diagnosis that follows; a bad file is a problem naming it.
    #[test]
    fn replay_directory_survives_arbitrary_files(
        files in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "cxone/contacts-completed-1.json", "cxone/contacts-completed-2.json",
                    "cognigy/Sessions-1.json", "cognigy/Conversations-1.json",
                    "cognigy/Analytics-1.json", "cognigy/logs-1.json",
                    "cxone/state-history/1.json", "cxone/custom-data/1.json", "config.toml",
                ]),
                prop_oneof![
                    mutated(),
                    json().prop_map(|v| serde_json::to_vec(&v).expect("serializes")),
                    prop::collection::vec(any::<u8>(), 0..128),
                ],
            ),
            1..6,
        )
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("cxone/state-history")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("cxone/custom-data")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("cognigy")).expect("mkdir");
        for (name, body) in &files {
            std::fs::write(dir.path().join(name), body).expect("write");
        }
        let data = replay::read_dir(dir.path()).expect("a replay directory");
        for problem in &data.problems {
            prop_assert!(problem.path.starts_with(dir.path()), "{}", problem);
        }
        let _ = replay::diagnose_data(&data);
    }
}
