//! The deployment files parse and agree with the code: docker-compose.yml (both profiles),
//! the Prometheus and Grafana provisioning, and the Grafana dashboard, whose every metric
//! must be one the code exports. Docker is not needed: this is the "YAML check in CI".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_yaml(rel: &str) -> Yaml {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel} holds one document");
    docs.remove(0)
}

/// A mapping value, following YAML merge keys (`<<: *anchor`), as Compose does.
fn get<'a>(map: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    let h = map.as_hash()?;
    if let Some(v) = h.get(&Yaml::String(key.into())) {
        return Some(v);
    }
    match h.get(&Yaml::String("<<".into()))? {
        Yaml::Array(bases) => bases.iter().find_map(|b| get(b, key)),
        base => get(base, key),
    }
}

#[test]
fn the_compose_file_is_well_formed_and_refers_only_to_what_exists() {
    let compose = load_yaml("docker-compose.yml");
    let services = get(&compose, "services")
        .and_then(Yaml::as_hash)
        .expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    for required in [
        "postgres",
        "kurrentdb",
        "purser",
        "prometheus",
        "grafana",
        "proxy",
        "postgres-replica",
        "kurrentdb-1",
        "kurrentdb-2",
        "kurrentdb-3",
    ] {
        assert!(names.contains(required), "no {required} service: {names:?}");
    }
    let volumes: BTreeSet<&str> = get(&compose, "volumes")
        .and_then(Yaml::as_hash)
        .map(|v| v.keys().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    let mut roles = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        assert!(
            get(svc, "image").is_some() || get(svc, "build").is_some(),
            "{name} has neither image nor build"
        );
        // depends_on names real services, as a list or a map.
        if let Some(deps) = get(svc, "depends_on") {
            let deps: Vec<&str> = match deps {
                Yaml::Array(a) => a.iter().filter_map(Yaml::as_str).collect(),
                Yaml::Hash(h) => h.keys().filter_map(Yaml::as_str).collect(),
                other => panic!("{name}: depends_on is {other:?}"),
            };
            for d in deps {
                assert!(names.contains(d), "{name} depends on unknown {d}");
            }
        }
        // Bind mounts point at files in the repository; named volumes are declared.
        for v in get(svc, "volumes")
            .and_then(Yaml::as_vec)
            .into_iter()
            .flatten()
        {
            let spec = v.as_str().unwrap_or_else(|| panic!("{name}: volume {v:?}"));
            let source = spec.split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    root().join(source).exists(),
                    "{name} mounts {source}, which does not exist"
                );
            } else if !source.starts_with('/') {
                assert!(
                    volumes.contains(source),
                    "{name} uses undeclared volume {source}"
                );
            }
        }
        if let Some(first) = get(svc, "command")
            .and_then(Yaml::as_vec)
            .and_then(|cmd| cmd.first())
            .and_then(Yaml::as_str)
        {
            roles.push(first.to_owned());
        }
    }
    // The scale profile runs each role as its own process.
    for role in ["command-api", "projector", "query-api"] {
        assert!(
            roles.iter().filter(|r| *r == role).count() >= 2,
            "two {role} processes: {roles:?}"
        );
    }
}

/// The KurrentDB services count as healthy only with a leader (or, in the cluster, as a
/// follower of one), run without AtomPub, and Purser comes back when it fails.
#[test]
fn kurrentdb_services_wait_for_a_leader_and_purser_restarts() {
    let compose = load_yaml("docker-compose.yml");
    let services = get(&compose, "services").expect("services");
    for name in ["kurrentdb", "kurrentdb-1", "kurrentdb-2", "kurrentdb-3"] {
        let svc = get(services, name).unwrap_or_else(|| panic!("no {name}"));
        let check = get(svc, "healthcheck")
            .and_then(|h| get(h, "test"))
            .and_then(Yaml::as_vec)
            .map(|t| {
                t.iter()
                    .filter_map(Yaml::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| panic!("{name} has no healthcheck"));
        assert!(
            check.contains("/info") && check.contains("leader"),
            "{name} must wait for a leader: {check}"
        );
        let env = get(svc, "environment")
            .and_then(Yaml::as_hash)
            .expect("environment");
        let mut keys: Vec<&str> = env.keys().filter_map(Yaml::as_str).collect();
        if let Some(base) = env.get(&Yaml::String("<<".into())).and_then(Yaml::as_hash) {
            keys.extend(base.keys().filter_map(Yaml::as_str));
        }
        assert!(
            !keys.iter().any(|k| k.contains("ATOM_PUB")),
            "{name} enables AtomPub: {keys:?}"
        );
    }
    let purser = get(services, "purser").expect("purser");
    assert!(
        get(purser, "restart").and_then(Yaml::as_str).is_some(),
        "the purser service needs a restart policy"
    );
}

#[test]
fn monitoring_provisioning_parses_and_the_dashboard_uses_only_real_metrics() {
    let prometheus = load_yaml("deploy/prometheus/prometheus.yml");
    let jobs = get(&prometheus, "scrape_configs")
        .and_then(Yaml::as_vec)
        .expect("scrape_configs");
    assert!(!jobs.is_empty());
    for rel in [
        "deploy/grafana/provisioning/datasources/prometheus.yml",
        "deploy/grafana/provisioning/dashboards/purser.yml",
    ] {
        let y = load_yaml(rel);
        assert!(get(&y, "apiVersion").is_some(), "{rel} has an apiVersion");
    }

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/dashboards/purser.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    // The alert rules Prometheus loads query real metrics too.
    let alerts = load_yaml("deploy/prometheus/alerts.yml");
    let groups = get(&alerts, "groups")
        .and_then(Yaml::as_vec)
        .expect("alert groups");
    for rule in groups
        .iter()
        .filter_map(|g| get(g, "rules").and_then(Yaml::as_vec))
        .flatten()
    {
        let expr = get(rule, "expr")
            .and_then(Yaml::as_str)
            .expect("a rule has an expr");
        assert!(
            get(rule, "alert").is_some(),
            "{expr}: a rule names its alert"
        );
        exprs.push(expr.to_owned());
    }

    // Every metric the dashboard queries is named somewhere in the Rust sources.
    let mut sources = String::new();
    for dir in [
        "src",
        "command-api/src",
        "projections/src",
        "query-api/src",
        "event-store/src",
    ] {
        read_rs(&root().join(dir), &mut sources);
    }
    let mut missing = BTreeSet::new();
    for expr in &exprs {
        for metric in metric_names(expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| metric.strip_suffix(s))
                .unwrap_or(&metric);
            if !sources.contains(&format!("\"{base}\"")) {
                missing.insert(metric.clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard or the alert rules query metrics nothing exports: {missing:?}"
    );
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// `purser_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("purser_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            out.push(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

fn read_rs(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}
