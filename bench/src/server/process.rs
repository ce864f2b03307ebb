//! The server under test: `purser serve` as a child process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A fixed license signing key, so the server writes no key file.
const SIGNING_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(super) struct Server {
    child: tokio::process::Child,
    pub(super) addr: SocketAddr,
    pub(super) pid: u32,
    pub(super) errors: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub(super) async fn start(
        exe: &Path,
        database_url: &str,
        jwt_secret: &str,
    ) -> anyhow::Result<Server> {
        let mail = crate::mail::start_sink().await?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("PURSER_HTTP_ADDR", "127.0.0.1:0")
            // The load comes from one address on purpose.
            .env("PURSER_RATE_LIMIT_PER_SEC", "0")
            .env("PURSER_JWT_SECRET", jwt_secret)
            .env("PURSER_LICENSE_SIGNING_KEY", SIGNING_KEY)
            .env("PURSER_SMTP_HOST", mail.ip().to_string())
            .env("PURSER_SMTP_PORT", mail.port().to_string())
            .env("PURSER_LOG", "warn,purser::app=info")
            .env("PURSER_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = vec![];
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let fields = if v.get("fields").is_some() {
                        &v["fields"]
                    } else {
                        &v
                    };
                    if fields["message"] == "purser is serving"
                        && let Some(a) = fields["addr"].as_str()
                    {
                        return Ok(a.parse::<SocketAddr>()?);
                    }
                }
                seen.push(line);
            }
            Err::<SocketAddr, anyhow::Error>(anyhow!(
                "the server exited before serving:\n{}",
                seen.join("\n")
            ))
        })
        .await
        .map_err(|_| anyhow!("the server did not start serving within a minute"))??;
        // Keep reading its log (so it never blocks on a full pipe); keep its errors.
        let errors = Arc::new(Mutex::new(vec![]));
        tokio::spawn({
            let errors = errors.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("\"ERROR\"") {
                        let mut e = errors.lock().expect("lock");
                        if e.len() < 20 {
                            e.push(line);
                        }
                    }
                }
            }
        });
        Ok(Server {
            child,
            addr,
            pid,
            errors,
        })
    }

    /// Peak resident set size so far, in MB (10^6 bytes).
    pub(super) fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("cannot read the server's /proc status")?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .context("no VmHWM in the server's /proc status")?;
        Ok(kb * 1024.0 / 1e6)
    }

    pub(super) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
