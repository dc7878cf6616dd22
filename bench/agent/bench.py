#!/usr/bin/env python3
"""Helpers of bench/agent.sh (stdlib only): generating the apps, the timed latency trials
(webhook, poll, drift) and the cold-start / idle observations of `ferry agent`.

Times come from time.monotonic(); the cluster side is observed with a watch on the object
(the event is timestamped when it arrives), the agent side through its JSON API.

  bench.py gen-latency <repo-root> <secret>         writes the latency repos + ferry.yaml
  bench.py gen-scale <repo> <prefix> <apps> <nss> <interval> <replicas> [ferry|kubectl]
                                                    writes one repo of <apps> apps + ferry.yaml
  bench.py latency <mode> <out.jsonl> ...           webhook | poll | drift trials
  bench.py cold <out.json> ...                      waits for N apps Synced+Current, timeline
  bench.py idle <out.json> ...                      N seconds of idle CPU and RSS
  bench.py noop <out.json> ...                      rounds of a forced no-op reconcile of every app
  bench.py baseline <out.json> <apps dir> <n> ...   kubectl apply --server-side, watched until
                                                    all Deployments are available
  bench.py render-cost <out.json> <ferry> <dir> <sizes> <reps>
                                                    `ferry render` of one app vs repo size
  bench.py report <records-dir> <out.json> <meta.json>
"""

import hashlib
import hmac
import http.client
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import threading
import queue
import re
import resource
import time
import urllib.parse

TCK = os.sysconf("SC_CLK_TCK")


# --- the cluster ------------------------------------------------------------------------------
class Kube:
    """The test bed's kube-apiserver, with the admin client certificate."""

    def __init__(self, state):
        ports = dict(
            line.strip().split("=", 1)
            for line in open(os.path.join(state, "ports.env"))
            if "=" in line
        )
        self.port = int(ports["APISERVER_PORT"])
        pki = os.path.join(state, "pki")
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        self.conn = None

    def _conn(self, timeout=30):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)

    def request(self, method, path, body=None, content_type="application/json"):
        for attempt in range(3):
            if self.conn is None:
                self.conn = self._conn()
            try:
                headers = {"Accept": "application/json"}
                if body is not None:
                    headers["Content-Type"] = content_type
                    body = json.dumps(body).encode()
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
                return json.loads(data)
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 2:
                    raise

    def get(self, path):
        return self.request("GET", path)

    def patch(self, path, body):
        return self.request("PATCH", path + "?fieldManager=bench-drift", body,
                            "application/merge-patch+json")

    def watch(self, collection, name, rv):
        """A watch on one object; returns (queue of (t, event), stop function). The watch
        is established (response headers received) when this returns."""
        return self.watch_all(collection, rv, {"fieldSelector": f"metadata.name={name}"})

    def watch_all(self, collection, rv, params=None):
        """A watch on a collection from resourceVersion <rv>, as `watch`; the queue ends
        with (t, None) when the stream does (the server's timeout, or 120 s of silence)."""
        conn = self._conn(timeout=120)
        q = urllib.parse.urlencode({"watch": "1", "resourceVersion": rv,
                                    "allowWatchBookmarks": "false", **(params or {})})
        conn.request("GET", f"{collection}?{q}", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"watch {collection} {params}: {resp.status} {resp.read()[:300]!r}")
        events = queue.Queue()

        def reader():
            try:
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    events.put((time.monotonic(), json.loads(line)))
            except Exception:  # closed by stop()
                pass
            events.put((time.monotonic(), None))

        threading.Thread(target=reader, daemon=True).start()

        def stop():
            try:
                conn.sock.shutdown(2)
            except Exception:
                pass
            conn.close()

        return events, stop


def wait_event(events, pred, timeout):
    """The arrival time of the first watch event whose object satisfies pred, or None."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            t, ev = events.get(timeout=left)
        except queue.Empty:
            return None
        if ev is None:
            return None
        if ev.get("type") in ("ADDED", "MODIFIED") and pred(ev["object"]):
            return t


# --- the agent --------------------------------------------------------------------------------
class Agent:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 2:
                    raise

    def json(self, path):
        status, data = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:300]!r}")
        return json.loads(data)


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TCK  # utime, stime (fields 14, 15)


def proc_mem_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, "-c", "user.name=bench", "-c",
                           "user.email=bench@localhost", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


# --- generating -------------------------------------------------------------------------------
def app_yaml(name, ns, value="v0", replicas=1, namespaced=False):
    """The four objects of one app (Deployment of <replicas> replicas, ServiceAccount,
    headless Service, ConfigMap), one multi-document file. Names are the app's, so apps can
    share a namespace. The namespace is ferry.yaml's destination, unless <namespaced> (for
    kubectl) puts it into each object."""
    in_ns = f"\n  namespace: {ns}" if namespaced else ""
    return f"""apiVersion: v1
kind: ServiceAccount
metadata:
  name: {name}{in_ns}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-config{in_ns}
data:
  value: "{value}"
  settings.ini: |
    [main]
    app = {name}
    log_level = info
---
apiVersion: v1
kind: Service
metadata:
  name: {name}{in_ns}
spec:
  clusterIP: None
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}{in_ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      serviceAccountName: {name}
      containers:
      - name: web
        image: registry.example/bench/web:1.0.0
        ports:
        - {{containerPort: 8080}}
        resources:
          requests: {{cpu: 10m, memory: 16Mi}}
"""


def app_entry(name, repo, path, ns, interval):
    return (f"  - name: {name}\n    source:\n      repo: {json.dumps(repo)}\n"
            f"      ref: main\n      path: {json.dumps(path)}\n"
            f"    destination:\n      namespace: {ns}\n    interval: {interval}\n")


def init_repo(repo):
    os.makedirs(repo, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)


def commit_all(repo, message):
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def cmd_gen_latency(root, drift_apps, poll_interval, ns):
    """Three repos, so that the triggers do not share work: `wh` (webhook, interval 1h),
    `poll` (interval <poll_interval>), `drift` (drift apps, interval 1h)."""
    entries = []
    for kind, apps, interval in (("wh", ["lat-wh"], "1h"), ("poll", ["lat-poll"], poll_interval),
                                 ("drift", [f"lat-drift-{i:02d}" for i in range(int(drift_apps))], "1h")):
        repo = os.path.join(root, kind)
        init_repo(repo)
        for app in apps:
            os.makedirs(os.path.join(repo, "apps", app))
            with open(os.path.join(repo, "apps", app, "app.yaml"), "w") as f:
                f.write(app_yaml(app, ns))
            entries.append(app_entry(app, repo, f"apps/{app}", ns, interval))
        commit_all(repo, f"bench: {kind}")
    with open(os.path.join(root, "ferry.yaml"), "w") as f:
        f.write("apps:\n" + "".join(entries))


def cmd_gen_scale(repo, prefix, n, nss, interval, replicas=1, target="ferry"):
    """One repo with apps/<prefix>-NNNN for N apps (Deployments of <replicas> replicas),
    spread round-robin over <nss> shared namespaces <prefix>-NN; a ferry.yaml next to the
    repo lists every app. <target> kubectl: the objects name their namespace themselves."""
    n, nss, replicas = int(n), int(nss), int(replicas)
    if target not in ("ferry", "kubectl"):
        raise SystemExit(f"gen-scale: target must be ferry or kubectl, not {target}")
    init_repo(repo)
    entries = []
    for i in range(n):
        name = f"{prefix}-{i:04d}"
        ns = f"{prefix}-{i % nss:02d}"
        d = os.path.join(repo, "apps", name)
        os.makedirs(d)
        with open(os.path.join(d, "app.yaml"), "w") as f:
            f.write(app_yaml(name, ns, replicas=replicas, namespaced=target == "kubectl"))
        entries.append(app_entry(name, repo, f"apps/{name}", ns, interval))
    commit_all(repo, f"bench: {n} apps")
    with open(repo + ".ferry.yaml", "w") as f:
        f.write("apps:\n" + "".join(entries))
    print(" ".join(f"{prefix}-{j:02d}" for j in range(nss)))


# --- latency trials ---------------------------------------------------------------------------
def settle_app(agent, app, sha, timeout=60):
    """Waits until the agent reports `app` Synced at `sha` (the reconcile that applied it
    has finished); returns how long after now that was."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        s = agent.json(f"/api/v1/apps/ferry-system/{app}")
        if s.get("revision") == sha and s.get("sync") == "Synced":
            return time.monotonic() - t0
        time.sleep(0.05)
    raise RuntimeError(f"app {app} did not report revision {sha[:8]} within {timeout} s")


def cmd_latency(mode, out, state, agent_url, root, ns, trials, secret, poll_interval, settle):
    kube, agent = Kube(state), Agent(agent_url)
    trials, settle, poll_interval = int(trials), float(settle), float(poll_interval)
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    deps = f"/apis/apps/v1/namespaces/{ns}/deployments"
    rec = open(out, "a")
    if mode in ("webhook", "poll"):
        app = "lat-wh" if mode == "webhook" else "lat-poll"
        repo = os.path.join(root, "wh" if mode == "webhook" else "poll")
        path = os.path.join(repo, "apps", app, "app.yaml")
        for i in range(1, trials + 1):
            if mode == "poll":
                # Start at a random phase of the poll loop: otherwise each commit follows the
                # previous apply by a fixed delay and the latency is not a fair sample.
                time.sleep(random.uniform(0, poll_interval))
            value = f"{mode}-{i}-{random.randrange(1 << 30)}"
            cm = kube.get(f"{cms}/{app}-config")
            events, stop = kube.watch(cms, f"{app}-config", cm["metadata"]["resourceVersion"])
            try:
                t0 = time.monotonic()
                with open(path, "w") as f:
                    f.write(app_yaml(app, ns, value))
                sha = commit_all(repo, f"bench: {value}")
                t_commit = time.monotonic()
                t_hook = t_ack = None
                if mode == "webhook":
                    body = json.dumps({"ref": "refs/heads/main", "after": sha,
                                       "repository": {"clone_url": repo}}).encode()
                    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                    t_hook = time.monotonic()
                    status, resp = agent.request("POST", "/hooks/github", body, {
                        "Content-Type": "application/json", "X-GitHub-Event": "push",
                        "X-Hub-Signature-256": sig})
                    t_ack = time.monotonic()
                    if status != 202:
                        raise RuntimeError(f"webhook: {status} {resp[:300]!r}")
                t1 = wait_event(events, lambda o: o.get("data", {}).get("value") == value, 60)
            finally:
                stop()
            if t1 is None:
                raise RuntimeError(f"{mode} trial {i}: {value} not applied within 60 s")
            done = settle_app(agent, app, sha)
            r = {"mode": mode, "trial": i, "commit_to_applied_s": round(t1 - t0, 4),
                 "commit_s": round(t_commit - t0, 4), "record_s": round(done, 4),
                 "loadavg": loadavg()}
            if t_hook is not None:
                r["webhook_to_applied_s"] = round(t1 - t_hook, 4)
                r["webhook_ack_s"] = round(t_ack - t_hook, 4)
            else:
                r["poll_to_applied_from_commit_s"] = r["commit_to_applied_s"]
            rec.write(json.dumps(r) + "\n")
            rec.flush()
            print(f"[bench] {mode:7s} trial {i:2d}: commit → applied {t1 - t0:6.3f} s"
                  + (f" (webhook → applied {t1 - t_hook:6.3f} s)" if t_hook else ""),
                  file=sys.stderr)
            time.sleep(settle)
    elif mode == "drift":
        apps = sorted(a["name"] for a in agent.json("/api/v1/apps?limit=1000&q=lat-drift-")["items"])
        last = {}
        for i in range(1, trials + 1):
            app = apps[(i - 1) % len(apps)]
            kind = "configmap" if i % 2 == 1 else "deployment"
            # Heals of the same app within 10 s of each other back off on purpose; keep
            # each app's trials further apart than that.
            gap = time.monotonic() - last.get(app, -1e9)
            if gap < 11:
                time.sleep(11 - gap)
            if kind == "configmap":
                coll, name = cms, f"{app}-config"
                patch = {"data": {"value": f"drifted-{i}"}}
                healed = lambda o: o.get("data", {}).get("value") == "v0"  # noqa: E731
                drifted = lambda o: o.get("data", {}).get("value") != "v0"  # noqa: E731
            else:
                coll, name = deps, app
                patch = {"spec": {"replicas": 3}}
                healed = lambda o: o.get("spec", {}).get("replicas") == 1  # noqa: E731
                drifted = lambda o: o.get("spec", {}).get("replicas") != 1  # noqa: E731
            obj = kube.get(f"{coll}/{name}")
            if not healed(obj):
                raise RuntimeError(f"drift trial {i}: {coll}/{name} is not in its Git state")
            events, stop = kube.watch(coll, name, obj["metadata"]["resourceVersion"])
            try:
                t0 = time.monotonic()
                kube.patch(f"{coll}/{name}", patch)
                t_patched = time.monotonic()
                t_seen = wait_event(events, drifted, 30)
                t1 = wait_event(events, healed, 60)
            finally:
                stop()
            last[app] = time.monotonic()
            if t1 is None:
                raise RuntimeError(f"drift trial {i}: {coll}/{name} not healed within 60 s")
            r = {"mode": "drift", "trial": i, "app": app, "kind": kind,
                 "drift_to_healed_s": round(t1 - t0, 4),
                 "patch_s": round(t_patched - t0, 4),
                 "loadavg": loadavg()}
            if t_seen is not None:
                r["drift_event_to_healed_s"] = round(t1 - t_seen, 4)
            rec.write(json.dumps(r) + "\n")
            rec.flush()
            print(f"[bench] drift   trial {i:2d}: {kind:10s} {app}: healed in {t1 - t0:6.3f} s",
                  file=sys.stderr)
            time.sleep(settle)
    else:
        raise SystemExit(f"unknown latency mode {mode}")


# --- scale: cold start and idle ---------------------------------------------------------------
def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def api_requests(kube):
    """The API server's request counts by (verb, resource, subresource), from its /metrics."""
    conn = kube._conn()
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        key = " ".join(x for x in (labels.get("verb", ""), labels.get("resource", ""),
                                    labels.get("subresource", "")) if x)
        out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def counts(agent):
    synced = agent.json("/api/v1/apps?sync=Synced&limit=1")["total"]
    ready = agent.json("/api/v1/apps?sync=Synced&health=Current&limit=1")["total"]
    total = agent.json("/api/v1/apps?limit=1")["total"]
    return total, synced, ready


def cmd_cold(out, agent_url, pid, t_spawn, n, timeout, apiserver_pid, etcd_pid, cm_pid):
    """Polls the agent every second from its start until all N apps are Synced and
    Current (or the timeout); the timeline, the first times at 10/50/90/100 %, CPU and RSS."""
    agent, pid, n, t_spawn, timeout = Agent(agent_url), int(pid), int(n), float(t_spawn), float(timeout)
    others = {"apiserver": int(apiserver_pid), "etcd": int(etcd_pid), "controller_manager": int(cm_pid)}
    # The caller took t_spawn (epoch seconds) right before starting the agent; convert to monotonic.
    t0 = time.monotonic() - (time.time() - t_spawn)
    cpu0 = {k: proc_cpu_s(p) for k, p in others.items()}
    kube = Kube(os.environ["FERRY_TESTBED_STATE"])
    requests0 = api_requests(kube)
    timeline, firsts = [], {}
    t_healthy = None
    while True:
        now = time.monotonic() - t0
        try:
            status, _ = agent.request("GET", "/healthz")
            up = status == 200
        except OSError:
            up = False
        if up and t_healthy is None:
            t_healthy = now
        if up:
            total, synced, ready = counts(agent)
            rss, hwm = proc_mem_kb(pid)
            cpu = proc_cpu_s(pid)
            timeline.append({"t": round(now, 2), "total": total, "synced": synced,
                             "synced_current": ready, "rss_kb": rss, "cpu_s": round(cpu, 2)})
            for label, count, frac in (("synced_50", synced, .5), ("synced_90", synced, .9),
                                       ("synced_100", synced, 1.0), ("ready_10", ready, .1),
                                       ("ready_50", ready, .5), ("ready_90", ready, .9),
                                       ("ready_100", ready, 1.0)):
                if label not in firsts and total >= n and count >= frac * n:
                    firsts[label] = round(now, 2)
            if len(timeline) % (10 if n > 200 else 20) == 1 or ready >= n:
                print(f"[bench]   t={now:6.1f} s  synced {synced:4d}/{n}  synced+current {ready:4d}/{n}"
                      f"  rss {rss / 1024:5.1f} MiB  cpu {cpu:6.1f} s  load {' '.join(loadavg())}",
                      file=sys.stderr)
            if ready >= n:
                break
        if now > timeout:
            print(f"[bench]   timed out after {timeout:.0f} s", file=sys.stderr)
            break
        # Fine steps until the agent serves, then 0.5 s (1 s for large runs: each look is
        # three list requests to the agent, whose CPU is being measured).
        time.sleep(0.05 if not up else 0.5 if n <= 200 else 1.0)
    rss, hwm = proc_mem_kb(pid)
    requests1 = api_requests(kube)
    deltas = {k: int(v - requests0.get(k, 0)) for k, v in requests1.items()}
    api = dict(sorted(((k, v) for k, v in deltas.items() if v > 0), key=lambda kv: -kv[1]))
    status, text = agent.request("GET", "/metrics")
    text = text.decode()
    res = {
        "api_requests": api, "api_requests_total": sum(api.values()),
        "apps": n, "timed_out": "ready_100" not in firsts,
        "healthz_s": t_healthy, "firsts_s": firsts,
        "agent_cpu_s": round(proc_cpu_s(pid), 2), "agent_rss_kb": rss, "agent_peak_rss_kb": hwm,
        "others_cpu_s": {k: round(proc_cpu_s(p) - cpu0[k], 2) for k, p in others.items()},
        "reconciles": int(metric_sum(text, "ferry_reconcile_duration_seconds_count")),
        "reconcile_seconds_sum": round(metric_sum(text, "ferry_reconcile_duration_seconds_sum"), 1),
        "syncs": int(metric_sum(text, "ferry_sync_total")),
        "git_fetches": int(metric_sum(text, "ferry_git_fetch_duration_seconds_count")),
        "loadavg_end": loadavg(), "timeline": timeline,
    }
    json.dump(res, open(out, "w"), indent=1)


def cmd_idle(out, agent_url, pid, seconds, apiserver_pid, etcd_pid):
    """No changes for <seconds>: the agent's CPU seconds (and the apiserver's and etcd's),
    RSS, and how many reconciles and fetches ran meanwhile."""
    agent, pid, seconds = Agent(agent_url), int(pid), float(seconds)
    others = {"apiserver": int(apiserver_pid), "etcd": int(etcd_pid)}

    def snapshot():
        text = agent.request("GET", "/metrics")[1].decode()
        return (proc_cpu_s(pid), {k: proc_cpu_s(p) for k, p in others.items()},
                metric_sum(text, "ferry_reconcile_duration_seconds_count"),
                metric_sum(text, "ferry_git_fetch_duration_seconds_count"), time.monotonic())

    c0, o0, r0, f0, t0 = snapshot()
    time.sleep(seconds)
    c1, o1, r1, f1, t1 = snapshot()
    rss, hwm = proc_mem_kb(pid)
    total, synced, ready = counts(agent)
    minutes = (t1 - t0) / 60
    res = {
        "seconds": round(t1 - t0, 1), "agent_cpu_s": round(c1 - c0, 3),
        "agent_cpu_s_per_min": round((c1 - c0) / minutes, 3),
        "agent_cpu_s_per_hour_extrapolated": round((c1 - c0) / minutes * 60, 1),
        "others_cpu_s_per_min": {k: round((o1[k] - o0[k]) / minutes, 3) for k in others},
        "reconciles": int(r1 - r0), "git_fetches": int(f1 - f0),
        "agent_rss_kb": rss, "agent_peak_rss_kb": hwm,
        "apps_synced_current_at_end": ready, "apps_total": total, "loadavg_end": loadavg(),
    }
    json.dump(res, open(out, "w"), indent=1)
    print(f"[bench]   idle {res['seconds']:.0f} s: agent cpu {res['agent_cpu_s']:.2f} s "
          f"({res['agent_cpu_s_per_min']:.3f} s/min), reconciles {res['reconciles']}, "
          f"rss {rss / 1024:.1f} MiB", file=sys.stderr)


def cmd_noop(out, agent_url, pid, passes, apiserver_pid, etcd_pid):
    """<passes> rounds of a forced no-op reconcile of every app (POST .../sync: resolve,
    render from the cache, plan with a GET and dry-run per object, observe health; nothing
    to apply): wall time per round, and the agent's and the API server's CPU per
    reconcile. What a periodic full resync (Flux's interval, Argo CD's 3-minute refresh)
    would cost, since ferry itself does none when nothing changes."""
    agent, pid, passes = Agent(agent_url), int(pid), int(passes)
    others = {"apiserver": int(apiserver_pid), "etcd": int(etcd_pid)}
    apps = []
    while True:
        page = agent.json(f"/api/v1/apps?limit=1000&offset={len(apps)}")
        apps += [a["name"] for a in page["items"]]
        if not page["items"] or len(apps) >= page["total"]:
            break

    def reconciles():
        text = agent.request("GET", "/metrics")[1].decode()
        return (metric_sum(text, "ferry_reconcile_duration_seconds_count"),
                metric_sum(text, "ferry_sync_total"))

    rounds = []
    for i in range(passes):
        (r0, s0), c0, o0 = reconciles(), proc_cpu_s(pid), {k: proc_cpu_s(p) for k, p in others.items()}
        t0 = time.monotonic()
        for app in apps:
            status, body = agent.request("POST", f"/api/v1/apps/ferry-system/{app}/sync", b"{}",
                                         {"Content-Type": "application/json"})
            if status != 202:
                raise SystemExit(f"POST sync {app}: HTTP {status}: {body[:200]!r}")
        while reconciles()[0] - r0 < len(apps):
            time.sleep(0.2)
        t1 = time.monotonic()
        (r1, s1), c1 = reconciles(), proc_cpu_s(pid)
        o1 = {k: proc_cpu_s(p) for k, p in others.items()}
        rounds.append({"seconds": round(t1 - t0, 2), "reconciles": int(r1 - r0),
                       "succeeded": int(s1 - s0), "agent_cpu_s": round(c1 - c0, 2),
                       "others_cpu_s": {k: round(o1[k] - o0[k], 2) for k in others}})
        print(f"[bench]   no-op round {i + 1}: {len(apps)} apps in {t1 - t0:.1f} s, agent cpu "
              f"{c1 - c0:.1f} s, apiserver cpu {o1['apiserver'] - o0['apiserver']:.1f} s, "
              f"succeeded {int(s1 - s0)}", file=sys.stderr)
        time.sleep(5)
    med = lambda k: statistics.median(r[k] for r in rounds)  # noqa: E731
    res = {"apps": len(apps), "rounds": rounds, "seconds_median": med("seconds"),
           "agent_cpu_s_median": med("agent_cpu_s"),
           "agent_cpu_ms_per_reconcile": round(med("agent_cpu_s") / len(apps) * 1000, 2),
           "apiserver_cpu_ms_per_reconcile": round(
               statistics.median(r["others_cpu_s"]["apiserver"] for r in rounds) / len(apps) * 1000, 2),
           "agent_rss_kb": proc_mem_kb(pid)[0]}
    json.dump(res, open(out, "w"), indent=1)


def deployment_available(obj):
    """The bar ferry's health Current sets for a Deployment: its generation observed, every
    replica (none, for replicas 0) created, updated, ready and available, Progressing with
    reason NewReplicaSetAvailable (or no progress deadline), Available True."""
    spec, st = obj.get("spec", {}), obj.get("status", {})
    want = spec.get("replicas", 1)
    conds = {c.get("type"): c for c in st.get("conditions", [])}
    progressing = ("progressDeadlineSeconds" not in spec
                   or conds.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable")
    return (st.get("observedGeneration", 0) >= obj["metadata"].get("generation", 1)
            and st.get("replicas", 0) == want and st.get("updatedReplicas", 0) >= want
            and st.get("readyReplicas", 0) >= want and st.get("availableReplicas", 0) >= want
            and progressing and conds.get("Available", {}).get("status") == "True")


def cmd_baseline(out, state, apps_dir, ns_prefix, n, timeout, apiserver_pid, etcd_pid, cm_pid):
    """The baseline for a cold start: `kubectl apply --server-side -R` of the same objects,
    with a watch on all Deployments (opened first, so it costs the API server about what one
    client's informer would) until the N in namespaces <ns_prefix>-* are available
    (`deployment_available`): the times to 10, 50 and 100 %, kubectl's CPU seconds and peak
    RSS, and the API server's, etcd's and the controller-manager's CPU seconds meanwhile."""
    kube, n, timeout = Kube(state), int(n), float(timeout)
    others = {"apiserver": int(apiserver_pid), "etcd": int(etcd_pid), "controller_manager": int(cm_pid)}
    coll = "/apis/apps/v1/deployments"
    avail = {}

    def note(obj, deleted=False):
        meta = obj["metadata"]
        if meta["namespace"].startswith(ns_prefix + "-"):
            key = (meta["namespace"], meta["name"])
            if deleted:
                avail.pop(key, None)
            else:
                avail[key] = deployment_available(obj)

    def relist():
        """The current state, and a watch from it (at the start, and whenever a watch ends)."""
        page = kube.get(coll)
        avail.clear()
        for obj in page["items"]:
            note(obj)
        return kube.watch_all(coll, page["metadata"]["resourceVersion"])

    firsts = {}

    def count(t):
        c = sum(avail.values())
        for label, frac in (("available_10", .1), ("available_50", .5), ("available_100", 1.0)):
            if label not in firsts and c >= frac * n:
                firsts[label] = round(t - t0, 2)

    cpu0 = {k: proc_cpu_s(p) for k, p in others.items()}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    events, stop = relist()
    t0 = time.monotonic()
    kubectl = subprocess.Popen(["kubectl", "apply", "--server-side", "-R", "-f", apps_dir],
                               stdout=subprocess.DEVNULL)
    t_applied = None
    while "available_100" not in firsts and time.monotonic() - t0 < timeout:
        if t_applied is None and kubectl.poll() is not None:
            t_applied = time.monotonic() - t0
            if kubectl.returncode:
                raise SystemExit(f"kubectl apply failed (exit {kubectl.returncode})")
            print(f"[bench]   kubectl apply returned after {t_applied:.1f} s", file=sys.stderr)
        try:
            t, ev = events.get(timeout=0.2)
        except queue.Empty:
            continue
        if ev is None or ev.get("type") == "ERROR":
            stop()
            events, stop = relist()
            count(time.monotonic())
            continue
        note(ev["object"], ev["type"] == "DELETED")
        count(t)
    stop()
    if kubectl.wait():
        raise SystemExit(f"kubectl apply failed (exit {kubectl.returncode})")
    if t_applied is None:
        t_applied = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_all = firsts.get("available_100")
    res = {"apps": n, "objects": 4 * n, "kubectl_apply_s": round(t_applied, 1),
           "firsts_s": firsts, "all_available_s": t_all, "available_at_end": sum(avail.values()),
           "kubectl_cpu_s": round(ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime, 2),
           "kubectl_peak_rss_kb": ru1.ru_maxrss,
           "others_cpu_s": {k: round(proc_cpu_s(p) - cpu0[k], 2) for k, p in others.items()},
           "loadavg_end": loadavg()}
    json.dump(res, open(out, "w"), indent=1)
    print(f"[bench]   baseline: all {n} available after "
          f"{t_all if t_all is not None else 'TIMEOUT'} s", file=sys.stderr)


# --- render cost vs repository size ------------------------------------------------------------
def cmd_render_cost(out, ferry, work, sizes, reps):
    """`ferry render` of one 4-object app from repos of 1, 10, 100, 1000 such apps: the
    agent renders each app through the same code (fetch once, check out the revision,
    render the app's directory), so this isolates the per-app cost of the checkout."""
    reps = int(reps)
    res = []
    for n in [int(x) for x in sizes.split(",")]:
        repo = os.path.join(work, f"render-{n}")
        cmd_gen_scale_quiet(repo, f"r{n}", n, 1, "1m")
        env = dict(os.environ, FERRY_CACHE=os.path.join(work, "render-cache"), NO_COLOR="1")
        args = [ferry, "render", f"r{n}-0000", "-f", repo + ".ferry.yaml"]
        subprocess.run(args, env=env, check=True, capture_output=True)  # warm: the mirror
        walls, cpus = [], []
        for _ in range(reps):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            subprocess.run(args, env=env, check=True, capture_output=True)
            walls.append(time.monotonic() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        r = {"repo_apps": n, "repo_files": n, "reps": reps,
             "wall_s_median": round(statistics.median(walls), 3),
             "cpu_s_median": round(statistics.median(cpus), 3), "loadavg": loadavg()}
        res.append(r)
        print(f"[bench]   render 1 app from a repo of {n:5d} apps: wall {r['wall_s_median']:.3f} s, "
              f"cpu {r['cpu_s_median']:.3f} s (median of {reps})", file=sys.stderr)
    json.dump(res, open(out, "w"), indent=1)


def cmd_gen_scale_quiet(*args):
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        cmd_gen_scale(*args)
    finally:
        sys.stdout.close()
        sys.stdout = saved


# --- report -----------------------------------------------------------------------------------
def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def stats(xs):
    return {"n": len(xs), "median": round(statistics.median(xs), 3), "p95": round(pct(xs, .95), 3),
            "mean": round(statistics.mean(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)} if xs else None


def apiserver_etcd_cpu_s(run):
    """The API server's plus etcd's CPU seconds of a cold start or baseline record."""
    o = run.get("others_cpu_s", {})
    return round(o["apiserver"] + o["etcd"], 2) if "apiserver" in o and "etcd" in o else None


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def vs_kubectl(cold, base):
    """The agent's cold start against the kubectl baseline of the same objects: time to
    100 % (Synced and Current vs Deployments available) and API server + etcd CPU."""
    t_agent = cold.get("firsts_s", {}).get("ready_100")
    t_kubectl = base.get("firsts_s", {}).get("available_100")
    c_agent, c_kubectl = apiserver_etcd_cpu_s(cold), apiserver_etcd_cpu_s(base)
    return {"time_to_100_s": {"agent": t_agent, "kubectl": t_kubectl},
            "time_to_100_ratio": ratio(t_agent, t_kubectl),
            "apiserver_etcd_cpu_s": {"agent": c_agent, "kubectl": c_kubectl},
            "apiserver_etcd_cpu_ratio": ratio(c_agent, c_kubectl)}


def num(x, digits=1):
    """A table cell: x with <digits> decimals, or a dash when it was not measured."""
    return "—" if x is None else f"{x:.{digits}f}"


def cmd_report(records_dir, out, meta_path):
    meta = json.load(open(meta_path))
    lat = []
    p = os.path.join(records_dir, "latency.jsonl")
    if os.path.exists(p):
        lat = [json.loads(l) for l in open(p)]
    latency = {}
    for key, mode, field in (("webhook: commit → applied", "webhook", "commit_to_applied_s"),
                             ("webhook: POST → applied", "webhook", "webhook_to_applied_s"),
                             ("webhook: POST → 202", "webhook", "webhook_ack_s"),
                             ("poll: commit → applied", "poll", "commit_to_applied_s"),
                             ("drift → healed (all)", "drift", "drift_to_healed_s")):
        s = stats([r[field] for r in lat if r["mode"] == mode and field in r])
        if s:
            latency[key] = s
    for kind in ("configmap", "deployment"):
        s = stats([r["drift_to_healed_s"] for r in lat if r["mode"] == "drift" and r["kind"] == kind])
        if s:
            latency[f"drift → healed ({kind})"] = s
    scale = []
    for run in meta.get("scale_runs", []):
        cold_p = os.path.join(records_dir, f"cold-{run['prefix']}.json")
        idle_p = os.path.join(records_dir, f"idle-{run['prefix']}.json")
        noop_p = os.path.join(records_dir, f"noop-{run['prefix']}.json")
        base_p = os.path.join(records_dir, f"baseline-{run['prefix']}.json")
        entry = dict(run)
        if os.path.exists(base_p):
            entry["baseline"] = json.load(open(base_p))
        if os.path.exists(noop_p):
            entry["noop"] = json.load(open(noop_p))
        if os.path.exists(cold_p):
            cold = json.load(open(cold_p))
            entry["cold"] = {k: v for k, v in cold.items() if k != "timeline"}
            entry["timeline"] = cold["timeline"]
        if os.path.exists(idle_p):
            entry["idle"] = json.load(open(idle_p))
        if "cold" in entry and "baseline" in entry:
            entry["vs_kubectl"] = vs_kubectl(entry["cold"], entry["baseline"])
        scale.append(entry)
    render = None
    rp = os.path.join(records_dir, "render.json")
    if os.path.exists(rp):
        render = json.load(open(rp))
    flux = {"apps": 1000, "seconds": 256, "rss_mib": 175, "cores": 16}
    result = {"meta": meta, "latency": latency, "scale": scale, "render_cost": render,
              "reference": {"flux_1000_apps": flux,
                            "targets": {"webhook commit → applied": "≤ 1 s + the apply",
                                        "drift → healed median": "< 1 s",
                                        "1000 apps RSS": "< 100 MiB"}},
              "records": lat}
    json.dump(result, open(out, "w"), indent=2)

    print()
    params = meta.get("params", {})
    kcm = (f"{params['kcm_qps'] or 'default'}/{params['kcm_burst'] or 'default'}"
           if "kcm_qps" in params else "default")
    print(f"ferry agent benchmark ({meta['machine']['cpus']} cores, load at start {meta['loadavg_start']}, "
          f"{meta['kubernetes']}, ferry {meta['ferry_commit']}, kube-controller-manager QPS/burst {kcm})")
    if latency:
        print()
        print("| measurement | n | median s | p95 s | mean s | min–max s |")
        print("|---|---|---|---|---|---|")
        for k, s in latency.items():
            print(f"| {k} | {s['n']} | {s['median']:.3f} | {s['p95']:.3f} | {s['mean']:.3f} "
                  f"| {s['min']:.3f}–{s['max']:.3f} |")
    if scale:
        print()
        print("| apps | replicas | conc. | to healthz s | all Synced s | 10 % ready s | 50 % ready s | 90 % ready s "
              "| all ready s | peak RSS MiB | agent CPU s (cold) | apiserver+etcd CPU s (cold) | reconciles "
              "| idle CPU s/min | idle reconciles |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for e in scale:
            c, i = e.get("cold", {}), e.get("idle", {})
            f = c.get("firsts_s", {})
            g = lambda k: f"{f[k]:.1f}" if k in f else "—"  # noqa: E731
            hwm = max(c.get("agent_peak_rss_kb", 0), i.get("agent_peak_rss_kb", 0))
            idle = (f"{i['agent_cpu_s_per_min']:.3f}" if i else "not measured")
            print(f"| {e['apps']} | {e.get('replicas', 1)} | {e['concurrency']} | {c.get('healthz_s') or 0:.1f} "
                  f"| {g('synced_100')} | {g('ready_10')} | {g('ready_50')} | {g('ready_90')} | {g('ready_100')} "
                  f"| {hwm / 1024:.1f} | {c.get('agent_cpu_s', 0):.1f} | {num(apiserver_etcd_cpu_s(c))} "
                  f"| {c.get('reconciles', 0)} | {idle} | {i.get('reconciles', '—')} |")
        for e in scale:
            c = e.get("cold", {})
            if c.get("timed_out"):
                last = e["timeline"][-1] if e.get("timeline") else {}
                print(f"\n{e['apps']} apps (concurrency {e['concurrency']}): NOT all Synced+Current within "
                      f"the timeout; at {last.get('t', 0):.0f} s {last.get('synced', 0)} Synced, "
                      f"{last.get('synced_current', 0)} Synced+Current (idle not measured)")
            if e["apps"] == 1000 and "ready_100" in c.get("firsts_s", {}):
                t = c["firsts_s"]["ready_100"]
                hwm = max(c.get("agent_peak_rss_kb", 0), e.get("idle", {}).get("agent_peak_rss_kb", 0)) / 1024
                print(f"\n1000 apps (concurrency {e['concurrency']}, replicas {e.get('replicas', 1)}; Flux's "
                      f"benchmark: replicas 0): {t:.0f} s vs Flux 256 s ({256 / t:.2f}x), peak RSS {hwm:.0f} MiB "
                      f"vs Flux 175 MiB ({175 / hwm:.2f}x less)")
    based = [e for e in scale if e.get("baseline")]
    if based:
        print()
        print("Cold start against `kubectl apply --server-side` of the same objects on a clean slate "
              "(agent: apps Synced and Current, from the agent's start; kubectl: Deployments available, "
              "from the apply's start; CPU seconds over the same span):")
        print()
        print("| apps | replicas | tool | 10 % s | 50 % s | 100 % s | peak RSS MiB | tool CPU s "
              "| apiserver CPU s | etcd CPU s | apiserver+etcd CPU s | controller-manager CPU s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for e in based:
            c, b = e.get("cold", {}), e["baseline"]
            for tool, r, keys, rss, cpu in (
                    (f"ferry agent (conc. {e['concurrency']})", c, ("ready_10", "ready_50", "ready_100"),
                     c.get("agent_peak_rss_kb"), c.get("agent_cpu_s")),
                    ("kubectl apply --server-side", b, ("available_10", "available_50", "available_100"),
                     b.get("kubectl_peak_rss_kb"), b.get("kubectl_cpu_s"))):
                f, o = r.get("firsts_s", {}), r.get("others_cpu_s", {})
                print(f"| {e['apps']} | {e.get('replicas', 1)} | {tool} | "
                      + " | ".join(num(f.get(k)) for k in keys)
                      + f" | {num(rss / 1024 if rss else None)} | {num(cpu)} | {num(o.get('apiserver'))} "
                      f"| {num(o.get('etcd'))} | {num(apiserver_etcd_cpu_s(r))} | {num(o.get('controller_manager'))} |")
            v = e.get("vs_kubectl", {})
            x = lambda k: "—" if v.get(k) is None else f"{v[k]:.2f}x"  # noqa: E731
            print(f"| {e['apps']} | {e.get('replicas', 1)} | agent / kubectl | | | {x('time_to_100_ratio')} "
                  f"| | | | | {x('apiserver_etcd_cpu_ratio')} | |")
    noops = [e for e in scale if e.get("noop")]
    if noops:
        print()
        print("| apps | forced no-op rounds | s per round (median) | agent CPU s per round | agent CPU ms / reconcile "
              "| apiserver CPU ms / reconcile | an hour of resyncs every 10 min: agent CPU s |")
        print("|---|---|---|---|---|---|---|")
        for e in noops:
            n = e["noop"]
            print(f"| {e['apps']} | {len(n['rounds'])} | {n['seconds_median']:.1f} | {n['agent_cpu_s_median']:.1f} "
                  f"| {n['agent_cpu_ms_per_reconcile']:.2f} | {n['apiserver_cpu_ms_per_reconcile']:.2f} "
                  f"| {6 * n['agent_cpu_s_median']:.0f} |")
    if render:
        print()
        print("| ferry render of 1 app, repo of N apps | wall s (median) | CPU s (median) |")
        print("|---|---|---|")
        for r in render:
            print(f"| {r['repo_apps']} | {r['wall_s_median']:.3f} | {r['cpu_s_median']:.3f} |")
    print(f"\nwrote {out}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"gen-latency": cmd_gen_latency, "gen-scale": cmd_gen_scale, "latency": cmd_latency,
     "cold": cmd_cold, "idle": cmd_idle, "noop": cmd_noop, "baseline": cmd_baseline, "render-cost": cmd_render_cost, "report": cmd_report}[cmd](*args)


if __name__ == "__main__":
    main()
