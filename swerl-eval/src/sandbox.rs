//! The sandbox every untrusted command runs in: bubblewrap (Linux namespaces: no network, a
//! private PID namespace and `/tmp`, the host read-only except the paths given as writable),
//! rlimits, a wall clock that kills the whole tree, and bounded, lossy-UTF-8 output capture.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Resource limits applied inside the sandbox (`ulimit`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Processes of the user (`RLIMIT_NPROC`; not enforced for root outside a user namespace).
    pub processes: u64,
    /// Largest file a process may write, bytes (`RLIMIT_FSIZE`).
    pub file_size: u64,
    /// Open files (`RLIMIT_NOFILE`).
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { processes: 4096, file_size: 4 << 30, open_files: 4096 }
    }
}

/// One sandboxed command.
#[derive(Debug, Clone)]
pub struct SandboxCommand {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Working directory (must be visible in the sandbox).
    pub cwd: PathBuf,
    /// Paths bound read-write (the checkout, the instance's venv).
    pub writable: Vec<PathBuf>,
    /// Paths under `/tmp` that must stay visible read-only (the private `/tmp` hides the host's).
    pub read_only: Vec<PathBuf>,
    /// Allow the network (only the install step at preparation time does).
    pub network: bool,
    /// Wall clock limit.
    pub timeout: Duration,
    /// Output kept: the first and last halves of this many bytes.
    pub max_output: usize,
    /// rlimits.
    pub limits: Limits,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl SandboxCommand {
    /// A bash script (run as `bash -c SCRIPT`) in `cwd`, with defaults: no network, 30 minutes,
    /// 32 MiB of output.
    pub fn bash(script: &str, cwd: &Path) -> Self {
        Self {
            argv: vec!["/bin/bash".into(), "-c".into(), script.into()],
            cwd: cwd.to_owned(),
            writable: vec![cwd.to_owned()],
            read_only: Vec::new(),
            network: false,
            timeout: Duration::from_secs(1800),
            max_output: 32 << 20,
            limits: Limits::default(),
            env: Vec::new(),
        }
    }
}

/// What a sandboxed command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// stdout and stderr interleaved, lossy UTF-8, middle dropped past the limit.
    pub output: String,
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// The wall clock ran out and the tree was killed.
    pub timed_out: bool,
    /// Bytes dropped from the middle of the output.
    pub dropped: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunOutput {
    /// Exit code 0 and no timeout.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// Checks once that bubblewrap exists and the kernel lets it make namespaces.
pub fn check_available() -> Result<()> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK
        .get_or_init(|| {
            let out = Command::new("bwrap")
                .args(["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/"])
                .args(["--proc", "/proc", "--dev", "/dev", "true"])
                .output()
                .map_err(|e| {
                    format!(
                        "cannot run `bwrap` ({e}); install bubblewrap (Debian: apt-get install bubblewrap)"
                    )
                })?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "bubblewrap cannot create namespaces here ({}): {}; unprivileged user \
                     namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, or \
                     run as root)",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .clone()
        .map_err(Error::Sandbox)
}

fn bwrap_args(cmd: &SandboxCommand) -> Vec<String> {
    let mut a: Vec<String> = [
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/dev/shm",
    ]
    .map(String::from)
    .into();
    if cmd.network {
        a.push("--share-net".into());
    }
    for p in &cmd.read_only {
        let p = p.display().to_string();
        a.extend(["--ro-bind".into(), p.clone(), p]);
    }
    for p in &cmd.writable {
        let p = p.display().to_string();
        a.extend(["--bind".into(), p.clone(), p]);
    }
    for (k, v) in [("HOME", "/tmp"), ("TMPDIR", "/tmp")] {
        a.extend(["--setenv".into(), k.into(), v.into()]);
    }
    for (k, v) in &cmd.env {
        a.extend(["--setenv".into(), k.clone(), v.clone()]);
    }
    a.extend(["--chdir".into(), cmd.cwd.display().to_string()]);
    let l = &cmd.limits;
    let ulimits = format!(
        "ulimit -c 0; ulimit -n {}; ulimit -f {}; ulimit -u {}; exec \"$@\"",
        l.open_files,
        l.file_size / 1024,
        l.processes
    );
    a.extend(["--".into(), "/bin/bash".into(), "-c".into(), ulimits, "sandbox".into()]);
    a.extend(cmd.argv.iter().cloned());
    a
}

/// Keeps the first and last `limit / 2` bytes of a stream.
struct Bounded {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    half: usize,
    dropped: usize,
}

impl Bounded {
    fn push(&mut self, mut data: &[u8]) {
        let room = self.half.saturating_sub(self.head.len());
        let take = room.min(data.len());
        self.head.extend_from_slice(&data[..take]);
        data = &data[take..];
        for &b in data {
            if self.tail.len() == self.half {
                self.tail.pop_front();
                self.dropped += 1;
            }
            self.tail.push_back(b);
        }
    }
}

/// Runs a command in the sandbox. Infrastructure failures (no bwrap, spawn errors) are errors;
/// the command's own failure is in the [`RunOutput`].
pub fn run(cmd: &SandboxCommand) -> Result<RunOutput> {
    check_available()?;
    let start = Instant::now();
    let (mut reader, writer) = std::io::pipe()?;
    let mut child = Command::new("bwrap")
        .args(bwrap_args(cmd))
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Sandbox(format!("cannot start bwrap: {e}")))?;
    let half = cmd.max_output / 2;
    let collector = std::thread::spawn(move || {
        let mut b = Bounded { head: Vec::new(), tail: Default::default(), half, dropped: 0 };
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            b.push(&buf[..n]);
        }
        b
    });
    let pgid = Pid::from_raw(child.id() as i32);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= cmd.timeout {
            timed_out = true;
            // bwrap's own group; its sandboxed child is PID 1 of a PID namespace that dies with
            // it (--die-with-parent), which takes every process inside along.
            let _ = killpg(pgid, Signal::SIGKILL);
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let b = collector.join().expect("output collector panicked");
    let mut bytes = b.head;
    if b.dropped > 0 {
        bytes
            .extend_from_slice(format!("\n[swerl-eval: {} bytes of output dropped]\n", b.dropped).as_bytes());
    }
    bytes.extend(b.tail);
    Ok(RunOutput {
        output: String::from_utf8_lossy(&bytes).into_owned(),
        code: status.code(),
        timed_out,
        dropped: b.dropped,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available() -> bool {
        check_available().is_ok()
    }

    #[test]
    fn bounded_keeps_head_and_tail() {
        let mut b = Bounded { head: Vec::new(), tail: Default::default(), half: 3, dropped: 0 };
        b.push(b"abcdefgh");
        assert_eq!(b.head, b"abc");
        assert_eq!(b.tail.iter().copied().collect::<Vec<_>>(), b"fgh");
        assert_eq!(b.dropped, 2);
    }

    #[test]
    fn isolation_and_timeout() {
        if !available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = SandboxCommand::bash(
            "echo out; echo err >&2; touch ok; touch /root/.swerl-escape 2>&1 || echo ro; printf '\\xff'",
            dir.path(),
        );
        cmd.timeout = Duration::from_secs(20);
        let out = run(&cmd).unwrap();
        assert!(out.success(), "{out:?}");
        assert!(out.output.contains("out\n") && out.output.contains("err\n"));
        assert!(out.output.contains("ro\n") && out.output.ends_with('\u{fffd}'));
        assert!(dir.path().join("ok").exists());
        let mut cmd = SandboxCommand::bash("sleep 30 & sleep 30", dir.path());
        cmd.timeout = Duration::from_millis(500);
        let out = run(&cmd).unwrap();
        assert!(out.timed_out && out.elapsed < Duration::from_secs(10));
    }
}
