//! CPU time and resident memory of other processes, read from `/proc`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
pub fn clk_tck() -> f64 {
    static T: OnceLock<f64> = OnceLock::new();
    *T.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: it ends at the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Named processes to watch (`gateway0=1234`).
#[derive(Debug, Clone, Default)]
pub struct Watched(pub Vec<(String, u32)>);

impl Watched {
    pub fn parse(items: &[String]) -> anyhow::Result<Watched> {
        let mut v = Vec::new();
        for it in items {
            let (name, pid) = it.split_once('=').ok_or_else(|| anyhow::anyhow!("--pid wants NAME=PID, got {it}"))?;
            v.push((name.to_string(), pid.parse()?));
        }
        Ok(Watched(v))
    }
    pub fn cpu(&self) -> BTreeMap<String, f64> {
        self.0.iter().filter_map(|(n, p)| Some((n.clone(), cpu_seconds(*p)?))).collect()
    }
    pub fn rss(&self) -> BTreeMap<String, u64> {
        self.0.iter().filter_map(|(n, p)| Some((n.clone(), rss_kib(*p)?))).collect()
    }
    /// Processes whose name starts with `prefix` (all gateways, say).
    pub fn pids_of(&self, prefix: &str) -> Vec<u32> {
        self.0.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(_, p)| *p).collect()
    }
}

/// Least-squares slope of (x, y) points; 0 with fewer than two.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-9);
    }
}
