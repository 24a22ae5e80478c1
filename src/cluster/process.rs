//! The cluster's boot server: a `bootfleet serve` process of its own, so
//! that it outlives `cluster up` (DHCP renewals, the status page). It is
//! found by its command line (`serve ... --cluster NAME`), read from
//! `/proc`, never from a record file that a crash could leave stale.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ClusterError;

/// Whether argv (NUL-separated, as in `/proc/PID/cmdline`) is the server
/// of cluster `name`.
pub fn is_server_of(cmdline: &[u8], name: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let serve = args.iter().skip(1).any(|a| *a == b"serve");
    let tagged = args
        .windows(2)
        .any(|w| w[0] == b"--cluster" && w[1] == name.as_bytes())
        || args
            .iter()
            .any(|a| *a == format!("--cluster={name}").as_bytes());
    serve && tagged
}

/// The pids of every running server of cluster `name`.
pub fn find(name: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            // A zombie has no command line worth stopping.
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| is_server_of(&c, name))
                && alive(*pid)
        })
        .collect()
}

/// How to start the server.
pub struct Start<'a> {
    pub cluster: &'a str,
    pub spec: &'a Path,
    pub images: &'a Path,
    pub state_dir: &'a Path,
    pub log: &'a Path,
    /// Where the HTTP API answers once the server is ready.
    pub http: std::net::SocketAddr,
}

/// Starts the server detached from this process (its own session, its
/// output in `log`) and waits until its HTTP API answers.
pub fn start(s: &Start<'_>) -> Result<i32, ClusterError> {
    let exe = std::env::current_exe().map_err(|e| ClusterError::Io {
        what: "finding this program".into(),
        source: e,
    })?;
    let io = |what: String| move |source| ClusterError::Io { what, source };
    if let Some(dir) = s.log.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let log = std::fs::File::create(s.log).map_err(io(format!("creating {}", s.log.display())))?;
    let err = log
        .try_clone()
        .map_err(io("opening the server log".into()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--state-dir")
        .arg(s.state_dir)
        .arg("serve")
        .arg(s.spec)
        .arg("--images")
        .arg(s.images)
        .arg("--cluster")
        .arg(s.cluster)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // SAFETY: setsid only detaches the child into a session of its own
    // (Ctrl-C in the terminal of `up` must not stop the server).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io("starting the boot server".into()))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ClusterError::Server(format!(
                "the boot server exited ({status}) before it was ready; its log, {}:\n{}",
                s.log.display(),
                tail(s.log, 20)
            )));
        }
        if crate::http::client::get(&s.http.to_string(), "/api/v1/nodes").is_ok() {
            // The child is reaped by init once this process exits.
            std::mem::forget(child);
            return Ok(pid);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ClusterError::Server(format!(
                "the boot server did not answer on http://{} within 30 s; its log, {}:\n{}",
                s.http,
                s.log.display(),
                tail(s.log, 20)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops `pid` (SIGTERM, then SIGKILL after 5 s) and waits until it is gone.
pub fn stop(pid: i32) {
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` runs: it exists and is not a zombie (state `Z` after the
/// command name in `/proc/PID/stat`).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The server's log file in the cluster's state directory.
pub fn log_path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("server.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_known_by_its_command_line() {
        assert!(is_server_of(
            b"/bin/bootfleet\0--state-dir\0/x\0serve\0s.toml\0--cluster\0ci\0",
            "ci"
        ));
        assert!(is_server_of(
            b"bootfleet\0serve\0s.toml\0--cluster=ci\0",
            "ci"
        ));
        assert!(!is_server_of(
            b"bootfleet\0serve\0s.toml\0--cluster\0ci2\0",
            "ci"
        ));
        assert!(!is_server_of(b"bootfleet\0serve\0s.toml\0", "ci"));
        assert!(!is_server_of(
            b"bootfleet\0cluster\0up\0--cluster\0ci\0",
            "ci"
        ));
    }
}
