//! Starting Purser for end-to-end tests: in-process on port 0 (`spawn_app`), or as the real
//! binary (`Binary`). Each gets a fresh, migrated database of its own.

#![allow(dead_code, unreachable_pub)]

pub mod amqp;
pub mod shop;
pub mod smtp;
pub mod ws;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use purser::app::{Role, Running};
use purser::config::Config;
use purser_testkit::TestDb;
use serde_json::{Value, json};

/// A running in-process app and its database.
pub struct TestApp {
    pub running: Option<Running>,
    pub addr: std::net::SocketAddr,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub role: Role,
    pub extra: Vec<(String, String)>,
}

/// The JWT secret every test app and binary shares, so tokens work across restarts.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0001";

pub fn config_for(db: &TestDb, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("DATABASE_URL".into(), db.url());
    vars.insert("PURSER_HTTP_ADDR".into(), "127.0.0.1:0".into());
    vars.insert("PURSER_DB_POOL_SIZE".into(), "8".into());
    vars.insert("PURSER_JWT_SECRET".into(), TEST_JWT_SECRET.into());
    // A fixed signing key, so licenses verify across restarts and no file is written.
    vars.insert(
        "PURSER_LICENSE_SIGNING_KEY".into(),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
    );
    vars.insert("PURSER_RETRY_BASE_MS".into(), "20".into());
    // Tests drive one server hard from one address; the rate limit has a test of its own.
    vars.insert("PURSER_RATE_LIMIT_PER_SEC".into(), "0".into());
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test config is valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Role::All, &[]).await
}

pub async fn spawn_app_with(role: Role, extra: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new().await;
    let running = purser::app::start(config_for(&db, extra), role)
        .await
        .expect("app starts");
    let addr = running.addr;
    TestApp {
        running: Some(running),
        addr,
        db,
        http: reqwest::Client::new(),
        role,
        extra: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Posts a GraphQL request and returns the JSON body (whatever the status).
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON body")
    }

    /// The `/metrics` page, as Prometheus text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("a text body")
    }

    /// Waits until whatever serves `self.addr` (this app, or a binary it was pointed at)
    /// answers `/ready` with 200.
    pub async fn wait_until_ready(&self) {
        wait_until_ready(&self.http, self.addr).await;
    }

    pub fn services(&self) -> &purser::services::Services {
        &self.running.as_ref().expect("running").services
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean shutdown");
        }
    }

    /// Stops and starts again on the same database (a restart).
    pub async fn restart(&mut self) {
        self.stop().await;
        let extra: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let running = purser::app::start(config_for(&self.db, &extra), self.role)
            .await
            .expect("app restarts");
        self.addr = running.addr;
        self.running = Some(running);
    }

    /// Posts a GraphQL request with a bearer token.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.http
            .post(self.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON body")
    }

    /// Creates (once) an account with these roles and signs it in.
    pub async fn token_for(&self, email: &str, roles: &[purser_domain::customer::Role]) -> String {
        purser::users::ensure_user(
            self.services(),
            email,
            "correct horse battery",
            "Test",
            roles,
        )
        .await
        .expect("user created");
        let r = self
            .graphql(
                "mutation($e: String!) { customerLogin(input: {email: $e, password: \"correct horse battery\"}) { token userErrors { code } } }",
                json!({ "e": email }),
            )
            .await;
        r["data"]["customerLogin"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login failed: {r}"))
            .to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token_for("admin@purser.test", &[purser_domain::customer::Role::Admin])
            .await
    }

    /// Waits until every projection has caught up with the whole log as it is now.
    pub async fn settle(&self) {
        let s = self.services();
        let head = s
            .store
            .last_committed()
            .await
            .unwrap()
            .map(|h| h.position)
            .unwrap_or_default();
        // The projections this process runs (the others would never move).
        let mut names = Vec::new();
        if self.role.runs_projectors() {
            names.extend(s.projector().names());
        }
        if self.role.runs_command_side() {
            names.extend(s.command_projector().names());
        }
        if !s
            .checkpoints
            .wait_for(&names, head, Duration::from_secs(30))
            .await
            .unwrap()
        {
            let at = s.checkpoints.all().await.unwrap();
            panic!("projections did not catch up with {head}: {at:#?}");
        }
    }
}

/// The real `purser` binary, as a child process.
pub struct Binary {
    pub child: Child,
}

pub fn purser_command(db_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_purser"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("PURSER_HTTP_ADDR", "127.0.0.1:0")
        // As the in-process apps: tests run side by side on one Postgres, whose default
        // max_connections (100) several 16-connection processes would exhaust.
        .env("PURSER_DB_POOL_SIZE", "8")
        .env("PURSER_RATE_LIMIT_PER_SEC", "0")
        .env(
            "PURSER_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null());
    cmd
}

impl Binary {
    pub fn spawn(mut cmd: Command) -> Binary {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("purser starts");
        Binary { child }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command that is expected to end, failing the test if it takes longer than `limit`.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the command hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 30 s) until the server at `addr` answers `/ready` with 200.
pub async fn wait_until_ready(http: &reqwest::Client, addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("http://{addr}/ready"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(tokio::time::Instant::now() < deadline, "{addr} never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of every sample of the Prometheus metric `name` whose labels include all of
/// `labels` (other labels split a series into several lines), or None if there is none.
pub fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}
