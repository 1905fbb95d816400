//! Integration tests of the configuration module: the complete example file parses to the values
//! and defaults it documents, every invalid fixture in `tests/fixtures/config/` is refused with its
//! exact message (naming the file and the key), secrets never show in `Debug` output or errors,
//! and a replay directory's `[rules]` table goes through the same rules validation.
//!
//! Environment variables are injected through the `env` argument; no test changes the process
//! environment.

use handover_exporter::config::{
    self, ClientAuth, Config, ConfigError, DateLiteral, HttpSettings, DEFAULT_INVALID_ACTION,
    DEFAULT_MISSING_CONTACT_ID, DEFAULT_NODE_IDS, DEFAULT_SIGNALED, DEFAULT_SIGNAL_ERROR,
    DEFAULT_SIGNAL_STATUS, DEFAULT_TIMEOUT_TEXT,
};
use secrecy::ExposeSecret;
use std::path::Path;
use std::time::Duration;

const FIXTURES: &str = "tests/fixtures/config";

/// The environment the fixtures expect: the secrets of `minimal.toml`, a blank variable, and
/// nothing else (so `UNSET_ACCESS_KEY_SECRET` is unset).
fn fixture_env(name: &str) -> Option<String> {
    match name {
        "CLIENT_SECRET" => Some("env-client-secret".to_string()),
        "ACCESS_KEY_SECRET" => Some("env-access-key-secret\n".to_string()),
        "COGNIGY_API_KEY" => Some("env-cognigy-api-key".to_string()),
        "EMPTY_ACCESS_KEY_SECRET" => Some("  \n".to_string()),
        _ => None,
    }
}

fn load_fixture(name: &str) -> Result<Config, ConfigError> {
    config::load_with_env(&Path::new(FIXTURES).join(name), &fixture_env)
}

fn fixture_error(name: &str) -> String {
    match load_fixture(name) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e.to_string(),
    }
}

/// One `#[test]` per invalid fixture, asserting its exact message, plus the list of fixtures
/// checked (so a new fixture file without a test is noticed).
macro_rules! rejected_fixtures {
    ($($(#[$doc:meta])* $name:ident => $message:expr;)*) => {
        $(
            $(#[$doc])*
            #[test]
            fn $name() {
                assert_eq!(fixture_error(concat!(stringify!($name), ".toml")), $message);
            }
        )*
        const REJECTED_FIXTURES: &[&str] = &[$(stringify!($name)),*];
    };
}

rejected_fixtures! {
    /// Rejected with its key named: api_version is not v<digits>.0.
    bad_api_version => "tests/fixtures/config/bad_api_version.toml: tenant[0] (acme).cxone.api_version: must look like `v30.0` (`v<digits>.0`), got `30`";
    /// Rejected with its key named: client_auth is neither basic nor form.
    bad_client_auth => "tests/fixtures/config/bad_client_auth.toml: tenant[0].cxone.client_auth: unknown variant `bearer`, expected `basic` or `form` (line 10, column 15)";
    /// Rejected with its key named: contact_id_field is not custom1..custom10.
    bad_contact_id_field => "tests/fixtures/config/bad_contact_id_field.toml: tenant[0] (acme).rules.contact_id_field: must be one of `custom1` .. `custom10`, got `custom11`";
    /// Rejected with its key named: date_literal is neither quoted nor bare.
    bad_date_literal => "tests/fixtures/config/bad_date_literal.toml: tenant[0].cognigy.date_literal: unknown variant `iso`, expected `quoted` or `bare` (line 17, column 16)";
    /// Rejected with its key named: logs_page_size is above the server cap of 100.
    bad_logs_page_size => "tests/fixtures/config/bad_logs_page_size.toml: tenant[0] (acme).cognigy.logs_page_size: must be between 1 and 100, got 200";
    /// Rejected with its key named: odata_page_size is above 10000.
    bad_page_size => "tests/fixtures/config/bad_page_size.toml: tenant[0] (acme).cognigy.odata_page_size: must be between 1 and 10000, got 20000";
    /// Rejected with its key named: a log pattern does not compile.
    bad_regex => "tests/fixtures/config/bad_regex.toml: tenant[0] (acme).rules.log_patterns.timeout_text: invalid regular expression: regex parse error:\n    (timed out\n    ^\nerror: unclosed group";
    /// Rejected with its key named and the reason: `no_output` read a line that follows every voice run.
    removed_no_output => "tests/fixtures/config/removed_no_output.toml: tenant[0] (acme).rules.log_patterns.no_output: is no longer read: the extension writes `Done. No output data sent` after every voice run, so it says nothing about missing ids; remove the key (missing ids are read from `node_ids` and `missing_contact_id`, docs/log-lines.md)";
    /// Rejected with its key named: requests_per_second is zero.
    bad_requests_per_second => "tests/fixtures/config/bad_requests_per_second.toml: tenant[0] (acme).cognigy.http.requests_per_second: must be greater than 0 and at most 1000, got 0";
    /// Rejected with its key named: a skill id is negative.
    bad_skill_id => "tests/fixtures/config/bad_skill_id.toml: tenant[0] (acme).rules.bot_entry_skills[1]: must be a positive CXone id, got -2";
    /// Rejected with its key named: the tenant name has a space (not a valid label value).
    bad_tenant_name => "tests/fixtures/config/bad_tenant_name.toml: tenant[0].name: must contain only ASCII letters, digits, `_` and `-` (it is the `tenant` label value), got `acme corp`";
    /// Rejected with its key named: a base URL is not http(s).
    bad_url => "tests/fixtures/config/bad_url.toml: tenant[0] (acme).cognigy.api_base_url: must start with http:// or https://, got `ftp://api-app.cognigy.ai`";
    /// Rejected with its key named: client_secret has both a file and an env source.
    both_secret_sources => "tests/fixtures/config/both_secret_sources.toml: tenant[0] (acme).cxone.client_secret: set exactly one of `client_secret_file` and `client_secret_env`, not both";
    /// Rejected with its key named: two tenants share one name, reported before any secret is read.
    duplicate_tenant => "tests/fixtures/config/duplicate_tenant.toml: tenant[1].name: duplicate tenant name `acme` (also tenant[0])";
    /// Rejected with its key named: the access key secret's environment variable is blank.
    empty_secret_env => "tests/fixtures/config/empty_secret_env.toml: tenant[0] (acme).cxone.access_key_secret_env: environment variable `EMPTY_ACCESS_KEY_SECRET` is empty";
    /// Rejected without echoing it: the secret itself was put where the variable's name belongs.
    env_value_not_name => "tests/fixtures/config/env_value_not_name.toml: tenant[0] (acme).cognigy.api_key_env: must be the name of an environment variable (ASCII letters, digits and `_`, not starting with a digit), not the secret itself; the value is not shown";
    /// Rejected with its key named: the client secret file is empty.
    empty_secret_file => "tests/fixtures/config/empty_secret_file.toml: tenant[0] (acme).cxone.client_secret_file: `tests/fixtures/config/secrets/empty` is empty";
    /// Rejected with its key named: state_path is empty.
    empty_state_path => "tests/fixtures/config/empty_state_path.toml: state_path: must not be empty";
    /// Rejected with its key named: project_id is missing.
    missing_required_key => "tests/fixtures/config/missing_required_key.toml: tenant[0].cognigy: missing field `project_id` (line 12, column 1)";
    /// Rejected with its key named: the client secret file does not exist.
    missing_secret_file => "tests/fixtures/config/missing_secret_file.toml: tenant[0] (acme).cxone.client_secret_file: `tests/fixtures/config/secrets/missing_client_secret` cannot be read: No such file or directory (os error 2)";
    /// Rejected with its key named: no [[tenant]] at all.
    missing_tenant => "tests/fixtures/config/missing_tenant.toml: tenant: at least one [[tenant]] is required";
    /// Rejected with its key named: the Cognigy api_key has neither api_key_file nor api_key_env.
    no_secret_source => "tests/fixtures/config/no_secret_source.toml: tenant[0] (acme).cognigy.api_key: missing; set `api_key_file` (a file holding it) or `api_key_env` (the name of an environment variable holding it)";
    /// Rejected with its key named: not TOML (a key without a value).
    not_toml => "tests/fixtures/config/not_toml.toml: string values must be quoted, expected literal string (line 3, column 14)";
    /// Rejected with its key named: the signaled pattern lacks the contact_id group.
    regex_missing_group => "tests/fixtures/config/regex_missing_group.toml: tenant[0] (acme).rules.log_patterns.signaled: must contain the named group `(?P<contact_id>...)`";
    /// Rejected with its key named: an unknown key in [tenant.cxone.http].
    unknown_http_key => "tests/fixtures/config/unknown_http_key.toml: tenant[0].cxone.http.timeout: unknown field `timeout`, expected one of `timeout_seconds`, `max_retries`, `initial_backoff_ms`, `max_backoff_seconds`, `requests_per_second`, `quota_requests`, `quota_window_seconds`, `max_concurrency`, `http1_only` (line 22, column 1)";
    /// Rejected with its key named: an unknown key in [tenant.rules].
    unknown_rules_key => "tests/fixtures/config/unknown_rules_key.toml: tenant[0].rules.handover_skill: unknown field `handover_skill`, expected one of `bot_entry_points_of_contact`, `bot_entry_skills`, `handover_skills`, `contact_id_field`, `cognigy_lag_seconds`, `handover_deadline_seconds`, `bot_turn_timeout_ms`, `correlation_window_seconds`, `max_pending_seconds`, `log_patterns` (line 20, column 1)";
    /// Rejected with its key named: an unknown key in [tenant.cxone].
    unknown_tenant_key => "tests/fixtures/config/unknown_tenant_key.toml: tenant[0].cxone.page_sise: unknown field `page_sise`, expected one of `issuer`, `client_id`, `client_secret_file`, `client_secret_env`, `access_key_id`, `access_key_secret_file`, `access_key_secret_env`, `client_auth`, `api_version`, `api_endpoint`, `page_size`, `max_pages`, `http` (line 8, column 1)";
    /// Rejected with its key named: an unknown top-level key (misspelt).
    unknown_top_key => "tests/fixtures/config/unknown_top_key.toml: pol_interval_seconds: unknown field `pol_interval_seconds`, expected one of `state_path`, `poll_interval_seconds`, `cycle_deadline_seconds`, `overlap_seconds`, `settle_seconds`, `retention_hours`, `initial_lookback_hours`, `tenant` (line 2, column 1)";
    /// Rejected with its key named: the access key secret's environment variable is not set.
    unset_secret_env => "tests/fixtures/config/unset_secret_env.toml: tenant[0] (acme).cxone.access_key_secret_env: environment variable `UNSET_ACCESS_KEY_SECRET` is not set";
    /// Rejected with its key named: handover_skills holds a string instead of an integer.
    wrong_type => "tests/fixtures/config/wrong_type.toml: tenant[0].rules.handover_skills[0]: invalid type: string \"4001\", expected i64 (line 20, column 20)";
    /// Rejected with its key named: poll_interval_seconds is 0.
    zero_poll_interval => "tests/fixtures/config/zero_poll_interval.toml: poll_interval_seconds: must be between 1 and 86400, got 0";
}

/// Fixtures that are valid or belong to the replay tests rather than `rejected_fixtures!`.
const OTHER_FIXTURES: &[&str] = &[
    "minimal",
    "relative_secret_file",
    "replay_rules",
    "replay_tenant_table",
    "replay_unknown_key",
];

/// Every `.toml` in the fixture directory has a test: an invalid fixture cannot go unchecked.
#[test]
fn every_fixture_is_checked() {
    let mut on_disk: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| {
            path.file_stem()
                .expect("file stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let mut checked: Vec<String> = REJECTED_FIXTURES
        .iter()
        .chain(OTHER_FIXTURES)
        .map(|name| name.to_string())
        .collect();
    checked.sort();
    assert_eq!(on_disk, checked);
}

/// Writes the example's two secret files into `dir`, with the trailing newline a file usually has.
fn example_config(dir: &Path) -> Config {
    std::fs::write(dir.join("cxone_client_secret"), "acme-client-secret\n").expect("write");
    std::fs::write(dir.join("cognigy_api_key"), "  acme-cognigy-key\n").expect("write");
    let text = std::fs::read_to_string("examples/handover-exporter.toml").expect("example file");
    let text = text.replace("/run/secrets", &dir.display().to_string());
    let env = |name: &str| match name {
        "CXONE_ACCESS_KEY_SECRET" => Some("acme-access-key-secret".to_string()),
        "GLOBEX_CXONE_CLIENT_SECRET" => Some("globex-client-secret".to_string()),
        "GLOBEX_CXONE_ACCESS_KEY_SECRET" => Some("globex-access-key-secret".to_string()),
        "GLOBEX_COGNIGY_API_KEY" => Some("globex-cognigy-key".to_string()),
        _ => None,
    };
    match config::parse(&text, "examples/handover-exporter.toml", &env) {
        Ok(config) => config,
        Err(e) => panic!("the example does not parse: {e}"),
    }
}

/// The complete example parses: every value it sets, secrets from files (trimmed) and from the
/// environment, and the defaults of the second, minimal tenant.
#[test]
fn example_file_parses_with_values_and_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = example_config(dir.path());

    assert_eq!(
        config.state_path,
        "/var/lib/handover-exporter/handover-exporter.db"
    );
    assert_eq!(config.poll_interval, Duration::from_secs(60));
    assert_eq!(config.cycle_deadline, Duration::from_secs(55));
    assert_eq!(config.overlap, Duration::from_secs(300));
    assert_eq!(config.settle, Duration::from_secs(60));
    assert_eq!(config.retention, Duration::from_secs(48 * 3600));
    assert_eq!(config.initial_lookback, Duration::from_secs(23 * 3600));
    let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["acme", "globex"]);

    let acme = &config.tenants[0];
    let cxone = &acme.cxone;
    assert_eq!(cxone.issuer, "https://cxone.niceincontact.com");
    assert_eq!(cxone.client_id, "0f8d6a2e-5c1b-4c0e-9a54-3b1e2d7f6c11");
    assert_eq!(cxone.client_secret.expose_secret(), "acme-client-secret");
    assert_eq!(
        cxone.access_key_id,
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOP"
    );
    assert_eq!(
        cxone.access_key_secret.expose_secret(),
        "acme-access-key-secret"
    );
    assert_eq!(cxone.client_auth, ClientAuth::Basic);
    assert_eq!(cxone.api_version, "v30.0");
    assert_eq!(cxone.api_endpoint, None);
    assert_eq!((cxone.page_size, cxone.max_pages), (1000, 50));
    assert_eq!(cxone.http.timeout, Duration::from_secs(30));
    assert_eq!(cxone.http.max_retries, 3);
    assert_eq!(cxone.http.initial_backoff, Duration::from_millis(500));
    assert_eq!(cxone.http.max_backoff, Duration::from_secs(30));
    assert_eq!(cxone.http.requests_per_second, None);
    assert_eq!(cxone.http.quota_requests, 600);
    assert_eq!(cxone.http.quota_window, Duration::from_secs(300));
    assert_eq!(cxone.http.max_concurrency, 4);
    assert!(!cxone.http.http1_only);

    let cognigy = &acme.cognigy;
    assert_eq!(cognigy.api_base_url, "https://api-app.cognigy.ai");
    assert_eq!(cognigy.odata_base_url, "https://odata-app.cognigy.ai/v2.4");
    assert_eq!(cognigy.api_key.expose_secret(), "acme-cognigy-key");
    assert_eq!(cognigy.project_id, "6601a2b3c4d5e6f708192a3b");
    assert_eq!(
        (cognigy.odata_page_size, cognigy.logs_page_size),
        (1000, 100)
    );
    assert_eq!(cognigy.max_pages, 500);
    assert_eq!(cognigy.date_literal, DateLiteral::Quoted);
    assert!(cognigy.end_of_keyset_500);
    assert!(cognigy.odata_select);
    assert_eq!(cognigy.http.requests_per_second, None);
    assert_eq!(cognigy.http.quota_requests, 1000);
    assert_eq!(cognigy.http.quota_window, Duration::from_secs(300));
    assert_eq!(cognigy.http.max_concurrency, 2);

    let rules = &acme.rules;
    assert_eq!(rules.bot_entry_points_of_contact, [3189288]);
    assert!(rules.bot_entry_skills.is_empty());
    assert_eq!(rules.handover_skills, [4001, 4002]);
    assert_eq!(rules.contact_id_field, 1);
    assert_eq!(rules.cognigy_lag_seconds, 900);
    assert_eq!(rules.handover_deadline_seconds, 15);
    assert_eq!(rules.bot_turn_timeout_ms, 10_000);
    assert_eq!(rules.correlation_window_seconds, 30);
    assert_eq!(rules.max_pending_seconds, 7200);
    // The example spells out the default patterns; they must be the same expressions.
    let patterns = &rules.log_patterns;
    assert_eq!(patterns.signaled.as_str(), DEFAULT_SIGNALED);
    assert_eq!(patterns.signal_error.as_str(), DEFAULT_SIGNAL_ERROR);
    assert_eq!(patterns.signal_status.as_str(), DEFAULT_SIGNAL_STATUS);
    assert_eq!(patterns.timeout_text.as_str(), DEFAULT_TIMEOUT_TEXT);
    assert_eq!(patterns.invalid_action.as_str(), DEFAULT_INVALID_ACTION);
    assert_eq!(patterns.node_ids.as_str(), DEFAULT_NODE_IDS);
    assert_eq!(
        patterns.missing_contact_id.as_str(),
        DEFAULT_MISSING_CONTACT_ID
    );

    let globex = &config.tenants[1];
    assert_eq!(
        globex.cxone.client_secret.expose_secret(),
        "globex-client-secret"
    );
    assert_eq!(
        globex.cxone.access_key_secret.expose_secret(),
        "globex-access-key-secret"
    );
    assert_eq!(globex.cognigy.api_key.expose_secret(), "globex-cognigy-key");
    assert_eq!(globex.cxone.client_auth, ClientAuth::Basic);
    assert_eq!(globex.cxone.api_version, "v30.0");
    assert_eq!((globex.cxone.page_size, globex.cxone.max_pages), (1000, 50));
    assert_eq!(
        globex.cxone.http.requests_per_second,
        HttpSettings::cxone_default().requests_per_second
    );
    // One trailing slash is stripped from base URLs.
    assert_eq!(globex.cognigy.api_base_url, "https://api-trial.cognigy.ai");
    assert_eq!(
        globex.cognigy.odata_base_url,
        "https://odata-trial.cognigy.ai/v2.4"
    );
    assert_eq!(
        (
            globex.cognigy.odata_page_size,
            globex.cognigy.logs_page_size
        ),
        (1000, 100)
    );
    assert_eq!(globex.cognigy.date_literal, DateLiteral::Quoted);
    assert!(globex.cognigy.end_of_keyset_500);
    assert!(globex.cognigy.odata_select);
    let cognigy_http = &globex.cognigy.http;
    assert_eq!(
        (cognigy_http.quota_requests, cognigy_http.quota_window),
        (1000, Duration::from_secs(300)),
        "Cognigy's documented default quota"
    );
    assert_eq!(
        cognigy_http.requests_per_second,
        HttpSettings::cognigy_default().requests_per_second
    );
    assert_eq!(globex.rules.contact_id_field, 1);
    assert!(globex.rules.handover_skills.is_empty());
    assert_eq!(globex.rules.cognigy_lag_seconds, 900);
    assert_eq!(
        globex.rules.log_patterns.signaled.as_str(),
        DEFAULT_SIGNALED
    );
}

/// Top-level defaults: state path, intervals, and the cycle deadline following the poll interval.
#[test]
fn top_level_defaults() {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("minimal.toml")).expect("fixture");
    let config = config::parse(&text, "minimal.toml", &fixture_env).expect("minimal is valid");
    assert_eq!(config.state_path, "handover-exporter.db");
    assert_eq!(config.poll_interval, Duration::from_secs(60));
    assert_eq!(config.cycle_deadline, Duration::from_secs(60));
    assert_eq!(config.overlap, Duration::from_secs(300));
    assert_eq!(config.settle, Duration::from_secs(60));
    assert_eq!(config.retention, Duration::from_secs(48 * 3600));
    assert_eq!(config.initial_lookback, Duration::from_secs(23 * 3600));
    // Secrets from the environment are trimmed like file contents.
    let cxone = &config.tenants[0].cxone;
    assert_eq!(
        cxone.access_key_secret.expose_secret(),
        "env-access-key-secret"
    );

    let text = format!("poll_interval_seconds = 15\n{text}");
    let config = config::parse(&text, "minimal.toml", &fixture_env).expect("still valid");
    assert_eq!(config.cycle_deadline, Duration::from_secs(15));
}

/// A relative `*_file` path is read from the configuration file's directory, and trimmed.
#[test]
fn relative_secret_file_resolves_against_the_config_directory() {
    let config = load_fixture("relative_secret_file.toml").expect("valid");
    let secret = &config.tenants[0].cxone.client_secret;
    assert_eq!(secret.expose_secret(), "file-client-secret");
}

/// `Debug` of a whole configuration shows no secret, from a file or from the environment.
#[test]
fn debug_output_contains_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = example_config(dir.path());
    let debug = format!("{config:?}");
    for secret in [
        "acme-client-secret",
        "acme-access-key-secret",
        "acme-cognigy-key",
        "globex-client-secret",
        "globex-access-key-secret",
        "globex-cognigy-key",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug output");
    }
    assert!(
        debug.contains("REDACTED"),
        "secrets are shown as redacted: {debug}"
    );
    assert!(debug.contains("acme"), "the rest is still printed");
}

/// A URL carrying a password is refused without echoing the password.
#[test]
fn url_with_credentials_is_refused_without_echoing_them() {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("minimal.toml")).expect("fixture");
    let text = text.replace(
        "https://odata-app.cognigy.ai/v2.4",
        "https://user:hunter2@odata-app.cognigy.ai/v2.4",
    );
    let error = config::parse(&text, "inline", &fixture_env).expect_err("refused");
    assert_eq!(
        error.to_string(),
        "inline: tenant[0] (acme).cognigy.odata_base_url: must not contain user credentials \
         (`@`); give secrets through the *_file or *_env keys"
    );
    assert_eq!(error.key(), "tenant[0] (acme).cognigy.odata_base_url");
}

/// `load` reports a missing configuration file with its path.
#[test]
fn load_reports_a_missing_file() {
    let error = config::load(Path::new("tests/fixtures/config/does_not_exist.toml"))
        .expect_err("no such file");
    assert_eq!(
        error.to_string(),
        "tests/fixtures/config/does_not_exist.toml: cannot read the configuration file: No such \
         file or directory (os error 2)"
    );
}

/// `load` (the process environment) reads the file and names it in errors.
#[test]
fn load_names_the_file_in_errors() {
    let error = config::load(&Path::new(FIXTURES).join("unknown_top_key.toml")).expect_err("bad");
    assert!(
        error.to_string().starts_with(
            "tests/fixtures/config/unknown_top_key.toml: pol_interval_seconds: unknown field \
             `pol_interval_seconds`"
        ),
        "{error}"
    );
}

/// Numbers given where a float is expected (`requests_per_second = 2`) are accepted.
#[test]
fn integer_requests_per_second_is_accepted() {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("minimal.toml")).expect("fixture");
    let text =
        format!("{text}\n[tenant.cognigy.http]\nrequests_per_second = 2\nhttp1_only = true\n");
    let config = config::parse(&text, "inline", &fixture_env).expect("valid");
    let http = &config.tenants[0].cognigy.http;
    assert_eq!(http.requests_per_second, Some(2.0));
    assert!(http.http1_only);
    // Keys not given in a partial [http] table keep the Cognigy defaults.
    assert_eq!(
        http.max_concurrency,
        HttpSettings::cognigy_default().max_concurrency
    );
}

/// A replay directory's `[rules]` table: given values, defaults for the rest, custom pattern.
#[test]
fn replay_rules_parse() {
    let path = Path::new(FIXTURES).join("replay_rules.toml");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let rules = config::parse_replay_rules(&text, "replay/config.toml").expect("valid");
    assert_eq!(rules.bot_entry_points_of_contact, [3189288]);
    assert!(rules.bot_entry_skills.is_empty());
    assert_eq!(rules.handover_skills, [4001]);
    assert_eq!(rules.contact_id_field, 3);
    assert_eq!(rules.handover_deadline_seconds, 20);
    assert_eq!(rules.cognigy_lag_seconds, 900);
    assert!(rules
        .log_patterns
        .missing_contact_id
        .is_match("contact id missing"));
    assert_eq!(rules.log_patterns.signaled.as_str(), DEFAULT_SIGNALED);
}

/// An unknown key in a replay `[rules]` table is refused, naming the key.
#[test]
fn replay_rules_reject_unknown_key() {
    let path = Path::new(FIXTURES).join("replay_unknown_key.toml");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let error = config::parse_replay_rules(&text, &path.display().to_string()).expect_err("bad");
    assert_eq!(
        error.to_string(),
        "tests/fixtures/config/replay_unknown_key.toml: rules.handover_skill: unknown field \
         `handover_skill`, expected one of `bot_entry_points_of_contact`, `bot_entry_skills`, \
         `handover_skills`, `contact_id_field`, `cognigy_lag_seconds`, \
         `handover_deadline_seconds`, `bot_turn_timeout_ms`, `correlation_window_seconds`, \
         `max_pending_seconds`, `log_patterns` (line 4, column 1)"
    );
}

/// A replay `config.toml` written like a daemon config (`[tenant.rules]`) is refused.
#[test]
fn replay_rules_reject_tenant_table() {
    let path = Path::new(FIXTURES).join("replay_tenant_table.toml");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let error = config::parse_replay_rules(&text, "replay/config.toml").expect_err("bad");
    assert_eq!(
        error.to_string(),
        "replay/config.toml: tenant: unknown field `tenant`, expected `rules` (line 2, column 2)"
    );
}

/// Replay rules are validated by the same code as tenant rules (here: the custom field check).
#[test]
fn replay_rules_are_validated_like_tenant_rules() {
    let error = config::parse_replay_rules("[rules]\ncontact_id_field = \"custom0\"\n", "r.toml")
        .expect_err("bad");
    assert_eq!(
        error.to_string(),
        "r.toml: rules.contact_id_field: must be one of `custom1` .. `custom10`, got `custom0`"
    );
    let error = config::parse_replay_rules(
        "[rules.log_patterns]\nsignal_status = \"error (\\\\d+)\"\n",
        "r.toml",
    )
    .expect_err("bad");
    assert_eq!(
        error.to_string(),
        "r.toml: rules.log_patterns.signal_status: must contain the named group `(?P<status>...)`"
    );
}

/// A secret file that is a FIFO or a device is refused without being read (no hang, no
/// unbounded read), and one over 64 KiB is refused; each error names the key and the file.
#[cfg(unix)]
#[test]
fn secret_files_must_be_small_regular_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let big = dir.path().join("big");
    std::fs::write(&big, "x".repeat(64 * 1024 + 1)).expect("write");
    let minimal =
        std::fs::read_to_string(Path::new(FIXTURES).join("minimal.toml")).expect("fixture");
    for (path, says) in [
        (fifo.clone(), "is not a regular file (it is a FIFO)"),
        (
            Path::new("/dev/zero").to_path_buf(),
            "is not a regular file (it is a device)",
        ),
        (big.clone(), "is larger than 65536 bytes"),
    ] {
        let text = minimal.replace(
            "client_secret_env = \"CLIENT_SECRET\"",
            &format!("client_secret_file = {:?}", path.display().to_string()),
        );
        let started = std::time::Instant::now();
        let err = config::parse(&text, "minimal.toml", &fixture_env)
            .expect_err("refused")
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
        assert!(err.contains("cxone.client_secret_file"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

/// Tenants on one API host share its budget: the same budget is accepted, a different one is
/// refused naming both tenants and the host; a host's default port is the same host.
#[test]
fn tenants_on_one_host_must_agree_on_its_budget() {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("minimal.toml")).expect("fixture");
    let second = text
        .replace(
            "# VALID: only the required keys, for the other fixtures to vary\n",
            "",
        )
        .replace("name = \"acme\"", "name = \"beta\"")
        .replace(
            "api_base_url = \"https://api-app.cognigy.ai\"",
            "api_base_url = \"https://api-app.cognigy.ai:443/\"",
        );
    let same = format!("{text}\n{second}");
    let config = config::parse(&same, "inline", &fixture_env).expect("same budget is valid");
    assert_eq!(
        config.tenants[0].cognigy_budget_host(),
        config.tenants[1].cognigy_budget_host()
    );
    let differs = format!(
        "{text}\n{}",
        second.replace(
            "\n[tenant.rules]",
            "\n[tenant.cognigy.http]\nquota_requests = 2000\n\n[tenant.rules]"
        )
    );
    let error = config::parse(&differs, "inline", &fixture_env)
        .expect_err("a different budget for the same host")
        .to_string();
    assert_eq!(
        error,
        "inline: tenant[1] (beta).cognigy.http.quota_requests: is 2000, but tenant[0] (acme) \
         uses the same API host https://api-app.cognigy.ai with 1000; tenants on one host share \
         one budget, so set it alike"
    );
}
