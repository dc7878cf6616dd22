#!/usr/bin/env python3
"""Where one `ferry apply` spends its time, from its debug log.

    ferry apply ... -vv 2>&1 | sed 's/\x1b\\[[0-9;]*m//g' > apply.log
    bench/ferry-phases.py apply.log [more.log ...]

Classifies every API request in the log (kube-rs logs `requesting` and `stream closed` for
each) as discovery, inventory, get, dry-run (server-side apply with dryRun=All) or apply,
and prints for each class when it started and ended (seconds from the first log line),
how many requests it made and their median and p90 latency. The gap between discovery and
the first get is Git fetch, checkout and render.
"""
import re
import statistics
import sys
from datetime import datetime

LINE = re.compile(
    r"(\S+Z) DEBUG HTTP\{http.method=(\w+) http.url=https?://[^/]+(\S+) .*?\}: \S+ (requesting|stream closed)"
)


def timestamp(line):
    return datetime.strptime(line[:26], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def classify(method, url):
    if "ferry-inventory" in url or url.rstrip("/").endswith(("namespaces/ferry-system", "/api/v1/namespaces")):
        return "inventory"
    if url in ("/api", "/apis", "/version") or (url.startswith("/apis/") and url.count("/") <= 3):
        return "discovery"
    if method == "GET":
        return "get"
    if "dryRun=All" in url:
        return "dry-run"
    return "apply"


def report(path):
    started, latency, span = {}, {}, {}
    first = last = None
    for line in open(path, errors="replace"):
        if not re.match(r"\d{4}-\d\d-\d\dT", line):
            continue
        t = timestamp(line)
        first = first if first is not None else t
        last = t
        m = LINE.match(line)
        if not m:
            continue
        _, method, url, what = m.groups()
        kind = classify(method, url)
        lo, hi = span.get(kind, (t, t))
        span[kind] = (min(lo, t), max(hi, t))
        if what == "requesting":
            started[(method, url)] = t
        elif (method, url) in started:
            latency.setdefault(kind, []).append(t - started.pop((method, url)))
    if first is None:
        print(f"{path}: no timestamped log lines (was it run with -vv?)")
        return
    print(f"{path}: {last - first:.2f} s from the first to the last log line")
    for kind, (lo, hi) in sorted(span.items(), key=lambda kv: kv[1][0]):
        lat = sorted(latency.get(kind, []))
        med = 1000 * statistics.median(lat) if lat else 0.0
        p90 = 1000 * lat[int(len(lat) * 0.9)] if lat else 0.0
        print(f"  {kind:9} +{lo - first:6.2f} .. +{hi - first:6.2f} s ({hi - lo:5.2f} s) "
              f"{len(lat):5d} requests, latency median {med:6.1f} ms, p90 {p90:6.1f} ms")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        report(p)
