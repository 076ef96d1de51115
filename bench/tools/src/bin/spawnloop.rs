//! The spawn limit: runs a handler N times, P at a time, and waits for each.
//!
//! `spawnloop --n 20000 --par 4 [--gap-ms MS] -- CMD ARG...`
//!
//! `{i}` in an argument becomes the run number, `{t}` the Unix time in
//! nanoseconds just before the spawn (for start-latency runs). Each of the P
//! threads spawns and waits in turn, with stdio on /dev/null; std's Command
//! takes the posix_spawn path (no pre_exec). Prints `n=… secs=… per_sec=…`.
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut n, mut par, mut gap) = (1usize, 4usize, Duration::ZERO);
    let mut cmd: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            "--par" => par = args.next().and_then(|v| v.parse().ok()).expect("--par P"),
            "--gap-ms" => gap = Duration::from_secs_f64(args.next().and_then(|v| v.parse::<f64>().ok()).expect("--gap-ms MS") / 1e3),
            "--" => {
                cmd = args.by_ref().collect();
            }
            other => panic!("unknown option {other}"),
        }
    }
    assert!(!cmd.is_empty(), "usage: spawnloop --n N --par P -- CMD ARG...");
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..par)
        .map(|_| {
            let (cmd, next, failed) = (cmd.clone(), next.clone(), failed.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos().to_string();
                let argv: Vec<String> = cmd.iter().map(|a| a.replace("{i}", &i.to_string()).replace("{t}", &t)).collect();
                let ok = Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if !gap.is_zero() {
                    std::thread::sleep(gap);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("n={n} failed={} secs={secs:.3} per_sec={:.1}", failed.load(Ordering::Relaxed), n as f64 / secs);
}
