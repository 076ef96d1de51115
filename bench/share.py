"""bench/share.sh's arithmetic (see there).

    perf script -F ip,sym | python3 bench/share.py classify SERVER BODY >> results
    python3 bench/share.py table results
"""
import collections
import sys

# The first part whose mark is in a sample's stack takes the sample. Rust
# paths match as substrings, kernel functions by name.
PARTS = [
    ("ours: the signature (HMAC)", ["hookrunner::auth::verify"]),
    ("ours: the body parse", ["hookrunner::intake::body::parse"]),
    ("ours: reading the body", ["hookrunner::http::body::read"]),
    ("ours: judging", ["hookrunner::intake::judge_and_queue"]),
    ("ours: the delivery record", ["hookrunner::intake::record_delivery",
                                   "hookrunner::delivery::record::mask_headers",
                                   "hookrunner::intake::Facts::"]),
    ("ours: the answer", ["hookrunner::http::hooks::shaped_response",
                          "hookrunner::http::hooks::answer_response"]),
    ("ours: the rest", ["hookrunner::http::hooks::entry"]),
    ("send: waking the client", ["=sock_def_readable"]),
    ("send: preempted at its end", ["=schedule"]),
    ("send: the rest (TCP over loopback)", ["TcpStream>::write"]),
    ("recv", ["recv_with_flags"]),
    ("epoll", ["Selector::select"]),
    ("the rest (actix-web, tokio, allocator)", [""]),
]
SEND = "TcpStream>::write"


def part_of(syms):
    sending = any(SEND in s for s in syms)
    for name, marks in PARTS:
        if name.startswith("send:") and not sending:
            continue
        for mark in marks:
            if mark.startswith("="):
                if mark[1:] in syms:
                    return name
            elif any(mark in s for s in syms):
                return name
    return PARTS[-1][0]


def classify(server, body):
    counts = collections.Counter()
    syms = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            if syms:
                counts[part_of(syms)] += 1
            syms = []
            continue
        sym = line.split(" ", 1)[1] if " " in line else line
        syms.append(sym.removesuffix(" (inlined)"))
    if syms:
        counts[part_of(syms)] += 1
    total = sum(counts.values())
    for name, n in counts.items():
        print(f"part\t{server}\t{body}\t{n}\t{total}\t{name}")


def table(path):
    cpu = collections.defaultdict(list)
    parts = collections.defaultdict(dict)
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if f[0] == "cpu":
            cpu[(f[1], f[2])].append((float(f[3]), float(f[4])))
        elif f[0] == "part":
            parts[(f[1], f[2])][f[5]] = int(f[3]) / int(f[4])
    label = {"small": "270 B", "push": "8.6 KiB"}
    mean = lambda key: sum(c for _, c in cpu[key]) / len(cpu[key])
    bodies = list(dict.fromkeys(b for _, b in cpu))
    print("\nCPU time of the daemon (user + system) per request, µs, and requests/s:\n")
    print("| body | hookrunner | ceiling |")
    print("|---|---|---|")
    for b in bodies:
        runs = lambda key: ", ".join(f"{c:.2f} ({r / 1000:.0f}k/s)" for r, c in cpu[key])
        print(f"| {label.get(b, b)} | {runs(('hookrunner', b))} | {runs(('ceiling', b))} |")
    for b in bodies:
        if ("hookrunner", b) not in parts:
            continue
        h, c = mean(("hookrunner", b)), mean(("ceiling", b))
        ph, pc = parts[("hookrunner", b)], parts.get(("ceiling", b), {})
        print(f"\n{label.get(b, b)} body, by part (perf samples as µs of the mean CPU per request):\n")
        print("| part | hookrunner | ceiling |")
        print("|---|---|---|")
        for name, _ in PARTS:
            if name in ph or name in pc:
                print(f"| {name} | {ph.get(name, 0) * h:.2f} | {pc.get(name, 0) * c:.2f} |")
        ours = sum(v for k, v in ph.items() if k.startswith("ours:"))
        print(f"| **all of ours** | **{ours * h:.2f}** ({100 * ours:.1f} %) | |")
        print(f"| **everything else** | **{(1 - ours) * h:.2f}** | **{c:.2f}** |")


if __name__ == "__main__":
    if sys.argv[1] == "classify":
        classify(sys.argv[2], sys.argv[3])
    else:
        table(sys.argv[2])
