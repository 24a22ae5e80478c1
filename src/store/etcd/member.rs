//! One etcd member for tests, started the same way by every test that
//! needs one: the store's unit tests, the serve tests and the shared-site
//! tests (which run it in a network namespace). Compiled into the unit
//! tests (`cfg(test)`) and into the integration tests (`#[path]` from
//! `tests/support.rs`); never into bootfleet.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The command that starts member `name` of a cluster listening for
/// clients at `client` and for peers at `peer`, with its data in
/// `data_dir`; `initial_cluster` names every member (`m=http://...`).
/// `prefix` runs it inside something (`ip netns exec NS`); empty for none.
pub fn command(
    prefix: &[&str],
    name: &str,
    data_dir: &Path,
    client: &str,
    peer: &str,
    initial_cluster: &str,
) -> Command {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg("etcd");
            c
        }
        None => Command::new("etcd"),
    };
    cmd.args(["--name", name, "--data-dir"])
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
        ])
        .args([
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
        ])
        .args(["--initial-cluster", initial_cluster])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Whether every member at `urls` answers its health check (asked with
/// curl, run under `prefix`) within `tries` tenths of a second.
pub fn healthy(prefix: &[&str], urls: &[&str], tries: usize) -> bool {
    (0..tries).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        urls.iter().all(|url| {
            let health = format!("{url}/health");
            let mut args: Vec<&str> = prefix.to_vec();
            args.extend(["curl", "-sf", "--max-time", "1", health.as_str()]);
            Command::new(args[0])
                .args(&args[1..])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    })
}

/// A one-member etcd on loopback at free ports, its data in a temporary
/// directory; killed when dropped.
pub struct Member {
    pub child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Member {
    /// Starts it and waits until it answers; `None` when etcd is not
    /// installed (the caller says so: skip, or fail where every test must
    /// run).
    pub fn loopback() -> Option<Member> {
        if Command::new("etcd").arg("--version").output().is_err() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = command(
            &[],
            "m",
            &dir.path().join("data"),
            &url,
            &peer,
            &format!("m={peer}"),
        )
        .spawn()
        .unwrap();
        let member = Member {
            child,
            url,
            _dir: dir,
        };
        assert!(
            healthy(&[], &[member.url.as_str()], 100),
            "etcd did not become healthy at {}",
            member.url
        );
        Some(member)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
