#!/usr/bin/env python3
"""Hostile clients all at once, with figures (DESIGN §10: "the broker keeps
serving everyone else").

While one well-behaved client keeps asking for tokens, custodyd gets:
  - 2,000 extra connections held open (limits.max_connections 4096; the
    test raises its own RLIMIT_NOFILE and custodyd's);
  - slow writers: a valid request trickled a byte a second;
  - never-readers: large pipelined requests from clients that never read
    a reply (custodyd must drop them or stop reading from them, never
    buffer without bound);
  - 1 MiB lines (too_large, connection closed);
  - invalid UTF-8, 60,000 and 100,000 '[' deep nesting, duplicate keys,
    huge numbers, unknown fields (each a clear error code).
Asserts: the good client got every token it asked for; every hostile
request got the documented error; custodyd's peak RSS (VmHWM) stays
bounded (256 MiB; more under ASan, whose quarantine alone is 256 MiB).
Prints the good client's p50/p99 latency and the peak RSS.
"""

import json
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Env, check, expect_error  # noqa: E402

EXTRA_CONNS = 2000
SLOW_WRITERS = 20
NEVER_READERS = 4
BIG_LINES = 4
LOAD_S = 12.0


def vm_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def under_asan(pid):
    with open("/proc/%d/maps" % pid) as f:
        return any("libasan" in line or "libclang_rt.asan" in line for line in f)


def connect(path):
    """A blocking connect: a burst can fill the listen backlog, and a Unix
    socket connect with a timeout fails with EAGAIN then instead of
    waiting for custodyd to accept."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(None)
    s.connect(path)
    s.settimeout(10)
    return s


def blocking_client(path, timeout=30):
    """A harness Client whose connect waits for custodyd to accept, as a
    client with a blocking socket does (see connect())."""
    c = Client.__new__(Client)
    c.sock = connect(path)
    c.sock.settimeout(timeout)
    c.buf = b""
    c.next_id = 1
    c.stash = {}
    return c


def one_shot(env, data, code, closes=None):
    """Send raw bytes on a fresh connection, expect error code."""
    with blocking_client(env.tool_path, timeout=20) as c:
        def blast():
            try:
                c.sock.sendall(data)
            except OSError:
                pass
        t = threading.Thread(target=blast)
        t.start()
        line = c.read_line()
        t.join(20)
        check(line, "no answer to %r..." % data[:40])
        r = json.loads(line)
        expect_error(r, code)
        if closes is not None:
            check(c.is_closed(timeout=5) == closes,
                  "connection %s after %s" % ("kept" if closes else "closed", code))
        return r


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192
    if hard < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise it
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    env = Env("custody-rel-hostile")
    held = []
    stop = threading.Event()
    threads = []
    try:
        env.init_vault()
        env.start_idp()
        env.config["limits"].update({"max_connections": 4096, "max_connections_per_uid": 4096,
                                     "idle_timeout_s": 60})
        env.start_broker(nofile=8192)
        pid = env.pid()
        g, tid = env.new_tenant(name="good")
        env.import_grant(g)
        r = env.token("good")
        check(r.get("ok") is True, "first token failed", r)

        # ---- the well-behaved client
        lat = []
        bad = []

        def good():
            c = blocking_client(env.tool_path)
            try:
                n = 0
                while not stop.is_set():
                    n += 1
                    t0 = time.monotonic()
                    if n % 10 == 0:          # now and then a fresh connection
                        c.close()
                        c = blocking_client(env.tool_path)
                    r = c.request({"op": "token", "tenant": "good"})
                    lat.append(time.monotonic() - t0)
                    if not (r.get("ok") and r.get("access_token")):
                        bad.append(r)
                    time.sleep(0.005)
            except Exception as e:  # noqa: BLE001 - reported below
                bad.append(repr(e))
            finally:
                c.close()

        # ---- 2,000 idle connections
        t0 = time.monotonic()
        for i in range(EXTRA_CONNS):
            held.append(connect(env.tool_path))
        conn_s = time.monotonic() - t0
        gt = threading.Thread(target=good)
        gt.start()
        threads.append(gt)

        # ---- slow writers: a valid request a byte a second
        slow = [connect(env.tool_path) for _ in range(SLOW_WRITERS)]
        held.extend(slow)
        slow_req = b'{"v":1,"id":"slow","op":"ping"}\n'

        def trickle():
            i = 0
            while not stop.is_set() and i < len(slow_req):
                for s in slow:
                    try:
                        s.send(slow_req[i:i + 1])
                    except OSError:
                        pass
                i += 1
                stop.wait(1.0)
        tt = threading.Thread(target=trickle)
        tt.start()
        threads.append(tt)

        # ---- never-readers with large pipelined requests: custodyd either
        # drops them or stops reading from them (backpressure); either way
        # what they can push in is bounded
        never = []

        def never_reader(k):
            s = connect(env.tool_path)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(5)
            req = b'{"v":1,"id":%d,"op":"keys"}\n' % k
            sent = 0
            how = "never stopped"
            try:
                while not stop.is_set() and sent < 200000:
                    s.sendall(req * 200)
                    sent += 200
            except socket.timeout:
                how = "stalled"
            except OSError:
                how = "dropped"
            finally:
                s.close()
            never.append((how, sent))
        for k in range(NEVER_READERS):
            t = threading.Thread(target=never_reader, args=(k,))
            t.start()
            threads.append(t)

        # ---- malformed input, each on its own connection, during the load
        big = []

        def big_line():
            try:
                r = one_shot(env, b"x" * (1 << 20), "too_large", closes=True)
                big.append(r["error"])
            except Exception as e:  # noqa: BLE001
                big.append(repr(e))
        for _ in range(BIG_LINES):
            t = threading.Thread(target=big_line)
            t.start()
            threads.append(t)
        cases = [
            (b"\xc3\x28\xa0\xa1\xff\xfe\n", "bad_request"),
            (b'{"v":1,"id":1,"op":"ping","x":"\xed\xa0\x80"}\n', "bad_request"),
            (b"[" * 60000 + b"\n", "bad_request"),
            (b"[" * 100000 + b"\n", "too_large"),
            (b'{"v":1,"id":1,"id":2,"op":"ping"}\n', "bad_request"),
            (b'{"v":1,"id":1,"op":"ping","op":"token"}\n', "bad_request"),
            (b'{"v":1,"id":1e999999,"op":"ping"}\n', "bad_request"),
            (b'{"v":1,"id":123456789012345678901234567890,"op":"ping"}\n', "bad_request"),
            (b'{"v":1,"id":1,"op":"token","tenant":"good","min_ttl":1e308}\n', "bad_request"),
            (b'{"v":1,"id":1,"op":"token","tenant":"good","min_ttl":-99999999999}\n',
             "bad_request"),
            (b'{"v":1,"id":1,"op":"ping","extra":true}\n', "bad_request"),
            (b'{"v":1,"id":1,"op":"token","tenant":"good","scopes":["x"]}\n', "bad_request"),
            (b'{"v":1.0000000001,"id":1,"op":"ping"}\n', "unsupported_version"),
            (b'{"v":1,"id":1,"op":"' + b"A" * 60000 + b'"}\n', "unknown_op"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_request"),
        ]
        for data, code in cases:
            one_shot(env, data, code)

        # ---- keep the load on for a while, then measure
        t_end = time.monotonic() + LOAD_S
        while time.monotonic() < t_end:
            check(env.broker.poll() is None, "custodyd died under load")
            time.sleep(0.5)
        hwm = vm_field(pid, "VmHWM")
        rss = vm_field(pid, "VmRSS")
        stop.set()
        for t in threads:
            t.join(60)
            check(not t.is_alive(), "a load thread did not stop")
        # the held connections are still there (nobody was evicted for them)
        with env.admin() as a:
            st = a.request({"op": "status"})
        check(st.get("ok") is True, "status failed", st)
        tool_conns = st["status"]["connections"]["tool"]
        check(tool_conns >= EXTRA_CONNS, "only %d tool connections held" % tool_conns)
        for s in held:
            s.close()
        held = []

        check(not bad, "the good client was not served", bad[:3])
        check(len(lat) >= 20, "the good client made only %d requests" % len(lat))
        check(all(x == "too_large" for x in big), "1 MiB lines", big)
        check(len(never) == NEVER_READERS and
              all(how in ("stalled", "dropped") for how, _ in never),
              "custodyd kept reading from clients that never read", never)
        asan = under_asan(pid)
        bound_kib = (1024 if asan else 256) * 1024
        check(hwm < bound_kib, "peak RSS %d KiB over the bound %d KiB" % (hwm, bound_kib))
        s = sorted(lat)
        p50 = s[len(s) // 2]
        p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
        check(env.broker.poll() is None and env.pid() == pid, "custodyd restarted or died")
        rc, _ = env.stop_broker()
        check(rc == 0, "custodyd exit status %r" % rc)
        print("hostile: %d extra connections opened in %.2f s (%d tool connections at the "
              "peak), %d slow writers, never-readers (outcome, requests sent) %s, %d x 1 MiB "
              "lines, %d malformed cases"
              % (EXTRA_CONNS, conn_s, tool_conns, SLOW_WRITERS, never,
                 BIG_LINES, len(cases)))
        print("hostile: good client %d tokens, all ok; latency p50 %.1f ms, p99 %.1f ms, max "
              "%.1f ms" % (len(lat), p50 * 1000, p99 * 1000, s[-1] * 1000))
        print("hostile: custodyd peak RSS (VmHWM) %d KiB, RSS at the end of load %d KiB%s"
              % (hwm, rss, " (ASan build)" if asan else ""))
    except BaseException:
        sys.stderr.write(env.log_text()[-6000:])
        raise
    finally:
        stop.set()
        for s in held:
            try:
                s.close()
            except OSError:
                pass
        env.close()


if __name__ == "__main__":
    main()
