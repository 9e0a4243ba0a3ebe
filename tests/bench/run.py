#!/usr/bin/env python3
"""run.py — custody's benchmark driver (issue 6). Python 3 standard library.

    python3 tests/bench/run.py --build build [--quick] [--out tests/bench/RESULTS.md]
                               [--json FILE] [--keep]

Measures, in one run on this machine, and prints one markdown table:

  (a) custody cached-token requests at 1, 8 and 64 connections (fake HTTPS
      IdP tests/fixtures/idp.py, `custody init`, one sealed+imported grant,
      custodyd, the cache warmed with one request, then tests/bench/loadgen);
  (b) the same load against tests/bench/echo_server — the floor;
  (b') durable: the same load against echo_server --store, the echo floor
      committing one audit-store row per request before its reply leaves
      (SQLite, WAL, synchronous=FULL; one commit per loop iteration, as
      Redis's appendfsync always) — what durability alone allows;
  (c) Redis SET with appendfsync always on a Unix socket (redis-benchmark);
  (d) ssh-agent REQUEST_IDENTITIES (loadgen --mode sshagent);
  (e) the cold path: first tokens for 1,000 tenants, 64 in parallel, and the
      upstream TCP connections that took (the IdP's counter);
  (f) scale: custodyd start-up time and peak RSS with 10,000 grants; audit
      verify rate and tenant query time on 1,000,000 records (the audit
      helper's bench-audit binary, when built);
  (g) custody-alerts: one first pass over 1,000 tenants x 100 alerts from the
      fixture's Defender API with outputs file + syslog (a real rsyslog over
      TLS; file alone when rsyslogd is missing): wall time, HTTPS connections
      that carried API calls (the IdP's counter), peak RSS; and a first pass
      of 10,000 alerts for one tenant (paged, 1,000 a page).
  (h) ship: cached tokens at 8 connections with no audit sink against a
      syslog-over-TLS sink that never reads (tests/integration/test_ship's
      Stalled), 5 alternating pairs: median rates, their ratio (target
      ≥ 0.95×), custodyd CPU per request, the sink's backlog.

Absolute times on shared machines are noisy: read custody's figures as
ratios against the references measured in the same run. Every process this
starts is stopped by pid, on success and on failure. It installs nothing;
a missing redis-server/redis-benchmark skips (c) with a note.

`--quick` uses short durations and small counts so the whole run is a smoke
test of a few seconds; its figures mean nothing.
"""

import argparse
import base64
import csv
import ctypes
import ctypes.util
import datetime
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

SCOPE = "https://api.securitycenter.microsoft.com/.default"
CONNS = (1, 8, 64)
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("CUSTODY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- helpers

def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def vm_status(pid, key):
    """A /proc/<pid>/status value in KiB (VmHWM, VmRSS), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_s(pid):
    """utime + stime of a process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Ndjson:
    """A blocking NDJSON client for custody's sockets (and the echo server)."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.f = self.sock.makefile("rb")
        self.next_id = 1

    def close(self):
        self.f.close()
        self.sock.close()

    def pipeline(self, reqs, window=64):
        """Send reqs (dicts without id) keeping `window` in flight; replies
        in request order. Raw reply lengths are kept in self.last_lengths."""
        out = [None] * len(reqs)
        ids = {}
        sent = done = 0
        self.last_lengths = [0] * len(reqs)
        while done < len(reqs):
            batch = []
            while sent < len(reqs) and sent - done < window:
                r = dict(reqs[sent])
                r["v"] = 1
                r["id"] = self.next_id
                ids[self.next_id] = sent
                self.next_id += 1
                batch.append(json.dumps(r, separators=(",", ":")).encode() + b"\n")
                sent += 1
            if batch:
                self.sock.sendall(b"".join(batch))
            line = self.f.readline()
            if not line:
                raise BenchError("the broker closed the connection")
            rep = json.loads(line)
            i = ids.pop(rep.get("id"), None)
            if i is None:
                raise BenchError("reply with an unknown id")
            out[i] = rep
            self.last_lengths[i] = len(line)
            done += 1
        return out

    def call(self, req):
        return self.pipeline([req])[0]


def redacted(rep):
    """A reply for an error message: never a token."""
    return {k: v for k, v in rep.items() if k != "access_token"}


def seal_grant(sodium, pk, key_id, grant):
    """The envelope `custody grant seal` writes, made here so thousands of
    grants do not cost thousands of processes (crypto_box_seal via ctypes)."""
    msg = json.dumps(grant).encode()
    out = ctypes.create_string_buffer(len(msg) + 48)  # crypto_box_SEALBYTES
    if sodium.crypto_box_seal(out, msg, ctypes.c_ulonglong(len(msg)), pk) != 0:
        raise BenchError("crypto_box_seal failed")
    return json.dumps({"format": "custody-sealed-grant/1", "recipient": key_id,
                       "sealed": base64.b64encode(out.raw).decode()}, separators=(",", ":"))


def load_sodium():
    name = ctypes.util.find_library("sodium") or "libsodium.so.23"
    sodium = ctypes.CDLL(name)
    if sodium.sodium_init() < 0:
        raise BenchError("sodium_init failed")
    return sodium


# ---------------------------------------------------------------- the run

class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.quick = args.quick
        self.tmp = tempfile.mkdtemp(prefix="cbench-")
        self.procs = []
        self.results = {}
        self.notes = []
        self.failed = []
        self.warmup = 0.2 if self.quick else 2.0
        self.duration = 0.5 if self.quick else 10.0
        self.loadgen_bin = self.bin("tests/bench/loadgen")
        self.echo_bin = self.bin("tests/bench/echo_server")
        self.custodyd_bin = self.bin("broker/custodyd")
        self.custody_bin = self.bin("cli/custody")
        self.reply_bytes = None
        self.loadgen_runs = []
        self.load_start = loadavg()

    def bin(self, rel):
        p = os.path.join(self.build, rel)
        return p if os.access(p, os.X_OK) else None

    def log(self, msg):
        print("bench: " + msg, file=sys.stderr, flush=True)

    # -- processes

    def start(self, argv, name, env=None, stdout=None):
        logf = open(os.path.join(self.tmp, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=stdout or logf, stderr=logf, env=env,
                             stdin=subprocess.DEVNULL)
        p.bench_name = name
        p.bench_log = logf
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            os.kill(p.pid, sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        p.bench_log.close()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            try:
                self.stop(p)
            except OSError:
                pass

    def run(self, argv, timeout=600, check=True, env=None, input=None):
        r = subprocess.run(argv, capture_output=True, timeout=timeout, env=env, input=input)
        if check and r.returncode != 0:
            raise BenchError("%s exited %d: %s" % (os.path.basename(argv[0]), r.returncode,
                                                   r.stderr.decode(errors="replace").strip()[-500:]))
        return r

    def wait_socket(self, path, proc, timeout=20, ping=None):
        """Wait until path accepts a connection (and answers ping, when
        given a request); returns the seconds it took."""
        t0 = time.monotonic()
        while True:
            if proc is not None and proc.poll() is not None:
                raise BenchError("%s exited %d before its socket answered (log: %s)"
                                 % (proc.bench_name, proc.returncode, proc.bench_log.name))
            try:
                s = Ndjson(path, timeout=5)
                try:
                    if ping is not None:
                        rep = s.call(ping)
                        if not rep.get("ok"):
                            raise BenchError("ping refused: %s" % redacted(rep))
                finally:
                    s.close()
                return time.monotonic() - t0
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            if time.monotonic() - t0 > timeout:
                raise BenchError("%s did not answer on %s within %d s" % (
                    proc.bench_name if proc else "server", path, timeout))
            time.sleep(0.002)

    # -- load

    def loadgen(self, label, sock, conns, request=None, lines=None, mode="ndjson", depth=1):
        argv = [self.loadgen_bin, "--socket", sock, "--mode", mode, "--connections", str(conns),
                "--depth", str(depth), "--warmup", str(self.warmup), "--duration", str(self.duration)]
        if request is not None:
            argv += ["--request", request]
        if lines is not None:
            argv += ["--lines", lines]
        timeout = 600 if lines is not None else self.warmup + self.duration + 60
        r = self.run(argv, timeout=timeout, check=False)
        err = r.stderr.decode(errors="replace").strip()
        try:
            res = json.loads(r.stdout.decode().strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise BenchError("loadgen (%s) printed no result (exit %d): %s" % (label, r.returncode, err))
        res["label"] = label
        self.loadgen_runs.append(res)
        if r.returncode != 0 or res["failures"] != 0:
            raise BenchError("loadgen (%s): %d failed replies: %s" % (label, res["failures"], err))
        if res["requests"] == 0:
            raise BenchError("loadgen (%s): no reply inside the measuring window" % label)
        self.log("%-28s %4d conns: %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  p99.9 %7.3f ms" % (
            label, conns, res["rps"], res["p50_us"] / 1000, res["p99_us"] / 1000, res["p999_us"] / 1000))
        return res

    # -- (b) echo floor

    def bench_echo(self):
        sock = os.path.join(self.tmp, "echo.sock")
        size = self.reply_bytes or 1500
        p = self.start([self.echo_bin, sock, str(size)], "echo_server")
        try:
            self.wait_socket(sock, p)
            for c in CONNS:
                self.results[("echo", c)] = self.loadgen(
                    "echo floor", sock, c, request=self.token_line("bench-0"))
        finally:
            self.stop(p)
        self.notes.append("Echo floor reply: %d bytes a line (%s)." % (
            size, "the size of custody's token reply" if self.reply_bytes else "custody not measured"))

    # -- (b') the durable echo floor

    def bench_durable(self):
        """The echo floor with DESIGN.md §7's durability and nothing else:
        echo_server --store inserts one row per request into an audit store
        (the real schema and pragmas) and lets the replies of a loop
        iteration out after its one COMMIT. Its exit line says how many
        rows the commits made durable, checked against the replies."""
        d = os.path.join(self.tmp, "durable")
        os.makedirs(d)
        sock = os.path.join(d, "echo.sock")
        size = self.reply_bytes or 1500
        p = self.start([self.echo_bin, sock, str(size), "--store", d], "echo_durable")
        replies = 0
        try:
            self.wait_socket(sock, p)
            for c in CONNS:
                res = self.loadgen("durable echo floor", sock, c, request=self.token_line("bench-0"))
                self.results[("durable", c)] = res
                replies += res["requests"]
        finally:
            self.stop(p)
        with open(p.bench_log.name, errors="replace") as f:
            text = f.read()
        m = re.search(r"echo_server: committed (\d+) rows in (\d+) commits", text)
        if p.returncode != 0 or m is None:
            raise BenchError("echo_server --store exited %s without its commit count: %s" % (
                p.returncode, text.strip()[-500:]))
        rows, commits = int(m.group(1)), int(m.group(2))
        # every reply counted left after its row's commit
        if rows < replies or not 0 < commits <= rows:
            raise BenchError("echo_server --store: %d rows in %d commits for %d replies" % (
                rows, commits, replies))
        left = [n for n in os.listdir(d) if n.startswith("echo_server-")]
        if left:
            raise BenchError("echo_server --store left its store behind: %s" % left)
        self.results["durable_store"] = {"rows": rows, "commits": commits, "replies": replies}
        self.log("durable echo floor: %d rows in %d commits (%.1f a commit)" % (
            rows, commits, rows / commits))
        self.notes.append("Durable echo floor (echo_server --store): %s rows in %s commits over its "
                          "three load points, %.1f rows a commit." % (
                              "{:,}".format(rows), "{:,}".format(commits), rows / commits))

    # -- (c) Redis

    def bench_redis(self):
        server, client = shutil.which("redis-server"), shutil.which("redis-benchmark")
        if not server or not client:
            self.notes.append("(c) skipped: redis-server/redis-benchmark not installed "
                              "(Debian: apt-get install redis-server redis-tools).")
            self.log("redis not installed: skipping (c)")
            return
        d = os.path.join(self.tmp, "redis")
        os.mkdir(d)
        sock = os.path.join(d, "redis.sock")
        p = self.start([server, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                        "--appendonly", "yes", "--appendfsync", "always", "--dir", d,
                        "--save", "", "--daemonize", "no"], "redis")
        try:
            t0 = time.monotonic()
            while not os.path.exists(sock):
                if p.poll() is not None or time.monotonic() - t0 > 20:
                    raise BenchError("redis-server did not start (log: %s)" % p.bench_log.name)
                time.sleep(0.01)
            for c in CONNS:
                n = 2000
                res = self.redis_benchmark(client, sock, c, n)
                if not self.quick:
                    # Size -n so the measuring run lasts about --duration.
                    n = max(n, int(res["rps"] * self.duration))
                    cpu0 = proc_cpu_s(p.pid)
                    res = self.redis_benchmark(client, sock, c, n)
                    # redis-server's own CPU per SET (all its threads), to
                    # set beside custodyd's from the profile
                    res["cpu_us_per_req"] = (proc_cpu_s(p.pid) - cpu0) * 1e6 / n
                self.results[("redis", c)] = res
                self.log("%-28s %4d conns: %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms" % (
                    "redis SET fsync always", c, res["rps"], res["p50_us"] / 1000, res["p99_us"] / 1000))
        finally:
            self.stop(p)

    def redis_benchmark(self, client, sock, conns, n):
        r = self.run([client, "-s", sock, "-t", "set", "-c", str(conns), "-n", str(n), "--csv"],
                     timeout=600)
        rows = list(csv.DictReader(io.StringIO(r.stdout.decode())))
        row = next((x for x in rows if x.get("test") == "SET"), None)
        if row is None:
            raise BenchError("redis-benchmark printed no SET row: %r" % r.stdout[:300])
        return {"rps": float(row["rps"]), "p50_us": float(row["p50_latency_ms"]) * 1000,
                "p99_us": float(row["p99_latency_ms"]) * 1000, "requests": n,
                "mean_us": float(row["avg_latency_ms"]) * 1000,
                "max_us": float(row["max_latency_ms"]) * 1000}

    # -- (d) ssh-agent

    # -- (c') the storage floor: DESIGN.md §7's SQLite alone

    def bench_floor(self):
        """Commit rates of the audit store's own schema and pragmas with none
        of custody's work (tests/bench/sqlite_floor.c): what custody could
        reach if everything but the durable write cost nothing."""
        exe = self.bin("tests/bench/sqlite-floor")
        if exe is None:
            self.notes.append("(c') SQLite floor skipped: tests/bench/sqlite-floor is not built.")
            return
        d = os.path.join(self.tmp, "floor")
        os.makedirs(d)
        secs = 0.3 if self.quick else 3.0
        r = self.run([exe, "--seconds", str(secs), "--dir", d], timeout=600)
        res = json.loads(r.stdout.decode().strip().splitlines()[-1])
        self.results["floor"] = res
        self.log("SQLite floor: 1 row/commit %.0f/s (p50 %.3f ms), 64 rows/commit 1 tenant %.0f rows/s, "
                 "64 rows/commit 100 tenants %.0f rows/s" % (
                     res["floor_1x1_per_s"], res["floor_1x1_p50_us"] / 1000,
                     res["floor_64x1_per_s"], res["floor_64x100_per_s"]))

    def bench_sshagent(self):
        agent, add, keygen = shutil.which("ssh-agent"), shutil.which("ssh-add"), shutil.which("ssh-keygen")
        if not agent or not add or not keygen:
            self.notes.append("(d) skipped: OpenSSH client tools not installed.")
            return
        sock = os.path.join(self.tmp, "agent.sock")
        key = os.path.join(self.tmp, "id_ed25519")
        self.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key])
        p = self.start([agent, "-D", "-a", sock], "ssh-agent")
        try:
            t0 = time.monotonic()
            while not os.path.exists(sock):
                if p.poll() is not None or time.monotonic() - t0 > 20:
                    raise BenchError("ssh-agent did not start (log: %s)" % p.bench_log.name)
                time.sleep(0.01)
            env = dict(os.environ, SSH_AUTH_SOCK=sock)
            self.run([add, "-q", key], env=env)
            for c in CONNS:
                self.results[("sshagent", c)] = self.loadgen("ssh-agent identities", sock, c,
                                                             mode="sshagent")
        finally:
            self.stop(p)

    # -- custody set-up shared by (a), (e), (f)

    def token_line(self, tenant):
        return '{"v":1,"id":@ID@,"op":"token","tenant":"%s","scope":"%s"}' % (tenant, SCOPE)

    def start_idp(self, d, apps):
        os.makedirs(d, exist_ok=True)
        apps_file = os.path.join(d, "apps.json")
        with open(apps_file, "w") as f:
            json.dump(apps, f)
        info = os.path.join(d, "idp.out")
        out = open(info, "wb")
        try:
            p = self.start([sys.executable, self.args.idp or os.path.join(SOURCE, "tests", "fixtures", "idp.py"),
                            "--dir", d, "--port", "0", "--apps", apps_file], "idp", stdout=out)
        finally:
            out.close()
        t0 = time.monotonic()
        while True:
            with open(info) as f:
                text = f.read()
            if text.endswith("\n"):
                break
            if p.poll() is not None or time.monotonic() - t0 > 120:
                raise BenchError("the IdP did not start (log: %s)" % p.bench_log.name)
            time.sleep(0.02)
        meta = json.loads(text.splitlines()[0])
        return p, meta

    def idp_control(self, meta, method, path, body=None):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", meta["control_port"], timeout=30)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise BenchError("IdP control %s %s: %d" % (method, path, r.status))
            return json.loads(data) if data else {}
        finally:
            c.close()

    def custody_env(self, name, idp_meta):
        """A fresh state dir and config; `custody init`; returns a dict."""
        base = os.path.join(self.tmp, name)
        os.makedirs(base)
        cfg = {
            "state_dir": os.path.join(base, "state"),
            "runtime_dir": os.path.join(base, "run"),
            "key_file": os.path.join(base, "master.key"),
            "principals": [{"name": "bench", "match": {"uid": os.getuid()}, "tenants": ["*"]}],
            "upstream": {"ca_file": idp_meta["ca"], "allowed_hosts": ["127.0.0.1"]},
            "audit": {"origin": "bench.custody.invalid/audit"},
            "limits": {"max_connections": 4096, "max_connections_per_uid": 1024},
        }
        path = os.path.join(base, "custody.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        env = {"config": path, "base": base,
               "tool": os.path.join(cfg["runtime_dir"], "custody.sock"),
               "admin": os.path.join(cfg["runtime_dir"], "admin.sock")}
        self.run([self.custody_bin, "init", "--config", path])
        keys = json.loads(self.run([self.custody_bin, "keys", "--json", "--config", path]).stdout)
        env["seal_pk"] = base64.b64decode(keys["seal_public_key"])
        env["seal_key_id"] = keys["seal_key_id"]
        return env

    def start_custodyd(self, env, name="custodyd"):
        t0 = time.monotonic()
        p = self.start([self.custodyd_bin, "--config", env["config"], "--foreground"], name)
        self.wait_socket(env["tool"], p, timeout=120, ping={"op": "ping"})
        return p, time.monotonic() - t0

    def make_apps(self, n):
        """n IdP apps; app i belongs to tenant `bench-i` (its custody name)."""
        apps = []
        for i in range(n):
            tid = str(uuid.UUID(int=0x5eed0000_0000_4000_8000_000000000000 + i))
            secret = base64.b64encode(os.urandom(30)).decode()
            apps.append({"tenant_id": tid, "tenant_name": "bench-%d.example" % i,
                         "client_id": str(uuid.uuid4()), "secret": secret})
        return apps

    def grant_for(self, i, app, idp_port):
        return {
            "custody_grant": 1,
            "tenant_id": app["tenant_id"],
            "tenant_name": "bench-%d" % i,
            "token_endpoint": "https://127.0.0.1:%d/%s/oauth2/v2.0/token" % (idp_port, app["tenant_id"]),
            "client_id": app["client_id"],
            "client_secret": app["secret"],
            "scopes": [SCOPE],
        }

    def import_grants(self, env, sodium, apps, idp_port):
        """Seal every app's grant and import it over the admin socket."""
        reqs = [{"op": "grant.import",
                 "sealed": seal_grant(sodium, env["seal_pk"], env["seal_key_id"],
                                      self.grant_for(i, a, idp_port))} for i, a in enumerate(apps)]
        c = Ndjson(env["admin"], timeout=120)
        try:
            t0 = time.monotonic()
            reps = c.pipeline(reqs, window=64)
            dt = time.monotonic() - t0
        finally:
            c.close()
        bad = [r for r in reps if not r.get("ok")]
        if bad:
            raise BenchError("%d of %d grant imports failed; first: %s" % (len(bad), len(reps), redacted(bad[0])))
        return dt

    # -- (a) cached tokens

    def bench_custody_cached(self, sodium):
        apps = self.make_apps(1)
        idp, meta = self.start_idp(os.path.join(self.tmp, "idp-a"), apps)
        try:
            env = self.custody_env("custody-a", meta)
            # One grant through the real CLI path: seal, import.
            secret_file = os.path.join(env["base"], "secret")
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(apps[0]["secret"])
            pkf = os.path.join(env["base"], "broker.pub")
            with open(pkf, "w") as f:
                f.write(base64.b64encode(env["seal_pk"]).decode() + "\n")
            sealed = os.path.join(env["base"], "grant.sealed")
            self.run([self.custody_bin, "grant", "seal", "--broker-key", pkf,
                      "--tenant-id", apps[0]["tenant_id"], "--tenant-name", "bench-0",
                      "--client-id", apps[0]["client_id"], "--client-secret-file", secret_file,
                      "--scope", SCOPE, "--token-endpoint",
                      "https://127.0.0.1:%d/%s/oauth2/v2.0/token" % (meta["port"], apps[0]["tenant_id"]),
                      "--output", sealed, "--config", env["config"]])
            os.unlink(secret_file)
            broker, _ = self.start_custodyd(env)
            self.broker_pid = broker.pid
            try:
                self.run([self.custody_bin, "grant", "import", sealed, "--config", env["config"]])
                c = Ndjson(env["tool"])
                try:
                    rep = c.call({"op": "token", "tenant": "bench-0", "scope": SCOPE})
                    if not rep.get("ok"):
                        raise BenchError("first token request failed: %s" % redacted(rep))
                    rep = c.call({"op": "token", "tenant": "bench-0", "scope": SCOPE})
                    if not rep.get("ok") or rep.get("cache") != "hit":
                        raise BenchError("second token request was not a cache hit: %s" % redacted(rep))
                    self.reply_bytes = c.last_lengths[0]
                finally:
                    c.close()
                calls_before = self.idp_control(meta, "GET", "/counters")["token_calls_total"]
                for n in CONNS:
                    self.results[("custody", n)] = self.loadgen(
                        "custody cached token", env["tool"], n, request=self.token_line("bench-0"))
                if self.args.profile or (not self.quick and not self.args.no_profile):
                    self.profile(broker, env)
                calls_after = self.idp_control(meta, "GET", "/counters")["token_calls_total"]
                self.notes.append("(a) upstream token calls during the cached-token runs: %d "
                                  "(the cache answered everything else)." % (calls_after - calls_before))
                self.results["custody_rss_after_load"] = vm_status(broker.pid, "VmHWM")
            finally:
                self.stop(broker)
        finally:
            self.stop(idp)

    def profile(self, broker, env):
        """Where custodyd's time goes on the cached-token path: CPU, context
        switches and syscalls per request (perf stat over an exact number of
        requests), and which syscalls (strace -c -f: fsync placement, the
        mmap/mprotect/munmap that sodium_malloc costs)."""
        n = 400 if self.quick else 20000
        lines = os.path.join(self.tmp, "profile-lines.ndjson")
        with open(lines, "w") as f:
            for _ in range(n):
                f.write(self.token_line("bench-0") + "\n")
        conns = 64
        prof = {"requests": n, "connections": conns}
        perf = shutil.which("perf")
        # Two passes: CPU and context switches alone, then the syscall
        # count. Counting the raw_syscalls tracepoint adds kernel time to
        # every syscall, which is the tracer's cost, not custodyd's. The
        # second pass also counts the block requests custodyd's threads
        # issue per commit (fdatasync): a commit that also writes the WAL's
        # inode costs a second device round trip.
        for i, events in enumerate(("task-clock,context-switches",
                                    "raw_syscalls:sys_enter,syscalls:sys_enter_fdatasync,"
                                    "block:block_rq_issue")):
            if not perf:
                break
            out = os.path.join(self.tmp, "perf-stat-%d.txt" % i)
            ps = self.start([perf, "stat", "-x", ",", "-e", events,
                             "-p", str(broker.pid), "-o", out], "perf-%d" % i)
            time.sleep(0.5)  # perf attaches
            self.loadgen("custody (under perf stat %s)" % events, env["tool"], conns, lines=lines)
            self.stop(ps, signal.SIGINT)
            with open(out) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                        prof[parts[2]] = float(parts[0])
        if perf and self.args.perf_record:
            pr = self.start([perf, "record", "-g", "-e", "cpu-clock", "-F", "4000",
                             "-p", str(broker.pid), "-o", self.args.perf_record], "perf-record")
            time.sleep(0.5)
            self.loadgen("custody (under perf record)", env["tool"], conns, lines=lines)
            self.stop(pr, signal.SIGINT)
        strace = shutil.which("strace")
        if strace:
            out = os.path.join(self.tmp, "strace.txt")
            st = self.start([strace, "-f", "-c", "-o", out, "-p", str(broker.pid)], "strace")
            time.sleep(0.5)
            m = max(100, n // 10)
            with open(lines) as f:
                few = f.readlines()[:m]
            short = os.path.join(self.tmp, "profile-lines-short.ndjson")
            with open(short, "w") as f:
                f.writelines(few)
            self.loadgen("custody (under strace -c)", env["tool"], conns, lines=short)
            time.sleep(0.3)
            self.stop(st, signal.SIGINT)
            calls = {}
            with open(out) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                        calls[parts[-1]] = int(parts[3])
            prof["strace_requests"] = m
            prof["syscalls_per_request"] = {k: v / m for k, v in
                                            sorted(calls.items(), key=lambda kv: -kv[1])}
        self.results["profile"] = prof
        if "raw_syscalls:sys_enter" in prof:
            self.log("profile: %.0f us CPU, %.1f syscalls, %.2f context switches per request" % (
                prof.get("task-clock", 0) * 1000 / n, prof["raw_syscalls:sys_enter"] / n,
                prof.get("context-switches", 0) / n))

    # -- (e) cold path

    def bench_custody_cold(self, sodium):
        n = 50 if self.quick else 1000
        apps = self.make_apps(n)
        idp, meta = self.start_idp(os.path.join(self.tmp, "idp-e"), apps)
        try:
            env = self.custody_env("custody-e", meta)
            broker, _ = self.start_custodyd(env)
            try:
                dt = self.import_grants(env, sodium, apps, meta["port"])
                self.log("imported %d grants in %.2f s" % (n, dt))
                self.idp_control(meta, "POST", "/reset")
                lines = os.path.join(self.tmp, "cold-lines.ndjson")
                with open(lines, "w") as f:
                    for i in range(n):
                        f.write(self.token_line("bench-%d" % i) + "\n")
                res = self.loadgen("custody cold path", env["tool"], min(64, n), lines=lines)
                counters = self.idp_control(meta, "GET", "/counters")
                if res["requests"] != n:
                    raise BenchError("cold path: %d replies for %d tenants" % (res["requests"], n))
                self.results["cold"] = {"tenants": n, "seconds": res["seconds"],
                                        "connections": counters.get("connections"),
                                        "token_calls": counters.get("token_calls_total"),
                                        "p50_us": res["p50_us"], "p99_us": res["p99_us"]}
                self.log("cold path: %d tenants in %.3f s, %s upstream TCP connections, %s token calls" % (
                    n, res["seconds"], counters.get("connections"), counters.get("token_calls_total")))
            finally:
                self.stop(broker)
        finally:
            self.stop(idp)

    # -- (f) scale

    def bench_custody_scale(self, sodium):
        n = 200 if self.quick else 10000
        apps = self.make_apps(n)
        idp, meta = self.start_idp(os.path.join(self.tmp, "idp-f"), [])
        try:
            env = self.custody_env("custody-f", meta)
            # The same daemon on an empty vault is the reference.
            broker, empty_startup = self.start_custodyd(env, "custodyd-import")
            empty_hwm = vm_status(broker.pid, "VmHWM")
            try:
                dt = self.import_grants(env, sodium, apps, meta["port"])
                self.log("imported %d grants in %.2f s (%.0f imports/s)" % (n, dt, n / dt))
                self.results["import_rate"] = n / dt
            finally:
                self.stop(broker)
            broker, startup = self.start_custodyd(env, "custodyd-scale")
            try:
                hwm = vm_status(broker.pid, "VmHWM")
                c = Ndjson(env["tool"])
                try:
                    t0 = time.monotonic()
                    reps = c.pipeline([{"op": "tenants"}])
                    tenants_s = time.monotonic() - t0
                finally:
                    c.close()
                count = len(reps[0].get("tenants", [])) if reps[0].get("ok") else None
            finally:
                self.stop(broker)
            self.results["scale"] = {"grants": n, "startup_s": startup, "hwm_kib": hwm,
                                     "empty_startup_s": empty_startup, "empty_hwm_kib": empty_hwm,
                                     "tenants_listed": count, "tenants_op_s": tenants_s}
            self.log("scale: %d grants, start-up %.3f s, VmHWM %s KiB" % (n, startup, hwm))
        finally:
            self.stop(idp)

    def bench_audit(self):
        """Audit verify rate and tenant query time on 1,000,000 records: the
        audit helper's bench-audit when built, else tests/bench/audit_gen
        (real audit library) plus `custody audit verify` on its database."""
        n = 20000 if self.quick else 1000000
        d = os.path.join(self.tmp, "audit")
        os.makedirs(d)
        exe = None
        for rel in ("tests/bench/bench-audit", "tests/bench/bench_audit", "audit/bench-audit"):
            exe = self.bin(rel)
            if exe:
                break
        if exe is not None:
            r = self.run([exe, "--records", str(n), "--dir", d], timeout=3600, check=False)
            if r.returncode != 0:
                raise BenchError("bench-audit exited %d: %s" % (
                    r.returncode, r.stderr.decode(errors="replace")[-500:]))
            text = r.stdout.decode(errors="replace")
            self.results["audit"] = parse_audit_output(text)
            self.results["audit"]["records"] = n
            self.results["audit"]["source"] = "bench-audit"
            self.results["audit_raw"] = text
            return
        gen = self.bin("tests/bench/audit_gen")
        if gen is None:
            self.notes.append("(f) audit figures skipped: neither bench-audit nor audit_gen is built.")
            return
        db = os.path.join(d, "audit.db")
        tenants = 1000
        self.log("audit: writing %d records over %d tenants" % (n, tenants))
        r = self.run([gen, db, str(n), str(tenants)], timeout=3600)
        res = json.loads(r.stdout.decode().strip().splitlines()[-1])
        res["source"] = "audit_gen"
        if self.custody_bin:
            t0 = time.monotonic()
            self.run([self.custody_bin, "audit", "verify", "--db", db, "--key", res["verifier_key"]],
                     timeout=3600)
            res["cli_verify_s"] = time.monotonic() - t0
            res["cli_verify_records_per_s"] = n / res["cli_verify_s"]
        self.results["audit"] = res
        self.log("audit: append %.0f records/s, verify %.0f records/s (library)%s, tenant query %.2f ms (%d rows)" % (
            res["append_records_per_s"], res["verify_records_per_s"],
            ", %.0f records/s (custody audit verify)" % res["cli_verify_records_per_s"]
            if "cli_verify_records_per_s" in res else "", res["tenant_query_ms"], res["tenant_query_rows"]))

    # -- (i) the customer's report

    def timed(self, argv, timeout=600):
        """Run argv; (wall seconds, CPU seconds of all its threads)."""
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                p.wait()
                raise BenchError("%s timed out" % " ".join(argv[:3]))
            time.sleep(0.005)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        if p.returncode != 0:
            raise BenchError("%s exited %d: %s" % (" ".join(argv[:3]), p.returncode, err[-500:]))
        return wall, ru.ru_utime + ru.ru_stime

    def bench_report(self):
        """`custody audit report` (and `audit verify --export`) on a
        100,000-record export over 120 days from tests/integration/report-gen
        (issue 18: renders in < 3 s). Runs alternate; each run's wall clock
        and CPU (all threads); the best of 3 is the figure, the others show
        the spread."""
        gen = self.bin("tests/integration/report-gen")
        if gen is None or not self.custody_bin:
            self.notes.append("(i) report skipped: tests/integration/report-gen or custody is not built.")
            return
        n, days, runs = (5000, 30, 1) if self.quick else (100000, 120, 3)
        d = os.path.join(self.tmp, "report")
        os.makedirs(d)
        exp, page = os.path.join(d, "export.json"), os.path.join(d, "report.html")
        self.log("report: writing a %d-record export over %d days" % (n, days))
        key = self.run([gen, exp, str(n), str(days)], timeout=600).stdout.decode().split()[0]
        res = {"records": n, "days": days, "bytes": os.path.getsize(exp), "report": [], "verify": []}
        for _ in range(runs):
            res["report"].append(self.timed([self.custody_bin, "audit", "report", "--export", exp,
                                             "--key", key, "--output", page]))
            res["verify"].append(self.timed([self.custody_bin, "audit", "verify", "--export", exp,
                                             "--key", key]))
        res["page_bytes"] = os.path.getsize(page)
        self.results["report"] = res
        for kind in ("report", "verify"):
            self.log("report: audit %s: %s" % (kind, ", ".join(
                "%.2f s wall %.2f s CPU" % r for r in res[kind])))

    # -- (g) custody-alerts

    def alerts_pass(self, cfg, name):
        """custody-alerts run --once with cfg; (seconds, peak RSS KiB, stderr)."""
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        err = open(os.path.join(self.tmp, name + ".log"), "wb")
        # GNU time reports the connector's own peak RSS; a child forked
        # straight from this (large) Python process would count its pages
        # from before the exec too
        gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
        argv = [self.alerts_bin, "run", "--once", "--config", path]
        if gnu_time:
            argv = [gnu_time, "-f", "custody-alerts-maxrss-kib %M"] + argv
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.close()
        with open(err.name, errors="replace") as f:
            text = f.read()
        if p.returncode != 0:
            raise BenchError("custody-alerts (%s) exited %d: %s" % (name, p.returncode, text[-500:]))
        m = re.search(r"custody-alerts-maxrss-kib (\d+)", text)
        return dt, int(m.group(1)) if m else ru.ru_maxrss, text

    def bench_alerts(self, sodium):
        self.alerts_bin = self.bin("alerts/custody-alerts")
        if self.alerts_bin is None:
            self.notes.append("(g) skipped: alerts/custody-alerts is not built.")
            return
        n, per = (20, 10) if self.quick else (1000, 100)
        big = 1000 if self.quick else 10000
        apps = self.make_apps(n + 1)
        idp, meta = self.start_idp(os.path.join(self.tmp, "idp-g"), apps)
        rsys = None
        try:
            env = self.custody_env("custody-g", meta)
            broker, _ = self.start_custodyd(env)
            try:
                self.import_grants(env, sodium, apps, meta["port"])
                t0 = time.monotonic()
                batch = [{"tenant": a["tenant_id"], "count": per, "age_s": 7200} for a in apps[:n]]
                for i in range(0, n, 100):
                    self.idp_control(meta, "POST", "/alerts", batch[i:i + 100])
                self.idp_control(meta, "POST", "/alerts",
                                 {"tenant": apps[n]["tenant_id"], "count": big, "age_s": 7200})
                self.log("alerts: %d tenants x %d alerts + one of %d generated in %.1f s" % (
                    n, per, big, time.monotonic() - t0))
                outputs = [{"type": "file", "path": os.path.join(self.tmp, "alerts.ndjson")}]
                if shutil.which("rsyslogd") or os.path.exists("/usr/sbin/rsyslogd"):
                    sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
                    sys.path.insert(0, os.path.join(SOURCE, "tests", "fixtures"))
                    from alerts_env import Rsyslog
                    rsys = Rsyslog(self.tmp).start()
                    outputs.append({"type": "syslog", "url": "tls://127.0.0.1:%d" % rsys.port,
                                    "ca_file": rsys.ca, "format": "cef"})
                else:
                    self.notes.append("(g) rsyslogd is not installed: the pass ran with the "
                                      "file output alone.")
                cfg = {"socket": env["tool"], "state_dir": os.path.join(self.tmp, "alerts-state"),
                       "api_base": "https://127.0.0.1:%d" % meta["port"], "ca_file": meta["ca"],
                       "tenants": ["bench-%d" % i for i in range(n)], "page_size": 1000,
                       "outputs": outputs}
                self.idp_control(meta, "POST", "/reset")
                dt, rss, _ = self.alerts_pass(cfg, "alerts-1000")
                cnt = self.idp_control(meta, "GET", "/counters")
                with open(outputs[0]["path"]) as f:
                    lines = sum(1 for _ in f)
                if lines != n * per:
                    raise BenchError("custody-alerts wrote %d alerts of %d" % (lines, n * per))
                received = None
                if rsys is not None:
                    t1 = time.monotonic()
                    def count():
                        try:
                            with open(rsys.out, "rb") as f:
                                return sum(1 for _ in f)
                        except FileNotFoundError:
                            return 0
                    while count() < n * per and time.monotonic() - t1 < 60:
                        time.sleep(0.2)
                    received = count()
                self.results["alerts"] = {"tenants": n, "per_tenant": per, "seconds": dt,
                                          "rss_kib": rss, "api_connections": cnt["api_connections"],
                                          "api_calls": cnt["api_calls"],
                                          "connections": cnt["connections"],
                                          "syslog": rsys is not None, "syslog_received": received}
                self.log("alerts: %d tenants x %d in %.2f s, %d API connections (%d calls), "
                         "peak RSS %.1f MiB, rsyslog received %s" % (
                             n, per, dt, cnt["api_connections"], cnt["api_calls"], rss / 1024,
                             received))
                cfg["tenants"] = ["bench-%d" % n]
                cfg["state_dir"] = os.path.join(self.tmp, "alerts-state-big")
                outputs[0]["path"] = os.path.join(self.tmp, "alerts-big.ndjson")
                dt, rss, _ = self.alerts_pass(cfg, "alerts-big")
                with open(outputs[0]["path"]) as f:
                    lines = sum(1 for _ in f)
                if lines != big:
                    raise BenchError("custody-alerts wrote %d alerts of %d" % (lines, big))
                self.results["alerts_big"] = {"alerts": big, "seconds": dt, "rss_kib": rss}
                self.log("alerts: one tenant, %d alerts in %.2f s, peak RSS %.1f MiB" % (
                    big, dt, rss / 1024))
            finally:
                self.stop(broker)
        finally:
            if rsys is not None:
                rsys.stop()
            self.stop(idp)

    # -- (h) a stalled audit sink against none

    def bench_ship(self, sodium):
        """Cached tokens at 8 connections with no sink, then with a
        syslog-over-TLS sink that completed the handshake and never reads
        (its buffers fill, the shipper thread blocks), alternating pairs
        against the shared machine's drift; the broker restarts for each
        run because sinks are read at start. Rates and custodyd's CPU
        seconds per request, both; the CPU figure moves less with what
        else the machine runs."""
        sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
        sys.path.insert(0, os.path.join(SOURCE, "tests", "fixtures"))
        from idp import make_certs
        from test_ship import Stalled
        pairs = 2 if self.quick else 5
        apps = self.make_apps(1)
        idp, meta = self.start_idp(os.path.join(self.tmp, "idp-h"), apps)
        stalled = None
        try:
            env = self.custody_env("custody-h", meta)
            certs = make_certs(os.path.join(env["base"], "certs"))
            stalled = Stalled(certs)
            with open(env["config"]) as f:
                cfg = json.load(f)
            runs = {"none": [], "stalled": []}
            backlog = 0
            imported = False
            for kind in ("none", "stalled") * pairs:
                cfg["audit"]["ship"] = [] if kind == "none" else [
                    {"type": "syslog", "url": "tls://127.0.0.1:%d" % stalled.port, "ca_file": certs[0]}]
                with open(env["config"], "w") as f:
                    json.dump(cfg, f, indent=1)
                broker, _ = self.start_custodyd(env, "custodyd-h-%s" % kind)
                try:
                    if not imported:
                        self.import_grants(env, sodium, apps, meta["port"])
                        imported = True
                    c = Ndjson(env["tool"])
                    try:
                        # the first is a cache miss; with the sink, enough
                        # records to fill the receiver's buffers
                        reqs = [{"op": "token", "tenant": "bench-0", "scope": SCOPE}] * (
                            2000 if kind == "stalled" else 1)
                        bad = [r for r in c.pipeline(reqs) if not r.get("ok")]
                        if bad:
                            raise BenchError("token request failed: %s" % redacted(bad[0]))
                    finally:
                        c.close()
                    cpu0 = proc_cpu_s(broker.pid)
                    r = self.loadgen("cached token, %s sink" % kind, env["tool"], 8,
                                     request=self.token_line("bench-0"))
                    cpu = proc_cpu_s(broker.pid) - cpu0
                    # the loadgen counts the measuring window only; the CPU
                    # covers warm-up too: per request over both, at the rate measured
                    r["cpu_per_req_us"] = 1e6 * cpu / (r["rps"] * (self.warmup + self.duration))
                    if kind == "stalled":
                        a = Ndjson(env["admin"])
                        try:
                            st = a.call({"op": "status"})["status"]["ship"][0]
                        finally:
                            a.close()
                        if not st["backlog"] > 0:
                            raise BenchError("the stalled sink holds no backlog: %s" % st)
                        backlog = max(backlog, st["backlog"])
                    runs[kind].append(r)
                    self.log("%s sink: %.1f µs custodyd CPU per request" % (kind, r["cpu_per_req_us"]))
                finally:
                    self.stop(broker)

            def median(xs):
                xs = sorted(xs)
                n = len(xs)
                return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

            self.results["ship"] = {
                "pairs": pairs, "backlog": backlog,
                "rps": {k: [r["rps"] for r in v] for k, v in runs.items()},
                "cpu_per_req_us": {k: [r["cpu_per_req_us"] for r in v] for k, v in runs.items()},
                "rps_median": {k: median([r["rps"] for r in v]) for k, v in runs.items()},
                "cpu_median": {k: median([r["cpu_per_req_us"] for r in v]) for k, v in runs.items()}}
        finally:
            if stalled is not None:
                stalled.close()
            self.stop(idp)

    # -- driver

    def section(self, name, fn, *a):
        key = name.split()[1] if name.startswith("(") else name
        if self.args.only and key not in self.args.only.split(","):
            return
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001 — every failure is reported, the run goes on
            self.failed.append(name)
            self.notes.append("**%s FAILED**: %s" % (name, e))
            self.log("%s FAILED: %s" % (name, e))

    def main(self):
        if not self.loadgen_bin or not self.echo_bin:
            raise BenchError("tests/bench/loadgen and echo_server are not built in %s "
                             "(ninja -C %s)" % (self.build, self.build))
        custody_ok = self.custodyd_bin and self.custody_bin
        sodium = None
        if custody_ok:
            try:
                sodium = load_sodium()
            except (OSError, BenchError) as e:
                self.notes.append("libsodium not loadable from Python (%s): (e)/(f) skipped" % e)
            self.section("(a) cached", self.bench_custody_cached, sodium)
        else:
            self.notes.append("(a), (e), (f) skipped: custodyd/custody are not built in %s." % self.build)
        self.section("(b) echo", self.bench_echo)
        self.section("(b') durable", self.bench_durable)
        self.section("(c) redis", self.bench_redis)
        self.section("(c) floor", self.bench_floor)
        self.section("(d) sshagent", self.bench_sshagent)
        if custody_ok and sodium is not None:
            self.section("(e) cold", self.bench_custody_cold, sodium)
            self.section("(f) scale", self.bench_custody_scale, sodium)
        self.section("(f) audit", self.bench_audit)
        if custody_ok and sodium is not None:
            self.section("(g) alerts", self.bench_alerts, sodium)
            self.section("(h) ship", self.bench_ship, sodium)
        self.section("(i) report", self.bench_report)


def parse_audit_output(text):
    """bench-audit prints `key: value` or JSON lines; keep the numbers."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.update(json.loads(line))
                continue
            except ValueError:
                pass
        m = re.match(r"([\w .-]+?)\s*[:=]\s*([-\d.]+)", line)
        if m:
            out[m.group(1).strip().replace(" ", "_")] = float(m.group(2))
    return out


# ---------------------------------------------------------------- report

def fmt_rps(x):
    return "—" if x is None else "{:,.0f} req/s".format(x)


def fmt_ms(us):
    return "—" if us is None else "%.3f ms" % (us / 1000.0)


def ratio(a, b):
    return "—" if a is None or b in (None, 0) else "%.2f×" % (a / b)


def met(ok):
    return "—" if ok is None else ("yes" if ok else "**no**")


def audit_figure(a, *names):
    for n in names:
        if n in a:
            return a[n]
    return None


def report(b):
    R = b.results
    m = machine()
    rows = []

    def get(kind, c, key):
        r = R.get((kind, c))
        return r.get(key) if r else None

    for c in CONNS:
        cu, rd = get("custody", c, "rps"), get("redis", c, "rps")
        rows.append(("cached token, %d conn%s (ref: Redis SET, appendfsync always)" % (c, "s" if c > 1 else ""),
                     fmt_rps(cu), fmt_rps(rd), ratio(cu, rd), "≥ 1.0× Redis",
                     met(None if cu is None or rd is None else cu >= rd)))
    p99 = get("custody", 64, "p99_us")
    rows.append(("cached token p99, 64 conns (ref: Redis p99)", fmt_ms(p99), fmt_ms(get("redis", 64, "p99_us")),
                 ratio(p99, get("redis", 64, "p99_us")), "≤ 2 ms", met(None if p99 is None else p99 <= 2000)))
    rows.append(("cached token p99, 64 conns (issue 14's target)", fmt_ms(p99), "—", "—", "≤ 5 ms",
                 met(None if p99 is None else p99 <= 5000)))
    prof = R.get("profile") or {}
    cpu = prof["task-clock"] * 1000 / prof["requests"] if "task-clock" in prof else None
    rcpu = get("redis", 64, "cpu_us_per_req")
    rows.append(("custodyd CPU per cached token, 64 conns, all threads (ref: redis-server CPU per SET)",
                 "%.1f µs" % cpu if cpu is not None else "not measured",
                 "%.1f µs" % rcpu if rcpu else "—", ratio(cpu, rcpu) if rcpu else "—", "≤ 30 µs",
                 met(None if cpu is None else cpu <= 30)))
    fl = R.get("floor")
    if fl:
        # what DESIGN.md §7's storage alone allows: one thread inserting the
        # store's rows with its pragmas, nothing else (tests/bench/sqlite_floor.c)
        for c, key in ((1, "1x1"), (8, "8x1"), (64, "64x1")):
            f, rd = fl.get("floor_%s_per_s" % key), get("redis", c, "rps")
            rows.append(("SQLite floor: %d row%s per commit, audit schema, no custody code "
                         "(ref: Redis SET, %d conn%s)" % (c, "s" if c > 1 else "", c, "s" if c > 1 else ""),
                         "{:,.0f} rows/s".format(f), fmt_rps(rd), ratio(f, rd), "(floor)", "—"))
        for c, key in ((1, "1x1"), (8, "8x1"), (64, "64x1")):
            cu, f = get("custody", c, "rps"), fl.get("floor_%s_per_s" % key)
            rows.append(("cached token, %d conn%s (ref: SQLite floor, %d row%s per commit)" % (
                         c, "s" if c > 1 else "", c, "s" if c > 1 else ""),
                         fmt_rps(cu), "{:,.0f} rows/s".format(f), ratio(cu, f), "(floor)", "—"))
        rows.append(("SQLite floor: commit p50 / p99, 32 rows (ref: p99 target at 64 conns)",
                     "%s / %s" % (fmt_ms(fl["floor_32x1_p50_us"]), fmt_ms(fl["floor_32x1_p99_us"])),
                     "—", "—", "(floor)", "—"))
        rows.append(("SQLite floor: commit p50 / p99, 64 rows",
                     "%s / %s" % (fmt_ms(fl["floor_64x1_p50_us"]), fmt_ms(fl["floor_64x1_p99_us"])),
                     "—", "—", "(floor)", "—"))
    for c in CONNS:
        # the echo floor with the design's durability (echo_server --store)
        du, rd = get("durable", c, "rps"), get("redis", c, "rps")
        rows.append(("durable echo floor: one thread, one SQLite commit per loop iteration, %d conn%s "
                     "(ref: Redis SET, appendfsync always)" % (c, "s" if c > 1 else ""),
                     fmt_rps(du), fmt_rps(rd), ratio(du, rd), "(floor)", "—"))
    for c in CONNS:
        cu, du = get("custody", c, "rps"), get("durable", c, "rps")
        rows.append(("cached token, %d conn%s (ref: durable echo floor)" % (c, "s" if c > 1 else ""),
                     fmt_rps(cu), fmt_rps(du), ratio(cu, du), "(floor)", "—"))
    for c in CONNS:
        cu, e = get("custody", c, "rps"), get("echo", c, "rps")
        rows.append(("cached token, %d conn%s (ref: echo-server floor)" % (c, "s" if c > 1 else ""),
                     fmt_rps(cu), fmt_rps(e), ratio(cu, e), "(floor)", "—"))
    for c in CONNS:
        cu, s = get("custody", c, "rps"), get("sshagent", c, "rps")
        rows.append(("cached token, %d conn%s (ref: ssh-agent list identities)" % (c, "s" if c > 1 else ""),
                     fmt_rps(cu), fmt_rps(s), ratio(cu, s), "(peer)", "—"))
    cold = R.get("cold")
    if cold:
        rows.append(("cold path: first tokens, %s tenants, %d in parallel" % (
                     "{:,}".format(cold["tenants"]), min(64, cold["tenants"])),
                     "%.3f s" % cold["seconds"], "—", "—", "< 2 s", met(cold["seconds"] < 2.0)))
        rows.append(("cold path: upstream TCP connections opened (IdP counter)",
                     str(cold["connections"]), "%s tenants, %s token calls" % (
                         "{:,}".format(cold["tenants"]), cold["token_calls"]),
                     ratio(cold["connections"], cold["tenants"]), "—", "—"))
    else:
        rows.append(("cold path: first tokens, 1,000 tenants, 64 in parallel", "not measured", "—", "—", "< 2 s", "—"))
    sc = R.get("scale")
    if sc:
        rows.append(("custodyd start-up with %s grants, until ping answers (ref: empty vault)"
                     % "{:,}".format(sc["grants"]),
                     "%.3f s" % sc["startup_s"], "%.3f s" % sc["empty_startup_s"],
                     ratio(sc["startup_s"], sc["empty_startup_s"]), "< 1 s", met(sc["startup_s"] < 1.0)))
        mib = sc["hwm_kib"] / 1024.0 if sc["hwm_kib"] else None
        emib = sc["empty_hwm_kib"] / 1024.0 if sc["empty_hwm_kib"] else None
        rows.append(("custodyd peak RSS (VmHWM) after start-up with %s grants (ref: empty vault)"
                     % "{:,}".format(sc["grants"]),
                     "—" if mib is None else "%.1f MiB" % mib, "—" if emib is None else "%.1f MiB" % emib,
                     ratio(mib, emib), "< 64 MiB", met(None if mib is None else mib < 64)))
    else:
        rows.append(("custodyd start-up with 10,000 grants", "not measured", "—", "—", "< 1 s", "—"))
        rows.append(("custodyd peak RSS (VmHWM) with 10,000 grants", "not measured", "—", "—", "< 64 MiB", "—"))
    a = R.get("audit")
    if a:
        v = audit_figure(a, "cli_verify_records_per_s", "verify_records_per_s", "verify_rate", "verify_rps", "verify")
        lib = a.get("verify_records_per_s") if "cli_verify_records_per_s" in a else None
        q = audit_figure(a, "tenant_query_ms", "query_ms", "tenant_query")
        rows.append(("audit verify, %s records%s" % ("{:,}".format(a["records"]),
                     " (`custody audit verify`; ref: audit_verify_db alone)" if lib else ""),
                     "—" if v is None else "{:,.0f} records/s".format(v),
                     "{:,.0f} records/s".format(lib) if lib else "—", ratio(v, lib) if lib else "—",
                     "≥ 200,000 records/s", met(None if v is None else v >= 200000)))
        if a.get("source") == "bench-audit":
            what = "newest 100 records of one tenant, p99"
        else:
            what = "one tenant's %s records" % "{:,}".format(int(a.get("tenant_query_rows", 0)))
        rows.append(("audit tenant query, %s records (%s)" % ("{:,}".format(a["records"]), what),
                     "—" if q is None else "%.2f ms" % q, "—", "—", "< 50 ms", met(None if q is None else q < 50)))
        for k in (1, 8, 64):
            r = a.get("append_%d_per_s" % k)
            if r is not None:
                rows.append(("audit durable appends, %d blocking appender%s (bench-audit)" % (k, "s" if k > 1 else ""),
                             "{:,.0f} records/s".format(r), "—", "—",
                             "≥ 100,000 records/s" if k == 64 else "—",
                             met(r >= 100000) if k == 64 else "—"))
        if fl and a.get("append_64_per_s") is not None:
            f = fl["floor_64x100_per_s"]
            rows.append(("audit durable appends, 64 blocking appenders (ref: SQLite floor, 64 rows per "
                         "commit over 100 tenants)", "{:,.0f} records/s".format(a["append_64_per_s"]),
                         "{:,.0f} rows/s".format(f), ratio(a["append_64_per_s"], f),
                         "≥ 100,000 records/s", met(a["append_64_per_s"] >= 100000)))
        if a.get("append_async_per_s") is not None:
            rows.append(("audit appends through the async pipeline the broker uses (4,096 in flight)",
                         "{:,.0f} records/s".format(a["append_async_per_s"]), "—", "—", "—", "—"))
        if "append_records_per_s" in a:
            b.notes.append("Audit (%s): %s records over %s tenants appended at %s records/s through "
                           "audit_append_async (group commits; the ceiling on audited requests/s); "
                           "newest 100 records of one tenant in %.2f ms." % (
                               a.get("source"), "{:,}".format(a["records"]), a.get("tenants"),
                               "{:,.0f}".format(a["append_records_per_s"]),
                               a.get("tenant_query_newest100_ms", 0)))
    else:
        rows.append(("audit verify, 1,000,000 records", "not measured", "—", "—", "≥ 200,000 records/s", "—"))
        rows.append(("audit tenant query, 1,000,000 records", "not measured", "—", "—", "< 50 ms", "—"))

    al = R.get("alerts")
    if al:
        outs = "file + syslog (rsyslog, TLS)" if al["syslog"] else "file"
        rows.append(("custody-alerts first pass, %s tenants × %d alerts, outputs %s" % (
                     "{:,}".format(al["tenants"]), al["per_tenant"], outs),
                     "%.2f s" % al["seconds"], "—", "—", "< 30 s", met(al["seconds"] < 30)))
        rows.append(("custody-alerts: HTTPS connections that carried API calls (IdP counter)",
                     str(al["api_connections"]), "%s API calls" % "{:,}".format(al["api_calls"]),
                     "—", "≤ 64", met(al["api_connections"] <= 64)))
        rows.append(("custody-alerts peak RSS over that pass",
                     "%.1f MiB" % (al["rss_kib"] / 1024), "—", "—", "< 64 MiB",
                     met(al["rss_kib"] < 64 * 1024)))
    else:
        rows.append(("custody-alerts first pass, 1,000 tenants × 100 alerts", "not measured",
                     "—", "—", "< 30 s", "—"))
    ab = R.get("alerts_big")
    if ab:
        rows.append(("custody-alerts first pass, one tenant, %s alerts (1,000 a page)" %
                     "{:,}".format(ab["alerts"]), "%.2f s" % ab["seconds"], "—", "—", "< 5 s",
                     met(ab["seconds"] < 5)))
    else:
        rows.append(("custody-alerts first pass, one tenant, 10,000 alerts", "not measured",
                     "—", "—", "< 5 s", "—"))
    sh = R.get("ship")
    if sh:
        # the sink must not slow tokens: stalled within 5 % of none, by
        # rate (median of alternating runs) and by custodyd CPU per request
        rn, rs = sh["rps_median"]["none"], sh["rps_median"]["stalled"]
        cn, cs = sh["cpu_median"]["none"], sh["cpu_median"]["stalled"]
        rows.append(("cached token, 8 conns, stalled syslog-TLS sink (backlog %s records) "
                     "(ref: no sink; medians of %d alternating pairs)" % ("{:,}".format(sh["backlog"]), sh["pairs"]),
                     fmt_rps(rs), fmt_rps(rn), ratio(rs, rn), "≥ 0.95×", met(rs >= 0.95 * rn)))
        rows.append(("custodyd CPU per cached token, 8 conns, stalled sink (ref: no sink; same runs)",
                     "%.1f µs" % cs, "%.1f µs" % cn, ratio(cs, cn), "≤ 1.05×", met(cs <= 1.05 * cn)))
    else:
        rows.append(("cached token, 8 conns, stalled syslog-TLS sink (ref: no sink)", "not measured",
                     "—", "—", "≥ 0.95×", "—"))
    rp = R.get("report")
    if rp:
        # wall clock is the target; CPU of all threads beside it (the
        # export is read on every core), best of the alternating runs
        for kind, what in (("report", "`custody audit report`"), ("verify", "`custody audit verify --export`")):
            wall, cpu = min(rp[kind])
            rows.append(("%s, %s-record export over %d days (%.0f MB), best of %d: wall (ref: CPU, all threads)"
                         % (what, "{:,}".format(rp["records"]), rp["days"], rp["bytes"] / 1e6, len(rp[kind])),
                         "%.2f s" % wall, "%.2f s CPU" % cpu, "—",
                         "< 3 s" if kind == "report" else "(part of it)",
                         met(wall < 3) if kind == "report" else "—"))

    lines = ["# custody benchmark%s" % (" (--quick: figures mean nothing)" if b.quick else ""), "",
             "%s — %d CPUs (%s), kernel %s; load average %s at the start, %s at the end (other "
             "work on the machine shares the CPUs and the disk). Measuring window %.1f s after %.1f s "
             "warm-up per point; closed loop, one request in flight per connection." % (
                 m["date"], m["nproc"], m["cpu"], m["kernel"], b.load_start, loadavg(),
                 b.duration, b.warmup), "",
             "| metric | custody | reference | ratio | target | met |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    lines.append("")
    raw = [("custody cached token", "custody"), ("echo-server floor", "echo"),
           ("durable echo floor (one SQLite commit per loop iteration)", "durable"),
           ("Redis SET, appendfsync always", "redis"), ("ssh-agent list identities", "sshagent")]
    lines += ["All load points (closed loop):", "",
              "| server | conns | req/s | p50 | p99 | p99.9 |", "|---|---|---|---|---|---|"]
    for name, kind in raw:
        for c in CONNS:
            r = R.get((kind, c))
            if r:
                lines.append("| %s | %d | %s | %s | %s | %s |" % (
                    name, c, "{:,.0f}".format(r["rps"]), fmt_ms(r["p50_us"]), fmt_ms(r["p99_us"]),
                    fmt_ms(r.get("p999_us"))))
    lines.append("")
    prof = R.get("profile")
    if prof:
        n = prof["requests"]
        lines += ["Where custodyd's time goes (cached token, %d connections; perf stat over %d requests, "
                  "strace -c -f over %s):" % (prof["connections"], n, prof.get("strace_requests", "—")), ""]
        if "task-clock" in prof:
            lines.append("- per request: %.0f µs of custodyd CPU (all threads), %.1f syscalls, "
                         "%.2f context switches" % (prof["task-clock"] * 1000 / n,
                                                    prof.get("raw_syscalls:sys_enter", 0) / n,
                                                    prof.get("context-switches", 0) / n))
            if prof.get("syscalls:sys_enter_fdatasync"):
                lines.append("- commits (fdatasync) per request: %.3f (%.1f requests a commit); "
                             "block requests custodyd issued per commit: %.2f" % (
                                 prof["syscalls:sys_enter_fdatasync"] / n,
                                 n / prof["syscalls:sys_enter_fdatasync"],
                                 prof.get("block:block_rq_issue", 0) / prof["syscalls:sys_enter_fdatasync"]))
            rc = get("redis", 64, "cpu_us_per_req")
            if rc:
                lines.append("- for comparison, redis-server's CPU per SET at 64 connections "
                             "(/proc utime+stime over the measured run): %.1f µs" % rc)
        spr = prof.get("syscalls_per_request")
        if spr:
            lines.append("- syscalls per request: " + ", ".join(
                "%s %.2f" % (k, v) for k, v in spr.items() if v >= 0.01))
            mm = sum(spr.get(k, 0) for k in ("mmap", "munmap", "mprotect", "mlock", "munlock", "madvise"))
            sync = sum(spr.get(k, 0) for k in ("fsync", "fdatasync", "sync_file_range"))
            lines.append("- of which mmap/munmap/mprotect/mlock/munlock/madvise (sodium_malloc/sodium_free "
                         "costs about 10 of these a pair): %.1f; fsync/fdatasync: %.3f (one per %s requests)"
                         % (mm, sync, "%.1f" % (1 / sync) if sync else "—"))
        lines.append("")
    if b.notes:
        lines += ["Notes:", ""] + ["- " + n for n in b.notes] + [""]
    lines += ["Reproduce: `python3 tests/bench/run.py --build build --out tests/bench/RESULTS.md`. "
              "References run on the same machine in the same run; read ratios, not absolute figures.", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("--quick", action="store_true", help="short durations, small counts (smoke test)")
    ap.add_argument("--out", help="write the markdown table there too")
    ap.add_argument("--json", help="write every raw figure there (JSON)")
    ap.add_argument("--profile", action="store_true",
                    help="profile custodyd's cached-token path (perf stat, strace -c) even with --quick")
    ap.add_argument("--no-profile", action="store_true", help="skip that profile in a full run")
    ap.add_argument("--idp", help="the fake IdP script (default tests/fixtures/idp.py)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument("--only", help="run only these sections, comma-separated: "
                    "cached, echo, durable, redis, floor, sshagent, cold, scale, audit, alerts, ship, report (the table shows what ran)")
    ap.add_argument("--perf-record", metavar="FILE",
                    help="also record custodyd's call graphs (perf record -g) over the "
                         "profile's requests into FILE, for perf report")
    args = ap.parse_args()
    b = Bench(args)
    try:
        b.main()
    except BenchError as e:
        b.failed.append("setup")
        b.notes.append("**FAILED**: %s" % e)
    finally:
        b.stop_all()
    text = report(b)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": b.quick, "machine": machine(), "failed": b.failed, "tmp": b.tmp,
                       "loadgen": b.loadgen_runs,
                       "results": {("%s_%s" % k if isinstance(k, tuple) else k): v
                                   for k, v in b.results.items()}}, f, indent=1)
    if args.keep:
        print("bench: logs kept in %s" % b.tmp, file=sys.stderr)
    else:
        shutil.rmtree(b.tmp, ignore_errors=True)
    return 1 if b.failed else 0


if __name__ == "__main__":
    sys.exit(main())
