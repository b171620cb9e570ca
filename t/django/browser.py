#!/usr/bin/python3
"""Drives the Django example's WhatsApp page in a real browser (Debian's chromium + chromedriver, headless) for
t/192-django.t, as an optician would: open the page, press «Conectar WhatsApp», read the QR off the screen (a
screenshot decoded by zbarimg) and let the simulator's phone scan it, watch the page turn to «Conectado», send a
test message with the form. Prints one JSON object per step on stdout (what it saw, with timings); the .t file
asserts on them and checks the other side (the gateway's API, the simulator's inbox, the logs) itself.

    browser.py CONFIG.json     {url, api, key, control, account, contact, message, artifacts}

key and api are the harness's: used here only to read GET /api/qr for the record (the browser never gets them).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# Everything here is on loopback: a proxy from the environment (urllib3 in selenium and requests honour it) must
# not take the driver's or the page's requests elsewhere.
for _k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(_k, None)

import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

cfg = json.load(open(sys.argv[1], encoding="utf-8"))
ART = cfg["artifacts"]
os.makedirs(ART, exist_ok=True)


def emit(step, **kw):
    print(json.dumps({"step": step, **kw}, ensure_ascii=False), flush=True)


def wait(cond, timeout, step=0.01):
    end = time.monotonic() + timeout
    while True:
        try:
            v = cond()
        except WebDriverException:
            v = None
        if v:
            return v
        if time.monotonic() > end:
            return None
        time.sleep(step)


def text(d, css):
    els = d.find_elements(By.CSS_SELECTOR, css)
    return els[0].text.strip() if els and els[0].is_displayed() else ""


opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=900,1300",
          "--force-device-scale-factor=1", "--no-proxy-server", "--no-first-run", "--disable-extensions", "--disable-background-networking",
          "--user-data-dir=" + tempfile.mkdtemp(prefix="chromium-", dir=cfg.get("tmp"))):
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})


def main_flow():
    """Link, send, unlink: the optician's first day."""
    # ------------------------------------------------------------------ the page, before anything is linked
    t0 = time.monotonic()
    driver.get(cfg["url"])
    live = wait(lambda: "en vivo activa" in text(driver, "#vivo"), 5)
    # Every cookie the browser holds, those of other paths included (wa_token is Path=/whatsapp-live/).
    cookies = {c["name"]: c for c in driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]}
    tok = cookies.get("wa_token") or {}
    emit("page", took=time.monotonic() - t0, title=driver.title, estado=text(driver, "#estado"),
         live=bool(live), conectar_visible=driver.find_element(By.ID, "conectar").is_displayed(),
         qr_visible=driver.find_element(By.ID, "qr-box").is_displayed(),
         envio_disabled=driver.execute_script("return document.getElementById('envio').disabled"),
         wa_token={k: tok.get(k) for k in ("path", "httpOnly", "sameSite", "secure")} if tok else None,
         wa_token_len=len(tok.get("value", "")),
         document_cookie_has_token="wa_token" in driver.execute_script("return document.cookie"),
         key_in_page=cfg["key"] in driver.page_source)
    driver.save_screenshot(os.path.join(ART, "1-pagina.png"))
    driver.execute_script("window.waMarker = 'sin-recarga';")

    # ------------------------------------------------------------------ «Conectar WhatsApp» → the QR, live
    t0 = time.monotonic()
    driver.find_element(By.ID, "conectar").click()

    def qr_shown():
        img = driver.find_element(By.ID, "qr")
        src = img.get_attribute("src") or ""
        ok = img.is_displayed() and src.startswith("data:image/png;base64,") and driver.execute_script(
            "const i = document.getElementById('qr'); return i.complete && i.naturalWidth > 0;")
        return src if ok else None
    src = wait(qr_shown, 5)
    t_qr = time.monotonic() - t0
    js = driver.execute_script("return [window.waStartClickedAt, window.waQrShownAt];")
    shot = os.path.join(ART, "qr.png")
    decoded, api_qr, same_png = None, None, None
    if src:
        driver.find_element(By.ID, "qr").screenshot(shot)
        driver.save_screenshot(os.path.join(ART, "2-qr.png"))
        # What a phone camera would read off the screen.
        z = subprocess.run(["zbarimg", "--raw", "-q", shot], capture_output=True, text=True, timeout=20)
        decoded = z.stdout.strip() if z.returncode == 0 else None
        r = requests.get(cfg["api"] + "/api/qr/" + cfg["org"], headers={"X-API-Key": cfg["key"]}, timeout=5)
        api_qr = r.json().get("qr_text")
        same_png = r.json().get("qr") == src
    emit("qr", shown=bool(src), took=t_qr,
         in_page_ms=(js[1] - js[0]) if js[0] is not None and js[1] is not None else None,
         estado=text(driver, "#estado"), screenshot=shot, decoded=decoded, api_qr_text=api_qr,
         same_png_as_api=same_png)

    # ------------------------------------------------------------------ the phone scans → «Conectado», no reload
    connected = None
    if decoded:
        r = requests.post(cfg["control"] + "/scan", json={"qr": decoded, "phone": cfg["account"]}, timeout=10)
        t0 = time.monotonic()
        scan_status = r.status_code
        connected = wait(lambda: text(driver, "#estado") == "Conectado", 10)
        t_conn = time.monotonic() - t0
        driver.save_screenshot(os.path.join(ART, "3-conectado.png"))
        a = requests.get(cfg["api"] + "/api/status/" + cfg["org"], headers={"X-API-Key": cfg["key"]}, timeout=5).json()
        emit("connected", api_status=f"{a.get('status')} {a.get('phone_number')}", scan_status=scan_status, connected=bool(connected), took=t_conn,
             estado=text(driver, "#estado"), telefono=text(driver, "#telefono"),
             no_reload=driver.execute_script("return window.waMarker") == "sin-recarga",
             qr_visible=driver.find_element(By.ID, "qr-box").is_displayed(),
             envio_enabled=not driver.execute_script("return document.getElementById('envio').disabled"))

    # ------------------------------------------------------------------ the test message form
    if connected:
        tel = driver.find_element(By.ID, "id_telefono")
        tel.clear()
        tel.send_keys(cfg["contact"])
        msg = driver.find_element(By.ID, "id_mensaje")
        msg.clear()
        msg.send_keys(cfg["message"])
        t0 = time.monotonic()
        driver.find_element(By.ID, "enviar").click()
        aviso = wait(lambda: text(driver, "#avisos .success") or text(driver, "#avisos .error"), 40)
        t_send = time.monotonic() - t0
        driver.save_screenshot(os.path.join(ART, "4-enviado.png"))
        m = re.search(r"\(id ([0-9A-F]+)\)", aviso or "")
        emit("sent", took=t_send, aviso=aviso, message_id=m.group(1) if m else None,
             estado=text(driver, "#estado"), key_in_page=cfg["key"] in driver.page_source)

    # ------------------------------------------------------------------ «Desvincular teléfono»
    if connected:
        before = text(driver, "#avisos")
        t0 = time.monotonic()
        driver.find_element(By.CSS_SELECTOR, "#desvincular-form button").click()
        alert = wait(lambda: driver.switch_to.alert, 5)
        confirm_text = alert.text if alert else None
        if alert:
            alert.accept()
        aviso = wait(lambda: text(driver, "#avisos") != before and text(driver, "#avisos"), 15)
        gone = wait(lambda: driver.find_element(By.ID, "wa").get_attribute("data-estado") in ("logged_out", "disconnected"), 5)
        driver.save_screenshot(os.path.join(ART, "5-desvinculado.png"))
        emit("logout", took=time.monotonic() - t0, confirm=confirm_text, aviso=aviso, estado=text(driver, "#estado"),
             offline=bool(gone), conectar_visible=driver.find_element(By.ID, "conectar").is_displayed())


def renew_flow():
    """A page left open longer than its token: the stream says `expired`, the page gets a new cookie from Django and
    opens a new stream, and still shows the QR when it comes."""
    t0 = time.monotonic()
    driver.get(cfg["url"])
    renewed = wait(lambda: driver.execute_script("return window.waRenewals || 0") >= 1
                   and "en vivo activa" in text(driver, "#vivo"), cfg.get("ttl", 2) + 6)
    t_renew = time.monotonic() - t0
    t0 = time.monotonic()
    driver.find_element(By.ID, "conectar").click()
    shown = wait(lambda: driver.find_element(By.ID, "qr").is_displayed()
                 and (driver.find_element(By.ID, "qr").get_attribute("src") or "").startswith("data:image/png"), 5)
    driver.save_screenshot(os.path.join(ART, "6-renovado-qr.png"))
    emit("renew", renewed=bool(renewed), renewals=driver.execute_script("return window.waRenewals || 0"),
         took=t_renew, qr_shown=bool(shown), qr_took=time.monotonic() - t0, estado=text(driver, "#estado"))


t_launch = time.monotonic()
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver", log_path=os.path.join(ART, "chromedriver.log"),
                                         service_args=["--log-level=WARNING"]), options=opts)
try:
    emit("browser", version=driver.capabilities.get("browserVersion"), took=time.monotonic() - t_launch)
    renew_flow() if cfg.get("flow") == "renew" else main_flow()
    emit("console", errors=[e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"])
finally:
    driver.quit()
