//! The README's metrics table against what `/metrics` really exposes.

use handover_exporter::metrics::{Metrics, FAMILIES};

/// (name, type, labels) rows of the README's Metrics table.
fn readme_rows() -> Vec<(String, String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Metrics section");
    section
        .lines()
        .filter(|l| l.starts_with("| `handover_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let labels: Vec<&str> = cells[3]
                .split(',')
                .map(|s| s.trim().trim_matches('`'))
                .collect();
            (name, cells[2].to_owned(), labels.join(","))
        })
        .collect()
}

/// Every metric family (name, type, labels) is in the README table, and the table has no extra row.
#[test]
fn readme_metrics_table_matches_families() {
    let mut readme = readme_rows();
    let mut code: Vec<(String, String, String)> = FAMILIES
        .iter()
        .map(|(n, t, l)| (n.to_string(), t.to_string(), l.to_string()))
        .collect();
    readme.sort();
    code.sort();
    assert_eq!(readme, code);
}

/// Every family on `/metrics` (its `# TYPE` lines) has a README row.
#[test]
fn every_exposed_family_is_documented() {
    let names: Vec<String> = readme_rows().into_iter().map(|r| r.0).collect();
    let text = Metrics::new(&["acme".to_owned()], "test").encode();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        let documented = names.iter().any(|n| {
            n == family
                || n.strip_suffix("_total") == Some(family)
                || n.strip_suffix("_info") == Some(family)
        });
        assert!(documented, "{family} is on /metrics but not in the README");
    }
}
