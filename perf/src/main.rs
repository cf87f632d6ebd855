//! `postern-cpu`: CPU time of processes, summed over all their threads.
//!
//! Side-by-side benchmarks report proxy CPU per request: read this before
//! and after a load run, subtract, divide by the requests completed. It
//! reads `/proc/PID/task/*/stat` (utime + stime of every thread, including
//! threads that exit during the run only up to their exit — which is why
//! proxies are measured with long-lived workers).
//!
//! Usage: `postern-cpu PID [PID...]` prints total CPU microseconds.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let pids: Vec<String> = std::env::args().skip(1).collect();
    if pids.is_empty() {
        eprintln!("usage: postern-cpu PID [PID...]");
        return ExitCode::from(2);
    }
    let ticks = clock_ticks();
    let mut total_ticks = 0u64;
    for pid in &pids {
        match process_ticks(pid) {
            Ok(t) => total_ticks += t,
            Err(e) => {
                eprintln!("postern-cpu: process {pid}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    println!("{}", total_ticks * 1_000_000 / ticks);
    ExitCode::SUCCESS
}

/// utime + stime over every thread of `pid`, in clock ticks.
fn process_ticks(pid: &str) -> std::io::Result<u64> {
    let mut sum = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = match std::fs::read_to_string(entry?.path().join("stat")) {
            Ok(s) => s,
            Err(_) => continue, // the thread exited meanwhile
        };
        sum += parse_stat(&stat).unwrap_or(0);
    }
    Ok(sum)
}

/// Fields 14 and 15 of `stat`, counted after the parenthesised command name
/// (which may itself contain spaces and parentheses).
fn parse_stat(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> u64 {
    // CLK_TCK is 100 on every Linux platform we target; `getconf` confirms
    // it without unsafe code.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_fields_after_a_tricky_name() {
        let stat = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0";
        assert_eq!(super::parse_stat(stat), Some(333));
    }
}
