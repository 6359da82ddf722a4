//! A real mail system for end-to-end tests: Debian's Postfix (SMTP) and Dovecot (IMAP +
//! LMTP) started from a private temporary root on free loopback ports, one pair per test.
//! Postfix accepts mail for `example.test` from loopback and hands it to Dovecot over LMTP;
//! nothing leaves the machine (`default_transport = error`). Users `NAME@example.test` all
//! have the password [`PASSWORD`]. Installed by `scripts/test` (packages postfix,
//! dovecot-imapd, dovecot-lmtpd); see shared/reference/mail-test-server.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::TryStreamExt;

pub const PASSWORD: &str = "secret";
pub const USERS: &[&str] = &["bot", "alice", "bob", "mallory"];

/// A running Postfix + Dovecot; stopped when dropped.
pub struct MailServer {
    pub smtp_port: u16,
    pub imap_port: u16,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a daemon: its stdio goes to /dev/null (a daemon keeps inherited pipes open, so
/// waiting for their end would wait forever); what it says goes to its log file.
fn daemon(cmd: &mut Command, what: &str) {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed ({status}); see its log");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl MailServer {
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// A server whose IMAP does not offer IDLE (clients must poll) when `idle` is false.
    pub async fn start_with(idle: bool) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("sb-mail-")
            .tempdir()
            .expect("temp dir");
        let root = tmp.path().to_path_buf();
        let (smtp_port, imap_port, lmtp_port, auth_port) =
            (free_port(), free_port(), free_port(), free_port());
        let server = Self {
            smtp_port,
            imap_port,
            root: root.clone(),
            _tmp: tmp,
        };
        run(
            Command::new("chmod").args(["0755", &root.to_string_lossy()]),
            "chmod",
        );
        server.write_dovecot(lmtp_port, auth_port, idle);
        server.write_postfix(lmtp_port, auth_port);
        server.start_dovecot();
        daemon(
            Command::new("postfix").args(["-c", &server.p("postfix-conf"), "start"]),
            "postfix start",
        );
        server.wait_for_port(smtp_port).await;
        server.wait_for_port(imap_port).await;
        server
    }

    fn p(&self, rel: &str) -> String {
        self.root.join(rel).to_string_lossy().into_owned()
    }

    fn write_dovecot(&self, lmtp: u16, auth: u16, idle: bool) {
        let r = self.root.to_string_lossy();
        for d in ["dovecot-run", "dovecot-state", "vmail"] {
            std::fs::create_dir_all(self.root.join(d)).expect("mkdir");
        }
        run(
            Command::new("chown").args(["mail:mail", &self.p("vmail")]),
            "chown vmail",
        );
        let hash = Command::new("doveadm")
            .args(["pw", "-s", "SHA512-CRYPT", "-p", PASSWORD])
            .output()
            .expect("doveadm pw");
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_owned();
        let users: String = USERS
            .iter()
            .map(|u| format!("{u}@example.test:{hash}:8:8::{r}/vmail/{u}\n"))
            .collect();
        write(&self.root.join("users"), &users);
        let conf = format!(
            r#"protocols = imap lmtp
listen = 127.0.0.1
base_dir = {r}/dovecot-run
state_dir = {r}/dovecot-state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 8
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {r}/users
}}
userdb {{
  driver = passwd-file
  args = {r}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
protocol lmtp {{
  auth_username_format = %Lu
}}
{no_idle}
"#,
            no_idle = if idle {
                ""
            } else {
                "protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE UIDPLUS NAMESPACE UNSELECT\n}\n"
            },
            imap = self.imap_port
        );
        write(&self.root.join("dovecot.conf"), &conf);
    }

    fn write_postfix(&self, lmtp: u16, auth: u16) {
        let r = self.root.to_string_lossy();
        for d in ["postfix-conf", "postfix-queue", "postfix-data"] {
            std::fs::create_dir_all(self.root.join(d)).expect("mkdir");
        }
        run(
            Command::new("chown").args(["postfix", &self.p("postfix-data")]),
            "chown postfix-data",
        );
        let main = format!(
            r#"compatibility_level = 3.6
queue_directory = {r}/postfix-queue
data_directory = {r}/postfix-data
maillog_file = {r}/postfix.log
maillog_file_prefixes = {r}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
myhostname = mail.example.test
virtual_mailbox_domains = example.test
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
smtpd_sasl_auth_enable = yes
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
default_transport = error:this test mail system delivers to example.test only
relay_transport = error:this test mail system delivers to example.test only
alias_maps =
alias_database =
smtputf8_enable = no
"#
        );
        write(&self.root.join("postfix-conf/main.cf"), &main);
        let services = [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ];
        let master = format!(
            "127.0.0.1:{} inet n - n - - smtpd\n{}\n",
            self.smtp_port,
            services.join("\n")
        );
        write(&self.root.join("postfix-conf/master.cf"), &master);
    }

    fn start_dovecot(&self) {
        daemon(
            Command::new("dovecot").args(["-c", &self.p("dovecot.conf")]),
            "dovecot",
        );
    }

    async fn wait_for_port(&self, port: u16) {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "port {port} did not open; logs:\n{}\n{}",
            std::fs::read_to_string(self.root.join("dovecot.log")).unwrap_or_default(),
            std::fs::read_to_string(self.root.join("postfix.log")).unwrap_or_default()
        );
    }

    /// Stops Dovecot (IMAP goes away; Postfix queues mail meanwhile) and starts it again
    /// after `down`.
    pub async fn restart_imap(&self, down: Duration) {
        run(
            Command::new("doveadm").args(["-c", &self.p("dovecot.conf"), "stop"]),
            "doveadm stop",
        );
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(down).await;
        self.start_dovecot();
        self.wait_for_port(self.imap_port).await;
    }

    /// Stops Postfix (SMTP refuses connections) until [`Self::start_smtp`].
    pub async fn stop_smtp(&self) {
        daemon(
            Command::new("postfix").args(["-c", &self.p("postfix-conf"), "stop"]),
            "postfix stop",
        );
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.smtp_port))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn start_smtp(&self) {
        daemon(
            Command::new("postfix").args(["-c", &self.p("postfix-conf"), "start"]),
            "postfix start",
        );
        self.wait_for_port(self.smtp_port).await;
    }

    /// The environment that points the email bridge at this server as `bot@example.test`.
    pub fn bridge_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SWITCHBOARD_EMAIL_IMAP_HOST", "127.0.0.1".into()),
            ("SWITCHBOARD_EMAIL_IMAP_PORT", self.imap_port.to_string()),
            ("SWITCHBOARD_EMAIL_IMAP_USER", "bot@example.test".into()),
            ("SWITCHBOARD_EMAIL_IMAP_PASSWORD", PASSWORD.into()),
            ("SWITCHBOARD_EMAIL_IMAP_TLS", "none".into()),
            ("SWITCHBOARD_EMAIL_SMTP_HOST", "127.0.0.1".into()),
            ("SWITCHBOARD_EMAIL_SMTP_PORT", self.smtp_port.to_string()),
            ("SWITCHBOARD_EMAIL_SMTP_TLS", "none".into()),
            (
                "SWITCHBOARD_EMAIL_FROM",
                "Switchboard <bot@example.test>".into(),
            ),
            ("SWITCHBOARD_EMAIL_RETRY_BASE", "1s".into()),
        ]
    }

    /// Sends a raw RFC 5322 message over SMTP, as a mail client would.
    pub async fn send_raw(&self, from: &str, to: &str, raw: &str) {
        use lettre::AsyncTransport;
        let transport =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(self.smtp_port)
                .build();
        let envelope = lettre::address::Envelope::new(
            Some(from.parse().expect("from address")),
            vec![to.parse().expect("to address")],
        )
        .expect("envelope");
        transport
            .send_raw(&envelope, raw.as_bytes())
            .await
            .expect("SMTP send");
    }

    /// `user`'s INBOX, opened read-only.
    async fn session(&self, user: &str) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .expect("IMAP connect");
        let mut client = async_imap::Client::new(tcp);
        let _ = client.read_response().await;
        let mut s = client
            .login(format!("{user}@example.test"), PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .expect("IMAP login");
        s.examine("INBOX").await.expect("examine INBOX");
        s
    }

    /// Every message in `user`'s INBOX, oldest first, as raw text.
    pub async fn inbox(&self, user: &str) -> Vec<String> {
        let mut s = self.session(user).await;
        let fetched: Vec<_> = match s.uid_fetch("1:*", "(UID BODY.PEEK[])").await {
            Ok(stream) => stream.try_collect().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut out: Vec<(u32, String)> = fetched
            .iter()
            .filter_map(|f| {
                let body = f.body()?;
                Some((f.uid?, String::from_utf8_lossy(body).into_owned()))
            })
            .collect();
        out.sort_by_key(|m| m.0);
        let _ = s.logout().await;
        out.into_iter().map(|m| m.1).collect()
    }

    /// How many messages in `user`'s INBOX are not `\Seen` (the bridge marks a message seen
    /// once it handled it).
    pub async fn unseen(&self, user: &str) -> usize {
        let mut s = self.session(user).await;
        let n = s.search("UNSEEN").await.map(|u| u.len()).unwrap_or(0);
        let _ = s.logout().await;
        n
    }

    /// Waits until `user` has `total` messages and none unseen.
    pub async fn wait_all_seen(&self, user: &str, total: usize, secs: u64) {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (n, unseen) = (self.inbox(user).await.len(), self.unseen(user).await);
            if n >= total && unseen == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{user}'s inbox: {n} messages ({unseen} unseen), wanted {total} all seen"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits (up to `secs`) until `user`'s INBOX holds a message for which `check` holds.
    pub async fn wait_for_mail(
        &self,
        user: &str,
        secs: u64,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let mails = self.inbox(user).await;
            if let Some(m) = mails.iter().find(|m| check(m)) {
                return m.clone();
            }
            if tokio::time::Instant::now() > end {
                panic!(
                    "timed out waiting for {what} in {user}'s inbox; it holds:\n{}\n--- postfix log:\n{}",
                    mails.join("\n=====\n"),
                    std::fs::read_to_string(self.root.join("postfix.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        for (cmd, conf, verb) in [
            ("postfix", "postfix-conf", "stop"),
            ("doveadm", "dovecot.conf", "stop"),
        ] {
            let _ = Command::new(cmd)
                .args(["-c", &self.p(conf), verb])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
