//! `--config.check` through the real binary: exit 0 on a valid file, exit 2 with the message
//! naming the key on every invalid fixture of `tests/fixtures/config/`.

use handover_exporter::config;
use std::path::Path;
use std::process::Command;

const FIXTURES: &str = "tests/fixtures/config";

/// The environment the fixtures expect (as in tests/config.rs), set on the child process only.
const ENV: &[(&str, &str)] = &[
    ("CLIENT_SECRET", "env-client-secret"),
    ("ACCESS_KEY_SECRET", "env-access-key-secret\n"),
    ("COGNIGY_API_KEY", "env-cognigy-api-key"),
    ("EMPTY_ACCESS_KEY_SECRET", "  \n"),
];

fn fixture_env(name: &str) -> Option<String> {
    ENV.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn check(path: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_handover-exporter"));
    cmd.args(["--config.check", "--config.file", path.to_str().unwrap()])
        .env_remove("UNSET_ACCESS_KEY_SECRET");
    for (k, v) in ENV {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A valid file passes `--config.check` with exit 0.
#[test]
fn valid_config_exits_0() {
    let (code, stdout, stderr) = check(&Path::new(FIXTURES).join("minimal.toml"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("configuration is valid (1 tenant(s))"),
        "{stdout}"
    );
}

/// Every invalid fixture exits 2, printing exactly the library's message, which names the key.
#[test]
fn every_invalid_fixture_exits_2_naming_the_key() {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if name == "minimal" || name == "relative_secret_file" || name.starts_with("replay_") {
            continue;
        }
        let expected = match config::load_with_env(&path, &fixture_env) {
            Ok(_) => panic!("{name} is valid; list it as such"),
            Err(e) => e,
        };
        let (code, stdout, stderr) = check(&path);
        assert_eq!(code, 2, "{name}: {stdout}{stderr}");
        assert_eq!(stderr.trim_end(), format!("error: {expected}"), "{name}");
        let key = expected.key();
        if !key.is_empty() {
            assert!(
                stderr.contains(key),
                "{name}: message does not name the key {key}: {stderr}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} invalid fixtures found");
}
