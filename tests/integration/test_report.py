#!/usr/bin/env python3
"""test_report.py — `custody audit report` read in a real browser.

Debian's headless Chromium loads every page the command writes:
- a trail made by the real custodyd (tokens with hostile purposes, a revocation
  with a hostile reason, a refusal), as a tenant export and as the whole store;
- a generated export of hostile records (markup, bidi overrides, 60 KiB
  strings; tests/integration/report-gen.c signs it with the audit library);
- a generated export of 12,000 records over 90 days (the token table paged);
- a tampered export: red verdict, exit 6, the page still written.
For each: the DOM holds the verdict text and no element or attribute that a
record smuggled in; nothing points off the page; a canary HTTP server on
loopback, named in hostile records, is never asked for anything (and every
host name resolves to nothing); the screenshot is not blank and shows the
verdict's colour; printing gives a sane number of PDF pages.

Without Chromium the test is skipped (exit 77) with a loud message: install
it with `./setup.sh test` (the package `chromium`).
"""

import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from html.parser import HTMLParser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CUSTODY, Env, Fail, build_path, check  # noqa: E402

REPORT_GEN = build_path("tests", "integration", "report-gen")
CHROME_TIMEOUT = 90   # one Chromium run; start-up is slow on two shared cores
GREEN = (0x0a, 0x6b, 0x2e)
RED = (0xb0, 0x00, 0x20)


def find_chromium():
    for c in ("chromium", "chromium-browser"):
        p = shutil.which(c)
        if p:
            return p
    return None


class Browser:
    def __init__(self, exe, tmp):
        self.exe = exe
        self.tmp = tmp
        self.n = 0

    def run(self, url, *args, width=1280, height=1000):
        self.n += 1
        prof = os.path.join(self.tmp, "profile-%d" % self.n)
        cmd = [self.exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-extensions",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--user-data-dir=" + prof,
               "--window-size=%d,%d" % (width, height)] + list(args) + [url]
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=CHROME_TIMEOUT)
        finally:
            shutil.rmtree(prof, ignore_errors=True)
        return p

    def dom(self, path):
        p = self.run("file://" + path, "--dump-dom")
        check(p.returncode == 0 and p.stdout, "chromium --dump-dom of %s" % path,
              p.returncode, p.stderr[-2000:])
        return p.stdout.decode("utf-8")

    def screenshot(self, path, out, width=1280, height=1000):
        p = self.run("file://" + path, "--screenshot=" + out, width=width, height=height)
        check(p.returncode == 0 and os.path.exists(out), "chromium --screenshot of %s" % path,
              p.returncode, p.stderr[-2000:])
        return png_pixels(out)

    def pdf_pages(self, path, out):
        p = self.run("file://" + path, "--no-pdf-header-footer", "--print-to-pdf=" + out)
        check(p.returncode == 0 and os.path.exists(out), "chromium --print-to-pdf of %s" % path,
              p.returncode, p.stderr[-2000:])
        with open(out, "rb") as f:
            data = f.read()
        counts = [int(c) for c in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", data)]
        counts += [int(c) for c in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", data)]
        check(counts, "the PDF has a page tree", data[:200])
        return max(counts)


def png_pixels(path, rows=400):
    """The first `rows` rows of an 8-bit RGB/RGBA PNG as lists of (r, g, b)."""
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG screenshot", data[:8])
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            check(depth == 8 and ctype in (2, 6) and interlace == 0, "a plain PNG", body)
            bpp = 3 if ctype == 2 else 4
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    out = []
    for y in range(min(rows, h)):
        off = y * (stride + 1)
        ft = raw[off]
        line = bytearray(raw[off + 1:off + 1 + stride])
        if ft == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xff
        elif ft == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xff
        elif ft == 3:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((a + prev[i]) >> 1)) & 0xff
        elif ft == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 0xff
        out.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return out


def check_screenshot(px, colour, what):
    colours = {}
    for row in px:
        for c in row[::4]:
            colours[c] = colours.get(c, 0) + 1
    check(len(colours) > 20, "%s: the screenshot is not blank" % what, len(colours))
    near = sum(n for c, n in colours.items() if all(abs(c[i] - colour[i]) <= 6 for i in range(3)))
    check(near > 1000, "%s: the verdict's colour %r fills the banner" % (what, colour), near)


class Dom(HTMLParser):
    """Elements, attributes and text of a dumped DOM."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = {}
        self.attrs = []
        self.text = []
        self.h1 = 0

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))

    def handle_data(self, data):
        self.text.append(data)


def parse_dom(html):
    d = Dom()
    d.feed(html)
    d.all_text = "".join(d.text)
    return d


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "header", "h1",
                "h2", "h3", "p", "dl", "dt", "dd", "code", "bdi", "nav", "a", "section", "svg",
                "line", "text", "g", "rect", "details", "summary", "div", "table", "thead",
                "tbody", "tr", "th", "td", "span", "br", "strong", "em", "i", "time", "ul",
                "li", "footer"}


def check_page(browser, html_path, verdict, colour, what, must_text=(), pages=(1, 60)):
    with open(html_path, encoding="utf-8") as f:
        src = f.read()
    check(re.search(r"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';"
                    r" style-src 'unsafe-inline'; img-src data:;", src),
          "%s: a CSP that lets nothing load" % what)
    d = parse_dom(browser.dom(html_path))
    check(verdict in d.all_text, "%s: the verdict %r is on the page" % (what, verdict))
    extra = set(d.tags) - ALLOWED_TAGS
    check(not extra, "%s: elements a record smuggled in" % what, extra)
    check(d.tags.get("script", 0) == 0 and d.tags.get("h1", 0) <= 2,
          "%s: no script, no extra heading" % what, d.tags)
    for tag, k, v in d.attrs:
        check(not k.startswith("on"), "%s: an event handler attribute" % what, tag, k, v)
        check(k not in ("src", "srcset", "action", "formaction", "background", "poster"),
              "%s: an attribute that loads something" % what, tag, k, v)
        if k == "href":
            check(v.startswith("#"), "%s: a link off the page" % what, tag, v)
        if k == "style":
            check("url(" not in v, "%s: a style that loads something" % what, tag, v)
        if k == "xmlns":
            continue
        check("http:" not in v and "https:" not in v and "//" not in v,
              "%s: an attribute naming another place" % what, tag, k, v[:200])
    for s in must_text:
        check(s in d.all_text, "%s: the record's text is shown as text" % what, s[:80])
    # explicit bidi controls never reach the page as such
    for cp in ("\u202a", "\u202b", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"):
        check(cp not in d.all_text, "%s: a raw bidi control U+%04X in the page" % (what, ord(cp)))
    shot = os.path.join(os.path.dirname(html_path), os.path.basename(html_path) + ".png")
    check_screenshot(browser.screenshot(html_path, shot), colour, what)
    phone = os.path.join(os.path.dirname(html_path), os.path.basename(html_path) + ".phone.png")
    check_screenshot(browser.screenshot(html_path, phone, width=390, height=844), colour,
                     what + " (phone width)")
    n = browser.pdf_pages(html_path, html_path + ".pdf")
    check(pages[0] <= n <= pages[1], "%s: %d printed pages" % (what, n), pages)
    return d


class Canary:
    """A loopback HTTP server that counts every request: hostile records
    point at it, so any fetch the page makes shows here."""

    def __init__(self):
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def report(env_or_none, args, want):
    p = subprocess.run([CUSTODY] + args, capture_output=True, text=True, timeout=120)
    check(p.returncode == want, "custody %s exits %d" % (" ".join(args[:3]), want), p.returncode,
          p.stdout[-2000:], p.stderr[-2000:])
    return p


def broker_trail(tmp, canary):
    """A real trail: custodyd, the fake Entra, hostile purposes and reasons."""
    url = "http://127.0.0.1:%d" % canary.port
    purposes = [
        "pull alerts for the SIEM",
        "<script>alert(1)</script>",
        '"><img src=%s/img onerror=alert(1)>' % url,
        "invoice \u202egpj.exe",
        '<link rel=stylesheet href="%s/css"><iframe src="%s/frame"></iframe>' % (url, url),
    ]
    reason = '"><script>alert(2)</script><img src=%s/reason> \u202eesrever' % url
    with Env("report") as env:
        env.init_vault()
        env.start_idp()
        env.start_broker()
        g, tid = env.new_tenant("contoso")
        env.import_grant(g)
        for p in purposes:
            r = env.token("contoso", purpose=p)
            check(r.get("ok"), "token for purpose %r" % p, r)
        r = env.admin_request("grant.revoke", tenant="contoso", reason=reason)
        check(r.get("ok"), "revoke", r)
        r = env.token("contoso", purpose="after the revocation")
        check(not r.get("ok") and r.get("error") == "revoked", "refused after revoke", r)
        r = env.admin_request("audit.checkpoint")
        check(r.get("ok"), "checkpoint", r)
        vkey = json.loads(env.run_cli("keys", "--json").stdout)["audit_verifier_key"]
        exp = os.path.join(tmp, "contoso-audit.json")
        p = env.run_cli("audit", "export", "--tenant", "contoso", "--output", exp)
        check(p.returncode == 0, "audit export", p.stderr)
        check(env.stop_broker()[0] == 0, "custodyd stops cleanly")
        db = os.path.join(tmp, "audit.db")
        shutil.copy(env.audit_db, db)
    return exp, db, vkey, purposes, reason


def main():
    chromium = find_chromium()
    if chromium is None:
        print("\n" + "!" * 72 + "\nSKIPPED test_report: Chromium is not installed, so the HTML "
              "report was NOT checked\nin a browser. Install it: ./setup.sh test (Debian package "
              "'chromium').\n" + "!" * 72, file=sys.stderr)
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="custody-report-test-")
    canary = Canary()
    try:
        b = Browser(chromium, tmp)

        # 1. a real broker's trail, as the customer's export and as the whole store
        exp, db, vkey, purposes, reason = broker_trail(tmp, canary)
        out = os.path.join(tmp, "contoso.html")
        p = report(None, ["audit", "report", "--export", exp, "--key", vkey, "--output", out], 0)
        check(out in p.stdout, "the command names the page it wrote", p.stdout)
        d = check_page(b, out, "Verified", GREEN, "broker export",
                       must_text=purposes[:3] + ['"><script>alert(2)</script>'], pages=(1, 10))
        for s in ("exposure window", "revoked", "Unique token identifier", "client-request-id",
                  "Tokens issued and refused", "Refusals by reason", "Accesses by principal"):
            check(s in d.all_text, "broker export: the page says %r" % s)
        check(d.tags.get("rect", 0) >= 1, "broker export: the chart has bars", d.tags)
        out_db = os.path.join(tmp, "store.html")
        report(None, ["audit", "report", "--db", db, "--key", vkey, "--output", out_db], 0)
        d = check_page(b, out_db, "Verified", GREEN, "whole store", pages=(1, 20))
        check("the whole store, all tenants" in d.all_text and "Tenant " in d.all_text,
              "whole store: a section per tenant")

        # 2. the same export, tampered: red, exit 6, the page still written
        with open(exp) as f:
            doc = json.load(f)
        for rec in doc["records"]:
            if "pull alerts for the SIEM" in rec["body"]:
                rec["body"] = rec["body"].replace("pull alerts", "pull Alerts")
                bad_seq = rec["seq"]
                break
        else:
            raise Fail("no record to tamper with")
        bad = os.path.join(tmp, "tampered.json")
        with open(bad, "w") as f:
            json.dump(doc, f)
        out_bad = os.path.join(tmp, "tampered.html")
        p = report(None, ["audit", "report", "--export", bad, "--key", vkey, "--output", out_bad],
                   6)
        check("FAILED" in p.stderr and os.path.exists(out_bad), "exit 6 and a page", p.stderr)
        d = check_page(b, out_bad, "Verification FAILED", RED, "tampered export", pages=(1, 10))
        check("record %d" % bad_seq in d.all_text, "the red verdict names the first mismatch",
              bad_seq)

        # 3. generated hostile records: markup, bidi overrides, 60 KiB strings
        hostile = os.path.join(tmp, "hostile.json")
        g = subprocess.run([REPORT_GEN, hostile, "120", "20", "--hostile"], capture_output=True,
                           text=True, timeout=60, check=True)
        out_h = os.path.join(tmp, "hostile.html")
        report(None, ["audit", "report", "--export", hostile, "--key", g.stdout.strip(),
                      "--output", out_h], 0)
        d = check_page(b, out_h, "Verified", GREEN, "hostile records",
                       must_text=["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
                                  "</td></tr></table><h1>pwned</h1>", "<b>mallory</b>",
                                  "more characters"], pages=(1, 40))
        check("U+202E" in d.all_text, "bidi overrides are shown as code points")
        with open(out_h, encoding="utf-8") as f:
            ours = f.read().count("<table>")
        check(d.tags.get("table", 0) == ours, "hostile records: only the page's own tables",
              d.tags.get("table"), ours)
        size = os.path.getsize(out_h)
        check(size < 600 * 1024, "60 KiB strings are cut, not repeated everywhere", size)

        # the page never replaces the evidence it reports on
        copy = os.path.join(tmp, "hostile-copy.json")
        shutil.copy(hostile, copy)
        p = report(None, ["audit", "report", "--export", copy, "--key", g.stdout.strip(),
                          "--output", copy], 2)
        with open(copy, "rb") as f1, open(hostile, "rb") as f2:
            check(f1.read() == f2.read(), "--output naming the input leaves the input alone")

        # another log's key: its own finding (exit 6), not called tampering
        out_k = os.path.join(tmp, "wrongkey.html")
        p = report(None, ["audit", "report", "--export", hostile, "--key", vkey, "--output",
                          out_k], 6)
        with open(out_k, encoding="utf-8") as f:
            src = f.read()
        check("Not verified: wrong key" in src and "verdict bad" in src,
              "a wrong key: a red page that says so", src[:3000])

        # 4. a long trail: tables summarised, the token table paged
        big = os.path.join(tmp, "big.json")
        g = subprocess.run([REPORT_GEN, big, "12000", "90"], capture_output=True, text=True,
                           timeout=120, check=True)
        out_big = os.path.join(tmp, "big.html")
        t0 = time.monotonic()
        report(None, ["audit", "report", "--export", big, "--key", g.stdout.strip(),
                      "--output", out_big], 0)
        took = time.monotonic() - t0
        with open(out_big, encoding="utf-8") as f:
            src = f.read()
        months = src.count("<details class=month>")
        check(months >= 3, "the token table is split by month", months)
        for table in src.split("<table>")[1:]:
            rows = table.split("</table>")[0].count("<tr>")
            check(rows <= 1001, "no table holds more than a page of rows", rows)
        d = check_page(b, out_big, "Verified", GREEN, "12,000 records", pages=(1, 30))
        print("12,000-record export: report written in %.2f s, %d bytes" % (took, len(src)))

        # 5. witnesses: a cosigned checkpoint is listed and checked; a key that did
        #    not cosign makes the verdict red (exit 6), as audit verify --witness does
        wexp = os.path.join(tmp, "witnessed.json")
        g = subprocess.run([REPORT_GEN, wexp, "50", "5", "--cosign", "witness.example/w1"],
                           capture_output=True, text=True, timeout=60, check=True)
        lkey, wkey = g.stdout.split()
        other = subprocess.run([REPORT_GEN, os.path.join(tmp, "w2.json"), "2", "1", "--cosign",
                                "witness.example/w2"], capture_output=True, text=True,
                               timeout=60, check=True).stdout.split()[1]
        out_w = os.path.join(tmp, "witnessed.html")
        report(None, ["audit", "report", "--export", wexp, "--key", lkey, "--witness", wkey,
                      "--output", out_w], 0)
        with open(out_w, encoding="utf-8") as f:
            src = f.read()
        check("1 of 1 witness cosigned the checkpoint at tree size 50" in src and
              "witness.example/w1" in src, "the banner names the witness that cosigned")
        p = report(None, ["audit", "report", "--export", wexp, "--key", lkey, "--witness", other,
                          "--output", out_w], 6)
        check("0 of the 1 required witness cosignatures" in p.stderr, "exit 6 names the witness",
              p.stderr)
        d = check_page(b, out_w, "Verification FAILED", RED, "witness missing", pages=(1, 10))
        check("no cosignature" in d.all_text and "rolled back" in d.all_text,
              "the red verdict says which witness is missing and why it matters")

        check(canary.hits == [], "the pages asked the network for something", canary.hits)
    finally:
        canary.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok: test_report")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("FAIL:", e, file=sys.stderr)
        sys.exit(1)
