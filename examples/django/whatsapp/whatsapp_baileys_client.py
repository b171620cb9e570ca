"""Client of the WhatsApp gateway (ngx_whatsapp, formerly the Node/Baileys server).

The same functions and the same JSON fields the application used with the Node server; switching to nginx is a
change of WHATSAPP_SERVER_URL. Every call sends X-API-Key and raises requests.HTTPError on a 4xx/5xx answer
(raise_for_status); the gateway's JSON error ({"success": false, "error": ..., "code": ...}) is then in
exc.response.json(). The key stays on the server: browsers get a short-lived token bound to one organization
(session_token) in an HttpOnly cookie, never the key.

    from whatsapp import whatsapp_baileys_client as wa
    wa.get_status("23")["status"]        # disconnected | connecting | qr_ready | connected | reconnecting | ...
    wa.send_message("23", "3001234567", "Su pedido está listo")
"""
import re

import requests
from django.conf import settings

ORG_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# (connect, read) seconds. A send waits for WhatsApp's server ack: the gateway answers within its
# whatsapp_send_timeout (30 s in conf/nginx.conf), so reads may take that long.
TIMEOUT = (5, 15)
SEND_TIMEOUT = (5, 35)

_session = requests.Session()


class InvalidOrganization(ValueError):
    pass


def _org(organization_id):
    org = str(organization_id)
    if not ORG_RE.match(org):
        # It becomes part of a URL path: nothing but the contract's characters may get there.
        raise InvalidOrganization("organization_id must be 1-64 characters of [A-Za-z0-9_-]")
    return org


def _headers():
    return {"X-API-Key": settings.WHATSAPP_API_KEY, "Accept": "application/json"}


def _get(path, timeout=TIMEOUT):
    r = _session.get(settings.WHATSAPP_SERVER_URL + path, headers=_headers(), timeout=timeout)
    r.raise_for_status()
    return r.json()


def _post(path, payload, timeout=TIMEOUT, headers=None):
    r = _session.post(settings.WHATSAPP_SERVER_URL + path, json=payload, headers={**_headers(), **(headers or {})},
                      timeout=timeout)
    r.raise_for_status()
    return r.json()


def start_session(organization_id):
    """Starts (or keeps) the organization's session: {"success": true, "status": "connecting"}."""
    return _post("/api/start-session", {"organization_id": _org(organization_id)})


def get_status(organization_id):
    """{"status", "connected", "has_qr", "phone_number", "qr" (PNG data URL while qr_ready), "last_error", ...}"""
    return _get(f"/api/status/{_org(organization_id)}")


def get_qr(organization_id):
    """{"success": true, "qr": "data:image/png;base64,...", "qr_text", "expires_in"} while a QR is current,
    {"success": false, "qr": null, "status": ...} otherwise."""
    return _get(f"/api/qr/{_org(organization_id)}")


def send_message(organization_id, phone, message, idempotency_key=None):
    """Answers once WhatsApp's server acknowledged it: {"success", "message_id", "to", "status": "sent"}.
    idempotency_key: a retried request with the same key returns the first result and sends nothing again."""
    payload = {"organization_id": _org(organization_id), "phone": str(phone), "message": str(message)}
    if idempotency_key:
        payload["idempotency_key"] = str(idempotency_key)
    return _post("/api/send-message", payload, timeout=SEND_TIMEOUT)


def clear_session(organization_id):
    """Stops a stuck session and sets its stored state aside: the next start_session shows a new QR."""
    return _post("/api/clear-session", {"organization_id": _org(organization_id)})


def logout(organization_id):
    """Unlinks the device from the phone and deletes the stored credentials."""
    return _post("/api/logout", {"organization_id": _org(organization_id)})


def session_token(organization_id, ttl=None):
    """A token bound to this organization, accepted only by its read-only live routes (status, qr, events) and
    only from the cookie wa_token: {"token", "expires_in", "cookie": "wa_token"}."""
    return _post("/api/session-token", {"organization_id": _org(organization_id),
                                        "ttl": int(ttl or settings.WHATSAPP_TOKEN_TTL)})


def error_code(exc):
    """The gateway's error code (e.g. "not_connected") of a requests exception, or None."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None
