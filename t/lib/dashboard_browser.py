#!/usr/bin/python3
# The operator dashboard in a real browser (Debian's chromium + chromium-driver + python3-selenium, headless,
# --no-sandbox), driven by t/191-dashboard-browser.t, which starts nginx, the simulator and the organizations and
# passes everything as one JSON argument. Prints TAP-like lines the .t turns into checks:
#   ok <what> / not ok <what>     a check
#   # <figure>                    a measured figure
#   done <checks>                 the script ran to its end
# Runs with Debian's /usr/bin/python3 (python3-selenium), never a pyenv python.
import json
import os
import subprocess
import sys
import time
import traceback
import urllib.request

# Everything here is on loopback: a proxy from the environment (urllib and selenium's urllib3 honour it) must not
# take the driver's or the page's requests elsewhere.
for _k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(_k, None)

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

cfg = json.loads(sys.argv[1])
checks = 0
failed = 0


def check(cond, what):
    global checks, failed
    checks += 1
    if not cond:
        failed += 1
    print(("ok " if cond else "not ok ") + what, flush=True)
    return cond


def figure(text):
    print("# " + text, flush=True)


def wait(cond, timeout, step=0.02):
    end = time.time() + timeout
    while True:
        try:
            v = cond()
        except Exception:  # the page is changing under us: try again
            v = None
        if v:
            return v
        if time.time() > end:
            return None
        time.sleep(step)


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def api(method, path, body=None):
    return http(method, cfg["api"] + path, body, {"X-API-Key": cfg["key"]})


def shot(driver, name):
    path = os.path.join(cfg["artifacts"], name)
    driver.save_screenshot(path)
    figure("screenshot " + path)
    return path


def row_state(driver, org):
    return driver.execute_script(
        "var r = document.querySelector('#orgs tbody tr[data-org=\"' + arguments[0] + '\"]');"
        "return r ? r.getAttribute('data-state') : null;", org)


def main(driver):
    n = cfg["n"]
    dash = cfg["dashboard"]

    # ---------------------------------------------------------------------------------- every organization listed
    t0 = time.time()
    driver.get(dash)
    count = wait(lambda: driver.execute_script(
        "var t = document.getElementById('orgs');"
        "return t.getAttribute('data-ready') && +t.getAttribute('data-count') >= arguments[0] ? +t.getAttribute('data-count') : 0;",
        n), 10)
    took = time.time() - t0
    check(count == n and took < 3, "the dashboard lists %s organizations %.3f s after the page was requested "
          "(target 1 s, asserted at 3 s)" % (count, took))
    ids = driver.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('#orgs tbody tr'), function (r) { return r.getAttribute('data-org'); });")
    check(ids == cfg["orgs"], "every organization once, in order (%d rows, %s ... %s)" % (len(ids), ids[0] if ids else "-", ids[-1] if ids else "-"))
    check(driver.find_element(By.TAG_NAME, "h1").text == "Sesiones de WhatsApp", "Spanish for an es-CO browser: "
          + driver.find_element(By.TAG_NAME, "h1").text)
    states = driver.execute_script(
        "var s = {}; document.querySelectorAll('#orgs tbody td.state').forEach(function (c) { s[c.textContent] = (s[c.textContent] || 0) + 1; }); return s;")
    check(states.get("Esperando escaneo del QR") == n, "every row: Esperando escaneo del QR (%s)" % json.dumps(states, ensure_ascii=False))
    summary = driver.find_element(By.ID, "summary").text
    check(summary.startswith("%d organizaciones" % n), "summary: " + summary)
    check(driver.find_element(By.ID, "live").text == "En vivo", "the stream is live: " + driver.find_element(By.ID, "live").text)
    # Data goes in as text: an organization's last_error with markup would show as text (checked on the DOM:
    # no element other than the page's own ones inside the table body cells).
    elements_in_cells = driver.execute_script("return document.querySelectorAll('#orgs tbody td.state *, #orgs tbody td.last_error *, #orgs tbody td.phone *').length;")
    check(elements_in_cells == 0, "no markup inside data cells")
    shot(driver, "dashboard-100.png")
    driver.execute_script("window.__sameDocument = 'still here';")

    # ---------------------------------------------------------------------------------- one organization's QR, live
    org = cfg["scan_org"]
    t0 = time.time()
    btn = driver.find_element(By.CSS_SELECTOR, '#orgs tbody tr[data-org="%s"] button.pick' % org)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", btn)
    btn.click()
    img = wait(lambda: driver.execute_script(
        "var i = document.getElementById('qr'); return !i.hidden && i.complete && i.naturalWidth > 0 && "
        "(i.getAttribute('src') || '').indexOf('data:image/png;base64,') === 0 ? i : null;"), 5)
    took = time.time() - t0
    check(img is not None and took < 3, "%s's QR shown %.3f s after choosing it (target 1 s, asserted at 3 s)" % (org, took))
    st, q = api("GET", "/api/qr/" + org)
    qr_png = os.path.join(cfg["artifacts"], "qr-element.png")
    with open(qr_png, "wb") as f:
        f.write(driver.find_element(By.ID, "qr").screenshot_as_png)
    decoded = subprocess.run(["zbarimg", "--raw", "-q", qr_png], capture_output=True, text=True, timeout=20).stdout.strip()
    check(st == 200 and decoded == q.get("qr_text"), "the QR on screen decodes (zbarimg) to the organization's current QR string")
    shot(driver, "dashboard-qr.png")

    # ---------------------------------------------------------------------------------- a scan shows without a reload
    st, scan = http("POST", cfg["sim"] + "/scan", {"qr": q.get("qr_text"), "phone": cfg["phone"]})
    t0 = time.time()
    check(st == 200, "the simulator scanned the QR")
    ok = wait(lambda: row_state(driver, org) == "connected" and driver.execute_script(
        "return document.querySelector('#orgs tbody tr[data-org=\"' + arguments[0] + '\"] td.phone').textContent;", org) == cfg["phone"], 10)
    took = time.time() - t0
    check(ok and took < 3, "%s's row turns Conectado with the phone %.3f s after the scan, without a reload "
          "(target 1 s, asserted at 3 s)" % (org, took))
    panel = wait(lambda: driver.find_element(By.ID, "sel-state").get_attribute("data-state") == "connected"
                 and driver.find_element(By.ID, "qr").get_attribute("hidden") is not None, 5)
    check(panel, "the session panel says Conectado and the QR is gone")
    check(driver.execute_script("return window.__sameDocument;") == "still here", "the same document all along (no reload)")
    shot(driver, "dashboard-connected.png")

    # ---------------------------------------------------------------------------------- a message counted today, live
    wait(lambda: (http("GET", cfg["sim"] + "/accounts/" + cfg["phone"])[1] or {}).get("devices", [{}])[0].get("prekeys", 0) >= 812, 10, 0.2)
    http("POST", cfg["sim"] + "/contacts", {"phone": cfg["contact"], "devices": 1, "name": "Ana"})
    t0 = time.time()
    st, sent = api("POST", "/api/send-message", {"organization_id": org, "phone": cfg["contact"], "message": "Hola desde el tablero"})
    cell = wait(lambda: driver.execute_script(
        "return document.querySelector('#orgs tbody tr[data-org=\"' + arguments[0] + '\"] td.sent_today').textContent;", org) == "1", 5)
    took = time.time() - t0
    check(st == 200 and cell and took < 3, "a message sent by %s shows as Enviados hoy 1 %.3f s after the send request "
          "(answered after the server ack; target 1 s, asserted at 3 s)" % (org, took))

    # ---------------------------------------------------------------------------------- an action from the page
    other = cfg["logout_org"]
    box = driver.find_element(By.ID, "org")
    box.clear()
    box.send_keys(other)
    driver.find_element(By.CSS_SELECTOR, "#pick button").click()
    wait(lambda: driver.find_element(By.ID, "sel-org").text == other, 5)
    t0 = time.time()
    driver.find_element(By.ID, "logout").click()
    alert = wait(lambda: driver.switch_to.alert, 3)
    check(alert is not None and other in alert.text, "logout asks for confirmation: %s" % (alert.text if alert else "-"))
    if alert:
        alert.accept()
    status = wait(lambda: driver.find_element(By.ID, "result").get_attribute("data-status"), 10)
    gone = wait(lambda: row_state(driver, other) not in (None, "qr_ready", "connecting"), 5)
    took = time.time() - t0
    st, s = api("GET", "/api/status/" + other)
    shown = row_state(driver, other)
    check(status == "200" and bool(gone) and shown == s.get("status") and took < 3,
          "logout from the page (same origin): %s, %s's row shows %s (the API says %s) %.3f s after the click "
          "(target 1 s, asserted at 3 s)" % (status, other, shown, s.get("status"), took))
    figure("result line: " + driver.find_element(By.ID, "result").text)
    shot(driver, "dashboard-logout.png")

    # ---------------------------------------------------------------------------------- another origin is refused
    driver.get(cfg["evil"] + "/fetch.html")
    out = wait(lambda: driver.find_element(By.ID, "out").text, 10)
    check(out and out.startswith("blocked"), "another origin's fetch (JSON, preflighted) is blocked: " + str(out))
    driver.get(cfg["evil"] + "/form.html")
    body = wait(lambda: "forbidden_origin" in driver.find_element(By.TAG_NAME, "body").text and driver.find_element(By.TAG_NAME, "body").text, 10)
    check(body, "another origin's form post lands on the refusal: " + (body or "-").strip()[:120])
    shot(driver, "cross-origin-refused.png")
    st, s = api("GET", "/api/status/" + org)
    check(s.get("status") == "connected", "%s is still connected after both attempts" % org)

    # ---------------------------------------------------------------------------------- back on the dashboard
    driver.get(dash + "#" + org)
    count = wait(lambda: driver.execute_script(
        "var t = document.getElementById('orgs'); return t.getAttribute('data-ready') ? +t.getAttribute('data-count') : 0;"), 10)
    check(count == n and row_state(driver, org) == "connected", "reloaded: %s organizations, %s connected" % (count, org))
    check(wait(lambda: driver.find_element(By.ID, "sel-org").text == org, 5), "the #fragment selects the organization again")
    shot(driver, "dashboard-final.png")


def run():
    os.makedirs(cfg["artifacts"], exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--no-proxy-server", "--no-first-run", "--disable-extensions", "--disable-background-networking",
              "--lang=es-CO", "--user-data-dir=" + cfg["profile"]):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"intl.accept_languages": "es-CO,es"})
    t0 = time.time()
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver", log_path=cfg["driver_log"]), options=opts)
    figure("browser started in %.2f s (%s)" % (time.time() - t0, driver.capabilities.get("browserVersion")))
    try:
        driver.set_page_load_timeout(20)
        main(driver)
    except Exception:
        check(False, "the browser script ran without an exception")
        traceback.print_exc()
        try:
            shot(driver, "exception.png")
        except Exception:
            pass
    finally:
        driver.quit()
    print("done %d" % checks, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
