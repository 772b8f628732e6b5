"""The console in a real browser: Debian's chromium, driven through chromium-driver (WebDriver),
against a real `floe serve` on 127.0.0.1 ports it picks itself.

Checks, per view, that what the page shows equals what /v1/info, /metrics and the admin API say;
that a tag created through the Admin view is served by /v1/segment/{tag}; that every request the
page made went to the server's own origin; that the browser logged no error (a Content-Security-
Policy violation would be one); keyboard navigation, labels, and a phone-width window. Screenshots
go to target/console-screenshots/. Prints "N passed, N failed" and exits 1 on any failure.

    FLOE_BIN=target/debug/floe python scripts/console/browser_test.py
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "target" / "console-screenshots"
TOKEN = "console-test-token"
DEADLINE = 15.0  # seconds any one expectation may take to come true


def eventually(what, check, within=DEADLINE):
    """Polls `check` (returns a truthy value or raises AssertionError) until `within` passes."""
    end = time.monotonic() + within
    last = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = f"{what}: got {value!r}"
        # The page re-renders its tables every second: an element read mid-update goes stale.
        except (AssertionError, KeyError, ValueError, IndexError, WebDriverException) as e:
            last = f"{what}: {e}"
        if time.monotonic() > end:
            raise AssertionError(f"not within {within}s: {last}")
        time.sleep(0.1)


class Floe:
    """A `floe serve` child with a temp data dir, SQLite segments and a SQL (SQLite) registry."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="floe-console-")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "FLOE_ADMIN_TOKEN": TOKEN,
            "FLOE_REGISTRY__KIND": "sql",
            "FLOE_REGISTRY__URL": f"sqlite:{self.dir}/registry.db",
            "FLOE_REGISTRY__TTL": "10s",
        }
        args = [binary, "serve", "--tcp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                "--data-dir", f"{self.dir}/data", "--log-level", "warn"]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        line = self._listening_line()
        rest = line.strip().removeprefix("floe: listening tcp=")
        tcp, http = rest.split(" http=")
        self.tcp = tcp
        self.base = f"http://{http}"
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def _listening_line(self):
        found = []

        def read():
            for line in self.proc.stdout:
                if line.startswith("floe: listening"):
                    found.append(line)
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(30)
        if not found:
            self.proc.kill()
            raise RuntimeError("floe serve printed no listening line in 30 s:\n" + "".join(self.stderr))
        return found[0]

    def request(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def json(self, path, token=None):
        status, _, body = self.request("GET", path, token=token)
        assert status == 200, f"GET {path}: {status} {body}"
        return json.loads(body)

    def metric(self, name, **labels):
        """Sum of the series of `name` whose labels include `labels`."""
        _, _, page = self.request("GET", "/metrics")
        total = 0.0
        for line in page.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, value = line.rsplit(" ", 1)
            series_name = head.split("{", 1)[0]
            if series_name != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def v2_ping_and_ids(self, n):
        """`n` v2 snowflake requests of one ID each over binary TCP."""
        host, port = self.tcp.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            for i in range(n):
                s.sendall(struct.pack(">BBIIB", 0xF1, 1, i, 1, 0))
                head = b""
                while len(head) < 10:
                    head += s.recv(10 - len(head))
                _, status, _, length = struct.unpack(">BBII", head)
                assert status == 0, f"v2 status {status}"
                body = b""
                while len(body) < length * 8:
                    body += s.recv(length * 8 - len(body))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def browser():
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        raise RuntimeError("chromium and chromium-driver are needed: apt-get install chromium chromium-driver "
                           "(./scripts/services installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--metrics-recording-only",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def text(d, css):
    return d.find_element(By.CSS_SELECTOR, css).text.strip()


def number(s):
    return float(s.replace(",", ""))


class Suite:
    def __init__(self, floe, driver):
        self.floe = floe
        self.d = driver
        self.passed = 0
        self.failed = []
        self.requests = []  # every URL the browser asked for, from the DevTools log

    def collect_network(self):
        for entry in self.d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])

    def run(self, name, fn):
        try:
            fn()
            self.passed += 1
            print(f"ok   {name}")
        except Exception:  # noqa: BLE001 - every failure is reported, then the next check runs
            self.failed.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}")
            self.shot(f"failed-{name}")
        finally:
            self.collect_network()

    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.d.save_screenshot(str(SHOTS / f"{name}.png"))

    def open(self, view):
        self.d.get(f"{self.floe.base}/console/{view}")
        eventually(f"{view} view rendered", lambda: self.d.execute_script(
            "return document.body.dataset.view === arguments[0] && !!document.body.dataset.updated", view))

    # ---- views ---------------------------------------------------------------------------
    def overview(self):
        self.open("overview")
        info = self.floe.json("/v1/info")
        ident = " ".join(f"{k}={v}" for k, v in info["identity"].items())
        lease = info["lease"]
        expect = {
            "identity": ident,
            "instance": info["instance"],
            "version": info["version"],
            "layout": info["layout"],
            "layout_end": info["layout_end"],
            "capacity.lanes": str(info["capacity"]["lanes"]),
            "capacity.nodes": str(info["capacity"]["nodes"]),
            "capacity.ids_per_tick_per_lane": str(info["capacity"]["ids_per_tick_per_lane"]),
            "capacity.tick_ms": f'{info["capacity"]["tick_ms"]} ms',
            "ready": "yes" if info["ready"] else "no",
            "lease.worker_id": str(lease["worker_id"]),
            "lease.epoch": str(lease["epoch"]),
            "lease.registry": lease["registry"],
            "listen": f'tcp {info["listen"]["tcp"]}, http {info["listen"]["http"]}',
        }
        for field, want in expect.items():
            eventually(f"overview {field} = {want!r}",
                       lambda f=field, w=want: text(self.d, f'[data-field="{f}"]') == w)
        # Live values: the shown wall clock is within a few seconds of the server's.
        wall = text(self.d, '[data-field="clock.wall_ms"]')
        shown = time.mktime(time.strptime(wall[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert abs(shown - info["clock"]["wall_ms"] / 1000) < 5, (wall, info["clock"])
        fence = float(text(self.d, '[data-field="lease.fence_in_s"]'))
        assert 0 < fence <= 10, fence
        assert text(self.d, "#ready-badge") == "ready"
        self.shot("overview")

    def rates(self):
        self.floe.v2_ping_and_ids(7)
        for _ in range(3):
            self.floe.request("GET", "/v1/snowflake?count=4")
        self.open("rates")
        # Totals come from the sample taken each second; nothing issues IDs now, so they settle.
        want_http = self.floe.metric("floe_ids_issued_total", mode="snowflake", protocol="http")
        want_v2 = self.floe.metric("floe_ids_issued_total", mode="snowflake", protocol="tcp_v2")
        want_v2_requests = self.floe.metric("floe_request_duration_seconds_count", protocol="tcp_v2")
        assert want_http >= 12 and want_v2 >= 7 and want_v2_requests >= 7, (want_http, want_v2)

        def row(series):
            cells = self.d.find_elements(By.CSS_SELECTOR, f'#rates-table tr[data-series="{series}"] td')
            return [c.text for c in cells]

        eventually("IDs snowflake/http total = /metrics",
                   lambda: number(row("IDs snowflake/http")[1]) == want_http)
        eventually("IDs snowflake/tcp_v2 total = /metrics",
                   lambda: number(row("IDs snowflake/tcp_v2")[1]) == want_v2)
        eventually("requests tcp_v2 total = /metrics",
                   lambda: number(row("requests tcp_v2")[1]) == want_v2_requests)
        # The page's own polling is HTTP traffic: requests/s and latencies show up.
        eventually("http requests per second shown",
                   lambda: number(row("requests http")[0]) > 0)
        eventually("p99 latency shown", lambda: text(self.d, '[data-rate="p99"]') not in ("", "—"))
        assert "samples" in text(self.d, "#rate-caption")
        self.shot("rates")

    def segments(self):
        status, _, body = self.floe.request("POST", "/admin/tags", {"tag": "orders", "start": 1000, "step": 200},
                                            token=TOKEN)
        assert status in (201, 409), (status, body)
        ids = json.loads(self.floe.request("GET", "/v1/segment/orders?count=5")[2])["ids"]
        assert len(ids) == 5
        self.open("segments")
        tags = {t["tag"]: t for t in self.floe.json("/admin/tags", token=TOKEN)["tags"]}
        orders = tags["orders"]

        def rows(table):
            out = {}
            for tr in self.d.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr"):
                cells = [c.text for c in tr.find_elements(By.CSS_SELECTOR, "th, td")]
                out[cells[0]] = cells
            return out

        eventually("store row of orders = /admin/tags",
                   lambda: rows("db-table").get("orders") == ["orders", str(orders["max_id"]), str(orders["step"])])
        buf = orders["buffer"]
        want = ["orders", f'{buf["current"]["start"]}–{buf["current"]["end"]}', str(buf["next_id"])]
        eventually("buffer of orders = /admin/tags", lambda: rows("cache-table").get("orders", [])[:3] == want)
        cache = rows("cache-table")["orders"]
        assert cache[5] == str(buf["remaining"]), (cache, buf)
        assert cache[9] == str(buf["refills"]) and cache[10] == str(buf["refill_errors"]), (cache, buf)
        assert str(buf["step_history"][0]["step"]) in cache[7], (cache, buf)
        self.shot("segments")

    def cluster(self):
        self.open("cluster")
        info = self.floe.json("/v1/info")
        cluster = self.floe.json("/v1/console/cluster")
        eventually("registry shown", lambda: text(self.d, '[data-cluster="registry"]') == info["lease"]["registry"])
        assert text(self.d, '[data-cluster="pool_size"]') == str(cluster["pool_size"])
        me = [h for h in cluster["holders"] if h["this_node"]]
        assert len(me) == 1 and me[0]["worker_id"] == info["lease"]["worker_id"], cluster

        def my_row():
            for tr in self.d.find_elements(By.CSS_SELECTOR, "#cluster-table tbody tr"):
                cells = [c.text for c in tr.find_elements(By.CSS_SELECTOR, "th, td")]
                if cells[-1] == "this node":
                    return cells
            return None

        row = eventually("this node's row", my_row)
        assert row[0] == str(me[0]["worker_id"]) and row[1] == "yes" and row[3] == str(me[0]["epoch"]), row
        self.shot("cluster")

    def decode(self):
        self.open("decode")
        the_id = json.loads(self.floe.request("GET", "/v1/snowflake?count=1")[2])["ids"][0]
        want = self.floe.json(f"/v1/decode/{the_id}")
        box = self.d.find_element(By.ID, "decode-id")
        box.clear()
        box.send_keys(str(the_id), Keys.ENTER)
        eventually("decoded id shown", lambda: text(self.d, '[data-decoded="id"]') == str(the_id))
        assert text(self.d, '[data-decoded="id_hex"]') == want["id_hex"]
        assert text(self.d, '[data-decoded="time"]') == want["time"]
        for k, v in want["fields"].items():
            assert text(self.d, f'[data-decoded="field {k}"]') == str(v), k
        status, _, body = self.floe.request("GET", "/v1/decode/not-an-id")
        assert status == 400, (status, body)
        message = json.loads(body)["error"]["message"]
        box.clear()
        box.send_keys("not-an-id", Keys.ENTER)
        eventually("the server's decode error shown", lambda: text(self.d, "#decode-error") == message)
        for text_form in want["forms"].values():
            form = self.floe.json(f"/v1/decode/{urllib.parse.quote(text_form, safe='')}")["form"]
            box.clear()
            box.send_keys(text_form, Keys.ENTER)
            eventually(f"{form} form decoded", lambda f=form: text(self.d, '[data-decoded="form"]') == f
                       and text(self.d, '[data-decoded="id"]') == str(the_id))
        box.clear()
        box.send_keys(str(the_id), Keys.ENTER)
        eventually("decoded again", lambda: text(self.d, '[data-decoded="id"]') == str(the_id))
        self.shot("decode")

    def admin(self):
        self.open("admin")
        actions = self.d.find_element(By.ID, "create-tag")  # disabled with its fieldset
        assert not actions.is_enabled(), "admin actions need the token first"
        self.d.find_element(By.ID, "admin-token").send_keys("wrong", Keys.ENTER)
        eventually("wrong token refused", lambda: "refused" in text(self.d, "#admin-status"))
        self.d.find_element(By.ID, "admin-token").send_keys(TOKEN, Keys.ENTER)
        eventually("token accepted", lambda: actions.is_enabled())
        stored = self.d.execute_script(
            "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
        assert TOKEN not in stored, "the token must live in page memory only"
        tag = f"console_{int(time.time() * 1000)}"
        for field, value in (("create-tag", tag), ("create-start", "500"), ("create-step", "100")):
            box = self.d.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        self.d.find_element(By.CSS_SELECTOR, "#create-form button").click()
        eventually("created", lambda: f"Created tag {tag}" in text(self.d, "#admin-result"))
        served = json.loads(self.floe.request("GET", f"/v1/segment/{tag}?count=2")[2])
        assert served == {"tag": tag, "ids": [500, 501]}, served
        self.d.find_element(By.ID, "step-tag").send_keys(tag)
        self.d.find_element(By.ID, "step-step").send_keys("250")
        self.d.find_element(By.CSS_SELECTOR, "#step-form button").click()
        eventually("step changed", lambda: "250" in text(self.d, "#admin-result"))
        rows = {t["tag"]: t for t in self.floe.json("/admin/tags", token=TOKEN)["tags"]}
        assert rows[tag]["step"] == 250, rows[tag]
        Select(self.d.find_element(By.ID, "level")).select_by_visible_text("debug")
        self.d.find_element(By.CSS_SELECTOR, "#level-form button").click()
        eventually("level set", lambda: self.floe.json("/admin/log-level", token=TOKEN)["level"] == "debug")
        assert text(self.d, "#current-level") == "debug"
        self.floe.request("PUT", "/admin/log-level", {"level": "warn"}, token=TOKEN)
        self.shot("admin")

    def keyboard_and_labels(self):
        self.open("overview")
        body = self.d.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)  # the skip link
        assert self.d.switch_to.active_element.text == "Skip to content"
        for _ in range(2):  # past Overview, onto Rates
            self.d.switch_to.active_element.send_keys(Keys.TAB)
        assert self.d.switch_to.active_element.text == "Rates", self.d.switch_to.active_element.text
        self.d.switch_to.active_element.send_keys(Keys.ENTER)
        eventually("Enter on a nav link opens the view",
                   lambda: self.d.execute_script("return document.body.dataset.view") == "rates")
        assert self.d.current_url.endswith("/console/rates")
        unlabelled = self.d.execute_script(
            "return [...document.querySelectorAll('input, select')].filter(e => e.labels.length === 0)"
            ".map(e => e.id)")
        assert unlabelled == [], f"controls without a label: {unlabelled}"
        current = self.d.execute_script(
            "return document.querySelector('nav a[aria-current=page]').dataset.nav")
        assert current == "rates"

    def phone(self):
        self.d.set_window_size(390, 844)
        try:
            for view in ("overview", "rates", "segments", "cluster", "admin"):
                self.open(view)
                time.sleep(0.2)  # one layout pass after the data arrived
                over = self.d.execute_script(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert over <= 0, f"{view} scrolls sideways by {over}px at phone width"
                self.shot(f"{view}-phone")
        finally:
            self.d.set_window_size(1280, 1000)

    def root_and_headers(self):
        status, headers, body = self.floe.request("GET", "/")
        assert status == 200 and "<title>Floe console</title>" in body, status
        csp = headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp, csp
        self.d.get(self.floe.base + "/")
        eventually("/ shows the overview", lambda: self.d.execute_script(
            "return document.body.dataset.view") == "overview")

    def only_own_origin(self):
        self.collect_network()
        origin = urlsplit(self.floe.base)
        foreign = [u for u in self.requests
                   if urlsplit(u).scheme not in ("data", "blob")
                   and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)]
        assert self.requests, "the DevTools log recorded no request"
        assert foreign == [], f"requests to other hosts: {foreign}"
        entries = self.d.execute_script(
            "return performance.getEntries().map(e => e.name).filter(n => n.startsWith('http'))")
        assert all(urlsplit(n).netloc == origin.netloc for n in entries), entries

    def no_browser_errors(self):
        errors = [e for e in self.d.get_log("browser") if e["level"] == "SEVERE"
                  # The deliberate failures of the admin and decode checks are logged as such.
                  and not any(s in e["message"] for s in ("/admin/log-level", "/v1/decode/not-an-id"))]
        assert errors == [], errors


def main():
    binary = os.environ.get("FLOE_BIN", str(ROOT / "target" / "debug" / "floe"))
    if not os.path.exists(binary):
        print(f"browser_test: {binary} does not exist; cargo build -p floe first", file=sys.stderr)
        return 1
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    floe = Floe(binary)
    driver = None
    try:
        eventually("lease held", lambda: floe.json("/v1/info")["ready"], within=30)
        driver = browser()
        s = Suite(floe, driver)
        s.run("root and headers", s.root_and_headers)
        s.run("overview = /v1/info", s.overview)
        s.run("rates = /metrics", s.rates)
        s.run("segments = /admin/tags", s.segments)
        s.run("cluster = registry", s.cluster)
        s.run("decode = /v1/decode", s.decode)
        s.run("admin creates a served tag", s.admin)
        s.run("keyboard and labels", s.keyboard_and_labels)
        s.run("phone width", s.phone)
        s.run("only the server's own origin", s.only_own_origin)
        s.run("no browser errors", s.no_browser_errors)
        print(f"screenshots: {SHOTS}")
        print(f"{s.passed} passed, {len(s.failed)} failed")
        return 1 if s.failed else 0
    finally:
        if driver is not None:
            driver.quit()
        floe.stop()


if __name__ == "__main__":
    sys.exit(main())
