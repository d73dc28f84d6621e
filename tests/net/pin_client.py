"""A customer's phone typing PINs at a Lens site, run inside a network namespace.

    python tests/net/pin_client.py https://10.22.2.2 PIN [PIN ...]

Waits for the site to answer, then posts each PIN from the start page (its own cookie
jar and CSRF token) and prints the statuses as a JSON list.
"""

from __future__ import annotations

import json
import re
import sys
import time

import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the lab's own cert
TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def main() -> int:
    site, pins = sys.argv[1], sys.argv[2:]
    http = requests.Session()
    http.verify = False
    http.trust_env = False  # a CA bundle named in the environment would override verify
    deadline = time.monotonic() + 60
    while True:
        try:
            page = http.get(f"{site}/", timeout=5)
            if page.status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            print(json.dumps({"error": "the site did not answer"}))
            return 1
        time.sleep(0.2)
    token = TOKEN.search(page.text).group(1)
    statuses = [
        http.post(f"{site}/", data={"pin": pin, "csrf_token": token}, allow_redirects=False,
                  headers={"Referer": f"{site}/"},  # as a browser does over HTTPS
                  timeout=10).status_code
        for pin in pins
    ]  # fmt: skip
    print(json.dumps({"statuses": statuses, "request_id": page.headers.get("X-Request-ID")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
