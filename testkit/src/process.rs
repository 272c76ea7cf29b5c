//! One spawned gateway or worker: started with its stderr in a log file,
//! ready once it prints its address line on stdout.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    /// The address from the ready line (`host:port`).
    pub addr: String,
    /// Where it serves `/metrics` (its `... metrics on http://` line before
    /// the ready line; empty when it printed none).
    pub metrics: String,
    /// stderr (the tracing log) of the process.
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&mut self) {
        self.signal("TERM");
    }

    /// `STOP` (frozen: no heartbeat, sockets open), `CONT`, `TERM`, ...
    /// Through kill(1): the workspace forbids the unsafe of libc::kill.
    pub fn signal(&mut self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }

    /// Waits up to `grace` for the process to exit; true when it did.
    pub fn wait_exit(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGTERM (the product's drain), then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.sigterm();
            if !self.wait_exit(grace) {
                self.kill9();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The last `n` bytes of a log file, for failure messages.
pub fn log_tail(log: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Spawns `cmd` with stderr to `log` and waits (up to 60 s) for a stdout line
/// containing `marker`; the rest of that line is the process's address.
pub fn spawn(cmd: &mut Command, log: PathBuf, marker: &str) -> Proc {
    let logf = std::fs::File::create(&log).expect("log file");
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(logf).spawn().expect("spawn process");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = String::new();
    let mut metrics = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(i) = line.find("metrics on http://") {
                    metrics = line[i + "metrics on http://".len()..].trim().to_string();
                }
                if let Some(i) = line.find(marker) {
                    addr = line[i + marker.len()..].trim().to_string();
                    break;
                }
            }
            _ => break,
        }
    }
    if addr.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("process did not print `{marker}`; see {}:\n{}", log.display(), log_tail(&log, 2000));
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, addr, metrics, log }
}
