use std::path::Path;
fn env(name: &str) -> Option<String> {
    match name {
        "CLIENT_SECRET" => Some("env-client-secret".into()),
        "ACCESS_KEY_SECRET" => Some("env-access-key-secret".into()),
        "COGNIGY_API_KEY" => Some("env-cognigy-api-key".into()),
        "EMPTY_ACCESS_KEY_SECRET" => Some("  \n".into()),
        _ => None,
    }
}
#[test]
fn probe() {
    let mut names: Vec<_> = std::fs::read_dir("tests/fixtures/config").unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    names.sort();
    for p in names {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("replay") {
            let text = std::fs::read_to_string(&p).unwrap();
            println!("{name}: {:?}", handover_exporter::config::parse_replay_rules(&text, &p.display().to_string()).map(|_| ()).map_err(|e| e.to_string()));
        } else {
            println!("{name}: {:?}", handover_exporter::config::load_with_env(Path::new(&p), &env).map(|_| ()).map_err(|e| e.to_string()));
        }
    }
}
