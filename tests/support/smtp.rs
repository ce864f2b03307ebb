//! A small SMTP server for tests: real TCP on loopback, enough of RFC 5321 for what lettre
//! sends (greeting, EHLO/HELO, MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT),
//! and a store of every message received. It can be stopped (connections refused, the way a
//! mail server outage looks) and started again on the same port, keeping what it received.
//!
//! Also a little MIME reading ([`ReceivedMail::header`], [`ReceivedMail::text`]) so tests can
//! look into multipart messages whose parts are quoted-printable or base64.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (MAIL FROM), without angle brackets.
    pub from: String,
    /// The envelope recipients (RCPT TO).
    pub to: Vec<String>,
    /// The message data, dot-unstuffed, with CRLF line ends, without the final `.` line.
    pub data: String,
}

#[derive(Default)]
struct Inbox {
    mails: Mutex<Vec<ReceivedMail>>,
}

pub struct SmtpServer {
    port: u16,
    inbox: Arc<Inbox>,
    /// Bumped on every message received, so waiters need not poll.
    received: watch::Sender<usize>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

/// A loopback port that nothing listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpServer {
    /// Starts on an ephemeral port.
    pub async fn start() -> SmtpServer {
        SmtpServer::start_on(0).await
    }

    /// Starts on `port` (0: any).
    pub async fn start_on(port: u16) -> SmtpServer {
        let mut server = SmtpServer {
            port,
            inbox: Arc::new(Inbox::default()),
            received: watch::channel(0).0,
            running: None,
        };
        server.listen().await;
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    async fn listen(&mut self) {
        let socket = TcpSocket::new_v4().expect("socket");
        // Restarting on the same port must not trip over connections still in TIME_WAIT.
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        socket
            .bind(addr)
            .unwrap_or_else(|e| panic!("test SMTP server cannot bind {addr}: {e}"));
        let listener = socket.listen(128).expect("listen");
        self.port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let (inbox, received, token) = (self.inbox.clone(), self.received.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            let (inbox, received, token) = (inbox.clone(), received.clone(), token.clone());
                            sessions.spawn(async move {
                                tokio::select! {
                                    _ = token.cancelled() => {}
                                    _ = session(stream, inbox, received) => {}
                                }
                            });
                        }
                    }
                }
                // Reap finished sessions so the set does not grow without bound.
                while sessions.try_join_next().is_some() {}
            }
            // Dropping the listener closes the port; open sessions end with the token.
            drop(listener);
            while sessions.join_next().await.is_some() {}
        });
        self.running = Some((stop, task));
    }

    /// Stops listening and drops every open connection: from now on connections are refused.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            task.await.expect("the test SMTP server stops cleanly");
        }
    }

    /// Starts again on the same port, keeping the messages received so far.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.listen().await;
    }

    /// Everything received so far, in order.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.inbox.mails.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the messages received, failing the test after `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&[ReceivedMail]) -> bool,
    ) -> Vec<ReceivedMail> {
        let mut changes = self.received.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mails = self.mails();
            if done(&mails) {
                return mails;
            }
            let subjects: Vec<String> = mails.iter().filter_map(|m| m.header("Subject")).collect();
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    panic!("the test SMTP server never received {what}; it has {subjects:?}")
                }
            }
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.take() {
            stop.cancel();
        }
    }
}

/// One SMTP conversation.
async fn session(stream: TcpStream, inbox: Arc<Inbox>, received: watch::Sender<usize>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if !reply(&mut write, "220 purser-test ESMTP ready\r\n").await {
        return;
    }
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        let verb = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let answer: String = match verb.as_str() {
            "EHLO" => {
                from = None;
                to.clear();
                "250-purser-test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n".into()
            }
            "HELO" => {
                from = None;
                to.clear();
                "250 purser-test\r\n".into()
            }
            "MAIL" => match address_after(&text, "FROM:") {
                Some(a) => {
                    from = Some(a);
                    to.clear();
                    "250 2.1.0 OK\r\n".into()
                }
                None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".into(),
            },
            "RCPT" if from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
            "RCPT" => match address_after(&text, "TO:") {
                Some(a) => {
                    to.push(a);
                    "250 2.1.5 OK\r\n".into()
                }
                None => "501 5.5.4 Syntax: RCPT TO:<address>\r\n".into(),
            },
            "DATA" if to.is_empty() => "503 5.5.1 RCPT first\r\n".into(),
            "DATA" => {
                if !reply(&mut write, "354 End data with <CR><LF>.<CR><LF>\r\n").await {
                    return;
                }
                let Some(data) = read_data(&mut reader).await else {
                    return;
                };
                let mail = ReceivedMail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                };
                let n = {
                    let mut mails = inbox.mails.lock().unwrap();
                    mails.push(mail);
                    mails.len()
                };
                received.send_replace(n);
                format!("250 2.0.0 OK queued as {n}\r\n")
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                let _ = reply(&mut write, "221 2.0.0 Bye\r\n").await;
                return;
            }
            _ => "502 5.5.2 Command not recognised\r\n".into(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}

/// Writes a reply; false when the client has gone.
async fn reply(write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    write.write_all(text.as_bytes()).await.is_ok()
}

/// Reads message data up to the lone `.` line, undoing dot-stuffing (RFC 5321 §4.5.2).
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<String> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" || line == b".\n" {
            return Some(String::from_utf8_lossy(&data).into_owned());
        }
        let unstuffed = if line.starts_with(b"..") {
            &line[1..]
        } else {
            &line[..]
        };
        data.extend_from_slice(unstuffed);
    }
}

/// `MAIL FROM:<a@b> BODY=8BITMIME` → `a@b`.
fn address_after(line: &str, keyword: &str) -> Option<String> {
    let upper = line.to_ascii_uppercase();
    let at = upper.find(keyword)? + keyword.len();
    let rest = line[at..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_owned())
}

// ---------------------------------------------------------------------------------------------
// Reading what was received

impl ReceivedMail {
    /// A top-level header's value, unfolded (the first one of that name).
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = split(&self.data);
        header(&headers, name)
    }

    /// The `Message-ID`, angle brackets included.
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID")
    }

    /// The decoded `text/plain` part (the whole body for a single-part text message), with
    /// line ends as `\n` so tests can match across lines.
    pub fn text(&self) -> String {
        find_part(&self.data, "text/plain")
            .unwrap_or_else(|| panic!("no text/plain part in:\n{}", self.data))
            .replace("\r\n", "\n")
    }

    /// The decoded `text/html` part, with line ends as `\n`.
    pub fn html(&self) -> Option<String> {
        find_part(&self.data, "text/html").map(|h| h.replace("\r\n", "\n"))
    }
}

/// Headers (unfolded name/value pairs) and the body of a MIME entity.
fn split(raw: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = match raw.find("\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (raw, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body.to_owned())
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// The `boundary` parameter of a multipart Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The first part of type `mime`, decoded, searching multiparts depth first.
fn find_part(raw: &str, mime: &str) -> Option<String> {
    let (headers, body) = split(raw);
    let content_type = header(&headers, "Content-Type").unwrap_or_else(|| "text/plain".into());
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.starts_with("multipart/") {
        let b = boundary(&content_type)?;
        let delimiter = format!("--{b}");
        return body
            .split(&delimiter)
            .skip(1)
            .take_while(|part| !part.starts_with("--"))
            .find_map(|part| find_part(part.strip_prefix("\r\n").unwrap_or(part), mime));
    }
    if essence != mime {
        return None;
    }
    let body = body.strip_suffix("\r\n").unwrap_or(&body);
    let encoding = header(&headers, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    Some(match encoding.as_str() {
        "quoted-printable" => quoted_printable(body),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("a base64 part decodes");
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_owned(),
    })
}

/// Decodes quoted-printable (RFC 2045 §6.7): soft line breaks and `=XX` escapes.
fn quoted_printable(body: &str) -> String {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if bytes[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let Some(hex) = bytes.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
