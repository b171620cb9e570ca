"""The organization's WhatsApp page: the QR live (EventSource on the gateway's same-origin live route, with the
wa_token cookie set here), "Conectado" with the phone once linked, and a form that sends a test message.

In the real application the organization comes from the logged-in user (request.user's shop); this example has
no login and takes it from the URL.
"""
import logging
import secrets

import requests
from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import whatsapp_baileys_client as wa
from .forms import MensajePruebaForm

log = logging.getLogger("whatsapp")

ESTADOS = {
    "disconnected": "Desconectado",
    "connecting": "Conectando…",
    "qr_ready": "Esperando el escaneo del código QR",
    "connected": "Conectado",
    "reconnecting": "Reconectando…",
    "logged_out": "Desvinculado: escanee un código QR nuevo",
    "conflict": "Conflicto: WhatsApp se abrió en otro lugar",
}

ERRORES = {
    "not_connected": "WhatsApp no está conectado. Vincule el teléfono primero.",
    "invalid_phone": "El número de teléfono no es válido.",
    "not_on_whatsapp": "Ese número no tiene WhatsApp.",
    "invalid_message": "El mensaje no es válido.",
    "rate_limited": "Demasiados mensajes seguidos. Espere un momento e intente de nuevo.",
    "account_restricted": "WhatsApp restringió temporalmente este número.",
    "timeout": "WhatsApp no respondió a tiempo. Revise más tarde si el mensaje llegó.",
    "helper_unavailable": "El servicio de WhatsApp se está reiniciando. Intente de nuevo en unos segundos.",
    "queue_full": "El servicio de WhatsApp está ocupado. Intente de nuevo en unos segundos.",
    "too_many_sessions": "El servicio de WhatsApp no admite más sesiones ahora.",
}
ERROR_GENERICO = "No se pudo hablar con el servicio de WhatsApp. Intente de nuevo."


def _error(exc, org, what):
    code = wa.error_code(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    # Organization, action and the gateway's code: never the key (a header) nor a token.
    log.warning("whatsapp %s org=%s failed: http=%s code=%s (%s)", what, org, status, code, type(exc).__name__)
    return ERRORES.get(code, ERROR_GENERICO)


def _set_token_cookie(response, org, request):
    """Mints a token for this organization only and hands it to the browser as an HttpOnly cookie, sent only to
    the live routes (status, qr, events); the API key never leaves the server."""
    tok = wa.session_token(org)
    response.set_cookie(
        tok.get("cookie") or "wa_token", tok["token"],
        max_age=int(tok["expires_in"]), path=settings.WHATSAPP_LIVE_PATH + "/",
        secure=request.is_secure(), httponly=True, samesite="Strict")
    return response


def _csp(response, nonce):
    response["Content-Security-Policy"] = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    return response


def _page(request, org, form=None, status=200):
    estado, error = None, None
    try:
        estado = wa.get_status(org)
    except requests.RequestException as exc:
        error = _error(exc, org, "status")
    nonce = secrets.token_urlsafe(16)
    st = (estado or {}).get("status", "disconnected")
    ctx = {
        "org": org,
        "estado": estado or {},
        "estado_texto": ESTADOS.get(st, st),
        "estado_codigo": st,
        "offline": st in ("disconnected", "logged_out", "conflict"),
        "error_gateway": error,
        "form": form or MensajePruebaForm(),
        "live_events": f"{settings.WHATSAPP_LIVE_PATH}/api/events/{org}",
        "estados": ESTADOS,
        "nonce": nonce,
    }
    response = render(request, "whatsapp/conexion.html", ctx, status=status)
    if error is None:
        try:
            _set_token_cookie(response, org, request)
        except requests.RequestException as exc:
            ctx["error_gateway"] = _error(exc, org, "session-token")
            response = render(request, "whatsapp/conexion.html", ctx, status=status)
    return _csp(response, nonce)


@never_cache
@require_GET
def conexion(request, org):
    return _page(request, org)


@never_cache
@require_POST
def token(request, org):
    """A fresh wa_token cookie when the page's stream said its token expired (or was refused)."""
    response = JsonResponse({"success": True})
    try:
        return _set_token_cookie(response, org, request)
    except requests.RequestException as exc:
        return JsonResponse({"success": False, "error": _error(exc, org, "session-token")}, status=502)


@never_cache
@require_POST
def iniciar(request, org):
    """Starts the session; the page learns the QR from its event stream, not from this answer."""
    try:
        r = wa.start_session(org)
    except requests.RequestException as exc:
        return JsonResponse({"success": False, "error": _error(exc, org, "start-session")}, status=502)
    return JsonResponse({"success": True, "status": r.get("status")})


@never_cache
@require_POST
def enviar(request, org):
    form = MensajePruebaForm(request.POST)
    if not form.is_valid():
        return _page(request, org, form=form, status=400)
    d = form.cleaned_data
    try:
        r = wa.send_message(org, d["telefono"], d["mensaje"], idempotency_key=d["clave"].hex)
    except requests.RequestException as exc:
        messages.error(request, _error(exc, org, "send-message"))
        return _page(request, org, form=form, status=200)
    messages.success(request, f"Mensaje enviado a +{r.get('to', '')} (id {r.get('message_id', '')}).")
    return redirect("conexion", org=org)


@never_cache
@require_POST
def desvincular(request, org):
    try:
        wa.logout(org)
        messages.success(request, "WhatsApp quedó desvinculado de este teléfono.")
    except requests.RequestException as exc:
        messages.error(request, _error(exc, org, "logout"))
    return redirect("conexion", org=org)


@never_cache
@require_POST
def reiniciar(request, org):
    try:
        wa.clear_session(org)
        messages.success(request, "Sesión reiniciada. Pulse «Conectar WhatsApp» para ver un código QR nuevo.")
    except requests.RequestException as exc:
        messages.error(request, _error(exc, org, "clear-session"))
    return redirect("conexion", org=org)
