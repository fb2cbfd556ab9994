//! Readings from `/proc`: a process's CPU time and memory, the machine's busy time. A reading that
//! cannot be taken (the process is gone, a field is missing) is 0.

use std::fs;

/// Clock ticks per second, the unit of the CPU times in `/proc`.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of the whole process `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// utime + stime of one thread `tid` of process `pid`, in seconds.
pub fn thread_cpu_seconds(pid: u32, tid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/task/{tid}/stat"))
}

/// The threads of process `pid` whose name (`comm`, which the kernel cuts to 15 bytes) is `name`
/// or, for a longer name, its first 15 bytes.
pub fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    let want = &name.as_bytes()[..name.len().min(15)];
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut tids: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim_end_matches('\n').as_bytes() == want)
        })
        .collect();
    tids.sort_unstable();
    tids
}

/// utime + stime from a `stat` file of `/proc` (a process's or a thread's), in seconds.
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = fs::read_to_string(path).unwrap_or_default();
    // Fields after the command (which may hold spaces) start at field 3 ("state").
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14, stime 15: indexes 11 and 12 counting from field 3.
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

/// CPU seconds spent busy by the whole machine (all CPUs; everything but idle and iowait).
pub fn machine_busy_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle) as f64 / clock_ticks()
}

/// The first number of the line `key` (with its colon, e.g. `VmRSS:`) of `/proc/PID/status`.
pub fn status_field(pid: u32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    field(&status, key)
}

fn field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The `TcpExt` counters of `/proc/net/netstat` named in `names` (for this network namespace, every
/// process in it together), in the order asked; a counter the kernel does not have is 0.
pub fn tcp_ext(names: &[&str]) -> Vec<(String, u64)> {
    let text = fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut rows = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(header), Some(values)) = (rows.next(), rows.next()) else {
        return names.iter().map(|n| (n.to_string(), 0)).collect();
    };
    let pairs: Vec<(&str, u64)> = header
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .map(|(k, v)| (k, v.parse().unwrap_or(0)))
        .collect();
    names
        .iter()
        .map(|n| {
            let v = pairs.iter().find(|(k, _)| k == n).map_or(0, |(_, v)| *v);
            (n.to_string(), v)
        })
        .collect()
}

/// The machine's load averages over 1, 5 and 15 minutes, as `/proc/loadavg` writes them.
pub fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A process's size at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Resident set (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Threads.
    pub threads: u64,
    /// Open descriptors.
    pub fds: u64,
}

impl Sample {
    /// Reads process `pid`.
    pub fn of(pid: u32) -> Sample {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Sample {
            rss_kib: field(&status, "VmRSS:"),
            threads: field(&status, "Threads:"),
            fds: fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
        }
    }

    /// The larger of each figure.
    pub fn max(self, o: Sample) -> Sample {
        Sample {
            rss_kib: self.rss_kib.max(o.rss_kib),
            threads: self.threads.max(o.threads),
            fds: self.fds.max(o.fds),
        }
    }
}

/// Anonymous read-write mappings about `stack` bytes long (thread stacks of that size): how many,
/// and their mean and largest Rss in KiB. `None` when there is none or smaps cannot be read.
pub fn stack_rss(pid: u32, stack: usize) -> Option<(usize, f64, u64)> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (lo, hi) = (stack.saturating_sub(16 * 1024), stack + 16 * 1024);
    let mut in_stack = false;
    let mut rss = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let perms = parts.next().unwrap_or("");
                let anon = line.split_whitespace().count() == 5;
                in_stack = perms == "rw-p" && anon && (lo..=hi).contains(&(b - a));
                continue;
            }
        }
        if in_stack {
            if let Some(v) = line.strip_prefix("Rss:") {
                rss.push(v.split_whitespace().next()?.parse::<u64>().ok()?);
                in_stack = false;
            }
        }
    }
    if rss.is_empty() {
        return None;
    }
    let mean = rss.iter().sum::<u64>() as f64 / rss.len() as f64;
    Some((rss.len(), mean, rss.iter().copied().max().unwrap_or(0)))
}
