#!/usr/bin/python3
"""The example's client module (examples/django/whatsapp/whatsapp_baileys_client.py) against the running gateway,
outside any request: answers as the contract describes them, raise_for_status on errors, the gateway's error code
readable, organization ids that could change the URL path refused before any request. Prints one JSON object."""
import json
import sys

import django
import requests

django.setup()
from django.conf import settings  # noqa: E402

from whatsapp import whatsapp_baileys_client as wa  # noqa: E402

org = sys.argv[1]
out = {}


def call(name, fn, *a):
    try:
        out[name] = fn(*a)
    except requests.HTTPError as e:
        out[name] = {"http": e.response.status_code, "code": wa.error_code(e)}
    except wa.InvalidOrganization:
        out[name] = "InvalidOrganization"


call("status", wa.get_status, org)
call("qr", wa.get_qr, org)
call("send", wa.send_message, org, "3009990001", "hola")
call("send_bad_phone", wa.send_message, org, "12", "hola")
call("clear", wa.clear_session, org)
call("logout", wa.logout, org)
call("bad_org", wa.get_status, "../health")
call("token", wa.session_token, org, 60)
if isinstance(out["token"], dict):
    out["token"] = {k: v for k, v in out["token"].items() if k != "token"}    # never printed
settings.WHATSAPP_API_KEY = "a-wrong-key-0123456789"
call("wrong_key", wa.get_status, org)
print(json.dumps(out))
