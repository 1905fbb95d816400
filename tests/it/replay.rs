//! `diagnose --replay` end to end through the real binary, on a replay directory written from the
//! example payloads of ../shared/api/.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay/api-examples")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_handover-exporter"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (contact id, outcome, failure, reason) per JSON line.
fn outcomes(stdout: &str) -> Vec<(i64, String, Option<String>, String)> {
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            (
                v["contact_id"].as_i64().expect("contact_id"),
                v["outcome"].as_str().expect("outcome").to_owned(),
                v["failure"].as_str().map(str::to_owned),
                v["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn expected() -> Vec<(i64, String, Option<String>, String)> {
    let row = |id: i64, outcome: &str, failure: Option<&str>, reason: &str| {
        (
            id,
            outcome.to_owned(),
            failure.map(str::to_owned),
            reason.to_owned(),
        )
    };
    vec![
        row(
            700123456780,
            "failed",
            Some("invalid_handover"),
            "signal_rejected",
        ),
        row(
            700200000010,
            "failed",
            Some("invalid_handover"),
            "transfer_rejected",
        ),
        row(700300000020, "contained", None, "bot_completed"),
        row(
            700400000030,
            "failed",
            Some("missing_context"),
            "no_bot_session",
        ),
        row(
            700500000040,
            "failed",
            Some("missing_context"),
            "no_contact_id",
        ),
        row(700600000050, "handed_over", None, "agent_answered"),
        row(700800000070, "failed", Some("timeout"), "bot_turn_slow"),
        row(712345678900, "abandoned", None, "in_queue"),
    ]
}

/// Every contact of the API-examples replay gets its expected outcome; the non-bot contact is
/// not reported; a failure was found, so the exit code is 1.
#[test]
fn replay_gives_expected_outcome_per_contact() {
    let dir = fixture_dir();
    let (code, stdout, stderr) = run(&[
        "diagnose",
        "--replay",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(outcomes(&stdout), expected());
}

/// The JSON lines carry the evidence that decided each outcome (match kind, decisive log line).
#[test]
fn replay_json_carries_evidence() {
    let dir = fixture_dir();
    let (_, stdout, _) = run(&[
        "diagnose",
        "--replay",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["evidence"]["match_kind"], "custom_field");
    assert_eq!(
        first["evidence"]["session_id"],
        "2f0c9a64-3b1e-4d7a-9a55-7f1c2e3d4b5a"
    );
    let decided = first["evidence"]["decided_by"][0]["detail"]
        .as_str()
        .unwrap();
    assert!(decided.contains("404: Not Found"), "{decided}");
}

/// The text report names the outcome, the reason in plain words, the evidence and the state history.
#[test]
fn replay_text_report_is_readable() {
    let dir = fixture_dir();
    let (code, stdout, _) = run(&["diagnose", "--replay", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("contact 712345678900: abandoned / in_queue (rule 10)"),
        "{stdout}"
    );
    assert!(stdout.contains("the caller hung up while waiting in the agent queue"));
    assert!(stdout.contains("matched by sip_header"));
    assert!(stdout.contains("state history:"));
    assert!(stdout.contains("InQueue"));
}

/// Old-generation CXone fields (`contactStart`, `fromAddr`, string numbers) give the same diagnosis.
#[test]
fn old_generation_fields_give_same_diagnosis() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), tmp.path());
    for page in ["contacts-completed-001.json", "contacts-completed-002.json"] {
        std::fs::remove_file(tmp.path().join("cxone").join(page)).unwrap();
    }
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cxone/contacts-completed-old-generation.json"),
        tmp.path().join("cxone/contacts-completed-old.json"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[
        "diagnose",
        "--replay",
        tmp.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(outcomes(&stdout), expected());
}

/// A truncated JSON file is reported with its path, exit 2, and the other files are still used.
#[test]
fn truncated_file_is_named_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), tmp.path());
    let logs = tmp.path().join("cognigy/logs-001.json");
    let text = std::fs::read_to_string(&logs).unwrap();
    std::fs::write(&logs, &text[..text.len() / 2]).unwrap();
    let (code, stdout, stderr) = run(&[
        "diagnose",
        "--replay",
        tmp.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cognigy/logs-001.json"), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    assert_eq!(
        outcomes(&stdout).len(),
        8,
        "the other files were still used"
    );
}

/// A directory without cxone/ or cognigy/ is an error naming it, exit 2.
#[test]
fn not_a_replay_directory_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(&["diagnose", "--replay", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("neither a cxone/ nor a cognigy/ folder"),
        "{stderr}"
    );
}

/// A replay where every bot contact succeeded exits 0.
#[test]
fn no_failure_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), tmp.path());
    // Keep only the contained and the handed-over calls.
    let keep = [700300000020_i64, 700600000050];
    for page in ["contacts-completed-001.json", "contacts-completed-002.json"] {
        let path = tmp.path().join("cxone").join(page);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let contacts = v["completedContacts"].as_array_mut().unwrap();
        contacts.retain(|c| keep.contains(&c["masterContactId"].as_i64().unwrap()));
        std::fs::write(&path, v.to_string()).unwrap();
    }
    let (code, stdout, stderr) = run(&[
        "diagnose",
        "--replay",
        tmp.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(outcomes(&stdout).len(), 2);
}

/// A bad `config.toml` in the replay names the file and key, exit 2.
#[test]
fn bad_replay_config_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), tmp.path());
    std::fs::write(
        tmp.path().join("config.toml"),
        "[rules]\nhandover_deadline = 3\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["diagnose", "--replay", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("config.toml"), "{stderr}");
    assert!(stderr.contains("handover_deadline"), "{stderr}");
}

/// The readable report of one contact, pinned as a snapshot (a change to the wording or the
/// evidence shows up in review as a snapshot diff).
#[test]
fn text_report_snapshot() {
    let data = handover_exporter::replay::read_dir(&fixture_dir()).unwrap();
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    let diagnoses = handover_exporter::replay::diagnose_data(&data);
    let d = diagnoses
        .iter()
        .find(|d| d.contact_id == 712345678900)
        .expect("the in-queue contact is diagnosed");
    let history = data.state_history.get(&712345678900);
    insta::assert_snapshot!(handover_exporter::report::text(d, history));
}

/// Runs `diagnose --replay` (JSON) on a copy of the fixture changed by `change`; returns the exit
/// code, the number of contacts still diagnosed and stderr.
fn run_changed(change: impl FnOnce(&Path)) -> (i32, usize, String) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), tmp.path());
    change(tmp.path());
    let (code, stdout, stderr) = run(&[
        "diagnose",
        "--replay",
        tmp.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    (code, outcomes(&stdout).len(), stderr)
}

/// A file holding JSON that is not the envelope its name promises (`{}`, `[]`, another API's
/// envelope) is an error naming the file, exit 2, and the other files are still diagnosed.
#[test]
fn wrong_envelopes_exit_2_naming_the_file() {
    for (file, body) in [
        ("cxone/contacts-completed-900.json", "{}"),
        ("cxone/contacts-completed-900.json", "[]"),
        ("cxone/contacts-completed-900.json", r#"{"foo":1}"#),
        ("cxone/contacts-completed-900.json", r#"{"value":[]}"#),
        ("cxone/contacts-completed-900.json", r#"{"resultSet":{}}"#),
        ("cxone/contacts-completed-900.json", ""),
        ("cognigy/Sessions-900.json", r#"{"items":[]}"#),
        ("cognigy/Conversations-900.json", "{}"),
        ("cognigy/Analytics-900.json", "[]"),
        ("cognigy/logs-900.json", r#"{"value":[]}"#),
        ("cxone/state-history/700123456780.json", "{}"),
    ] {
        let (code, diagnosed, stderr) = run_changed(|dir| {
            std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
            std::fs::write(dir.join(file), body).unwrap();
        });
        assert_eq!(code, 2, "{file} = {body:?}: {stderr}");
        assert!(stderr.contains(file), "{file} = {body:?}: {stderr}");
        assert!(stderr.contains("expected"), "{file} = {body:?}: {stderr}");
        assert_eq!(
            diagnosed, 8,
            "{file} = {body:?}: the other files were still used"
        );
    }
}

/// A change made to a copy of the fixture directory.
type Change = Box<dyn Fn(&Path)>;

/// Entries that cannot be read as files (a symbolic-link loop, a dangling link, a FIFO, a
/// directory, a name that is not UTF-8) and an unreadable `config.toml` are each an error naming
/// the entry, exit 2, and the rest is still diagnosed.
#[cfg(unix)]
#[test]
fn unreadable_entries_exit_2_naming_them() {
    use std::os::unix::ffi::OsStrExt as _;
    let fifo = |path: &Path| {
        let status = Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
    };
    let cases: Vec<(&str, Change)> = vec![
        (
            "cxone/contacts-completed-loop.json",
            Box::new(|dir: &Path| {
                let a = dir.join("cxone/contacts-completed-loop.json");
                let b = dir.join("cxone/other-loop.json");
                std::os::unix::fs::symlink(&b, &a).unwrap();
                std::os::unix::fs::symlink(&a, &b).unwrap();
            }),
        ),
        (
            "cognigy/Sessions-dangling.json",
            Box::new(|dir: &Path| {
                std::os::unix::fs::symlink(
                    dir.join("nowhere.json"),
                    dir.join("cognigy/Sessions-dangling.json"),
                )
                .unwrap();
            }),
        ),
        (
            "cognigy/logs-fifo.json",
            Box::new(move |dir: &Path| fifo(&dir.join("cognigy/logs-fifo.json"))),
        ),
        (
            "cognigy/Analytics-dir.json",
            Box::new(|dir: &Path| {
                std::fs::create_dir(dir.join("cognigy/Analytics-dir.json")).unwrap()
            }),
        ),
        (
            "cognigy/Sessions-",
            Box::new(|dir: &Path| {
                let name = std::ffi::OsStr::from_bytes(b"Sessions-\xff.json");
                std::fs::write(dir.join("cognigy").join(name), "{\"value\":[]}").unwrap();
            }),
        ),
        (
            "config.toml",
            Box::new(|dir: &Path| {
                std::fs::remove_file(dir.join("config.toml")).unwrap();
                std::os::unix::fs::symlink(dir.join("gone.toml"), dir.join("config.toml")).unwrap();
            }),
        ),
        (
            "config.toml",
            Box::new(move |dir: &Path| {
                std::fs::remove_file(dir.join("config.toml")).unwrap();
                fifo(&dir.join("config.toml"));
            }),
        ),
    ];
    for (name, change) in cases {
        let (code, diagnosed, stderr) = run_changed(change);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(
            diagnosed > 0,
            "{name}: the rest was not diagnosed: {stderr}"
        );
    }
}
