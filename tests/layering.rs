//! The crates stack in one line, as ARCHITECTURE.md's layer table says: this test reads that
//! table and every crate's `[dependencies]`, so neither the code nor the document can drift
//! from the other.
//!
//! Each row names a crate's folder, the Purser crates it may depend on, and crates it must
//! never depend on. Only normal dependencies count: tests may use anything. An optional
//! dependency (a cargo feature) is allowed past the "never" column, because a default build
//! does not link it; that is how the binary keeps the benchmark's baselines out.

use std::collections::BTreeSet;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Row {
    dir: String,
    may: BTreeSet<String>,
    never: Vec<String>,
}

/// The rows of the table under "## Layers" in ARCHITECTURE.md.
fn layer_table() -> Vec<Row> {
    let doc = std::fs::read_to_string(format!("{ROOT}/ARCHITECTURE.md")).unwrap();
    let section = doc
        .split("\n## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let names = |cell: &str| -> Vec<String> {
        cell.split(',')
            .map(|s| s.trim().trim_matches('`').to_owned())
            .filter(|s| !s.is_empty() && s != "—")
            .collect()
    };
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 3, "a layer row has three cells: {line}");
            Row {
                // The folder is the first `code` span of the first cell.
                dir: cells[0]
                    .split('`')
                    .nth(1)
                    .unwrap()
                    .trim_end_matches('/')
                    .to_owned(),
                may: names(cells[1]).into_iter().collect(),
                never: names(cells[2]),
            }
        })
        .collect()
}

/// (name, optional) of every normal dependency of the crate in `dir`.
fn dependencies(dir: &str) -> Vec<(String, bool)> {
    let manifest = std::fs::read_to_string(format!("{ROOT}/{dir}/Cargo.toml")).unwrap();
    let Some(section) = manifest.split("\n[dependencies]").nth(1) else {
        return vec![];
    };
    section
        .split("\n[")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let name = l.split(['=', '.', ' ']).next().unwrap().trim().to_owned();
            (name, l.contains("optional = true"))
        })
        .collect()
}

fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap();
    let list = manifest
        .split("members = [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    let mut members: Vec<String> = list
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    members.push(".".to_owned());
    members
}

#[test]
fn every_crate_depends_only_on_what_the_layer_table_allows() {
    let table = layer_table();
    let listed: BTreeSet<&str> = table.iter().map(|r| r.dir.as_str()).collect();
    for member in workspace_members() {
        assert!(
            listed.contains(member.as_str()),
            "the crate in {member}/ has no row in ARCHITECTURE.md's layer table"
        );
    }
    for row in &table {
        for (dep, optional) in dependencies(&row.dir) {
            if dep.starts_with("purser-") {
                assert!(
                    row.may.contains(&dep),
                    "{}/ depends on {dep}, which its layer row does not allow",
                    row.dir
                );
            }
            if !optional {
                assert!(
                    !row.never.contains(&dep),
                    "{}/ must never depend on {dep}",
                    row.dir
                );
            }
        }
    }
}

#[test]
fn the_two_api_halves_never_depend_on_each_other() {
    let names = |dir: &str| -> Vec<String> { dependencies(dir).into_iter().map(|d| d.0).collect() };
    assert!(!names("command-api").contains(&"purser-query-api".to_owned()));
    assert!(!names("query-api").contains(&"purser-command-api".to_owned()));
}
