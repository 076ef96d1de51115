//! A closed-loop HTTP/1.1 load generator that stops after N requests.
//!
//! `loadgen --addr 127.0.0.1:PORT --path /hooks/x --conns 64 --n 20000
//!          [--body TEMPLATE | --body-file FILE] [--secret S] [--header 'Name: v']...
//!          [--retry-503] [--gap-ms MS] [--content-type TYPE]`
//!
//! Each connection is one thread with one keep-alive socket. The body
//! template may hold `{i}` (the request number, unique) and `{t}` (the send
//! time in Unix nanoseconds, taken just before the request is written).
//! The Content-Type is `application/json` unless `--content-type` says
//! otherwise. With `--secret` every body is signed: `X-Hub-Signature-256: sha256=<hex>`.
//! With `--retry-503` a refused request is sent again (after 5 ms) until it
//! gets another answer. Only loopback addresses are accepted.
//!
//! Prints one line of `key=value`: sent, s2xx, s200, s202, s503, other,
//! errors, secs, rps, p50_us, p99_us (latency of answered requests).
use hmac::{Hmac, KeyInit, Mac};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone)]
struct Opts {
    addr: SocketAddr,
    path: String,
    conns: usize,
    n: usize,
    body: String,
    secret: Option<String>,
    headers: Vec<String>,
    retry_503: bool,
    gap: Duration,
    content_type: String,
}

#[derive(Default)]
struct Counts {
    s2xx: usize,
    s200: usize,
    s202: usize,
    s503: usize,
    other: usize,
    errors: usize,
    lat_us: Vec<u64>,
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2)
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        addr: "127.0.0.1:9000".parse().unwrap(),
        path: "/".into(),
        conns: 1,
        n: 1,
        body: "{}".into(),
        secret: None,
        headers: Vec::new(),
        retry_503: false,
        gap: Duration::ZERO,
        content_type: "application/json".into(),
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--addr" => o.addr = val().parse().unwrap_or_else(|_| usage("bad --addr")),
            "--path" => o.path = val(),
            "--conns" => o.conns = val().parse().unwrap_or_else(|_| usage("bad --conns")),
            "--n" => o.n = val().parse().unwrap_or_else(|_| usage("bad --n")),
            "--body" => o.body = val(),
            "--body-file" => o.body = std::fs::read_to_string(val()).unwrap_or_else(|e| usage(&e.to_string())),
            "--secret" => o.secret = Some(val()),
            "--header" => o.headers.push(val()),
            "--retry-503" => o.retry_503 = true,
            "--content-type" => o.content_type = val(),
            "--gap-ms" => o.gap = Duration::from_secs_f64(val().parse::<f64>().unwrap_or_else(|_| usage("bad --gap-ms")) / 1e3),
            other => usage(&format!("unknown option {other}")),
        }
    }
    if !o.addr.ip().is_loopback() {
        usage("only loopback addresses may be targeted");
    }
    o
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

fn request(o: &Opts, i: usize) -> Vec<u8> {
    let body = o.body.replace("{i}", &i.to_string()).replace("{t}", &now_ns().to_string());
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        o.path,
        o.addr,
        o.content_type,
        body.len()
    );
    if let Some(secret) = &o.secret {
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        req.push_str(&format!("X-Hub-Signature-256: sha256={}\r\n", hex::encode(mac.finalize().into_bytes())));
    }
    for h in &o.headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Reads one response; returns (status, keep-alive).
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, bool)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed"));
    }
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status line"))?;
    let (mut len, mut chunked, mut keep) = (0usize, false, true);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("closed in headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => len = v.parse().map_err(|_| bad("bad content-length"))?,
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => keep = v != "close",
                _ => {}
            }
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).map_err(|_| bad("bad chunk"))?;
            let mut buf = vec![0; size + 2];
            r.read_exact(&mut buf)?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut buf = vec![0; len];
        r.read_exact(&mut buf)?;
    }
    Ok((status, keep))
}

fn connect(addr: SocketAddr) -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let r = BufReader::with_capacity(64 * 1024, s.try_clone()?);
    Ok((s, r))
}

fn worker(o: Opts, next: Arc<AtomicUsize>, total: Arc<Mutex<Counts>>) {
    let mut c = Counts::default();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= o.n {
            break;
        }
        loop {
            if conn.is_none() {
                match connect(o.addr) {
                    Ok(s) => conn = Some(s),
                    Err(_) => {
                        c.errors += 1;
                        std::thread::sleep(Duration::from_millis(10));
                        break;
                    }
                }
            }
            let (w, r) = conn.as_mut().unwrap();
            let req = request(&o, i);
            let start = Instant::now();
            let result = w.write_all(&req).and_then(|_| read_response(r));
            let (status, keep) = match result {
                Ok(x) => x,
                Err(_) => {
                    c.errors += 1;
                    conn = None;
                    break;
                }
            };
            c.lat_us.push(start.elapsed().as_micros() as u64);
            if !keep {
                conn = None;
            }
            match status {
                200..=299 => {
                    c.s2xx += 1;
                    if status == 200 {
                        c.s200 += 1;
                    }
                    if status == 202 {
                        c.s202 += 1;
                    }
                }
                503 => {
                    c.s503 += 1;
                    if o.retry_503 {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                }
                _ => c.other += 1,
            }
            break;
        }
        if !o.gap.is_zero() {
            std::thread::sleep(o.gap);
        }
    }
    let mut t = total.lock().unwrap();
    t.s2xx += c.s2xx;
    t.s200 += c.s200;
    t.s202 += c.s202;
    t.s503 += c.s503;
    t.other += c.other;
    t.errors += c.errors;
    t.lat_us.extend(c.lat_us);
}

fn main() {
    let o = parse();
    let next = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(Mutex::new(Counts::default()));
    let start = Instant::now();
    let threads: Vec<_> = (0..o.conns)
        .map(|_| {
            let (o, next, total) = (o.clone(), next.clone(), total.clone());
            std::thread::spawn(move || worker(o, next, total))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let mut t = total.lock().unwrap();
    t.lat_us.sort_unstable();
    let pct = |p: f64| t.lat_us.get(((t.lat_us.len() as f64 * p) as usize).min(t.lat_us.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "sent={} s2xx={} s200={} s202={} s503={} other={} errors={} secs={:.3} rps={:.1} p50_us={} p99_us={}",
        o.n,
        t.s2xx,
        t.s200,
        t.s202,
        t.s503,
        t.other,
        t.errors,
        secs,
        t.s2xx as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
}
