#!/usr/bin/env python3
"""test_readme.py — the README's admin guide works as written (issue 13,
item 11).

- The "try it locally" block is extracted from README.md and run as is with
  /bin/sh -e (only the build directory is substituted, for builds outside
  build/): the test identity provider by hand, a config with
  upstream.allowed_hosts and upstream.ca_file, init, the broker started as
  its own step, seal with --token-endpoint, import --probe, a token.
- The admin guide starts the broker before it imports.
- No example needs a tool the set-up does not install (socat), and every
  relative link points at a file inside the repository; the config
  reference is one of them.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD_DIR, SOURCE_DIR, check  # noqa: E402

README = os.path.join(SOURCE_DIR, "README.md")


def try_it_block(text):
    m = re.search(r"<!-- try-it-locally:begin -->\s*```sh\n(.*?)```\s*<!-- try-it-locally:end -->",
                  text, re.S)
    check(m is not None, "README has the try-it-locally block between its markers")
    return m.group(1)


def run_try_it(text):
    script = try_it_block(text).replace("$SRC/build/", BUILD_DIR.rstrip("/") + "/")
    with tempfile.TemporaryDirectory(prefix="custody-readme-") as tmp:
        env = dict(os.environ)
        env["TMPDIR"] = tmp
        env.pop("CUSTODY_CONFIG", None)
        env.pop("CUSTODY_SOCKET", None)
        # its own session, so whatever it started can be stopped by its group
        p = subprocess.Popen(["/bin/sh", "-e", "-c", script], cwd=SOURCE_DIR, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            check(False, "the try-it block did not finish in 120 s", out[-2000:], err[-2000:])
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)   # anything it left behind
            except ProcessLookupError:
                pass
        check(p.returncode == 0, "the try-it block runs as written (exit %s)" % p.returncode,
              out[-3000:], err[-3000:])
        check("probe: ok" in out, "the probe works against the local provider", out)
        check("got a token" in out, "a tool gets a token", out)
        check(re.search(r"g_[0-9a-f]{32} +contoso +active", out) is not None,
              "grant list shows the grant", out)


def check_text(text):
    check("socat" not in text, "no example needs socat (the set-up does not install it)")
    check("DESIGN.md" not in text and "/work/" not in text,
          "the README points at nothing outside the repository")
    start = text.find("#### Start the broker")
    imp = text.find("#### Importing grants")
    check(0 <= start < imp, "the admin guide starts the broker as its own step before importing")
    check("man/custody.json.5.scd" in text, "the README points at the config reference")
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        check(os.path.exists(os.path.join(SOURCE_DIR, target)),
              "README link %s points at a file in the repository" % target)


def main():
    with open(README) as f:
        text = f.read()
    check_text(text)
    run_try_it(text)
    print("ok: test_readme")


if __name__ == "__main__":
    main()
