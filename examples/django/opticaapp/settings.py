"""Settings of the example project: everything that differs between machines comes from the environment.

    DJANGO_SECRET_KEY      required (make demo generates one in var/demo/)
    DJANGO_ALLOWED_HOSTS   comma-separated, default "127.0.0.1,localhost"
    DJANGO_DEBUG           "1" for Django's debug pages (never in production)
    DJANGO_HTTPS           "1" when nginx serves the site over TLS: Secure cookies, redirect to https, HSTS
    WHATSAPP_SERVER_URL    the gateway's base URL, as Django reaches it: http://127.0.0.1/whatsapp (conf/nginx.conf)
    WHATSAPP_API_KEY       its X-API-Key, or WHATSAPP_API_KEY_FILE: a file whose first non-comment line is the key
    WHATSAPP_LIVE_PATH     where browsers reach the token-only live routes, same origin: /whatsapp-live
    WHATSAPP_TOKEN_TTL     lifetime of the browser's wa_token cookie in seconds (1..600), default 600
"""
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"set {name} in the environment")
    return value


def _api_key():
    key = os.environ.get("WHATSAPP_API_KEY")
    if key:
        return key.strip()
    path = os.environ.get("WHATSAPP_API_KEY_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    return line
    raise ImproperlyConfigured("set WHATSAPP_API_KEY or WHATSAPP_API_KEY_FILE in the environment")


SECRET_KEY = _env("DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = [h.strip() for h in _env("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.messages",
    "whatsapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "opticaapp.urls"
WSGI_APPLICATION = "opticaapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# No database: the example keeps nothing of its own. Flash messages travel in a signed cookie.
DATABASES = {}
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

LANGUAGE_CODE = "es-co"
TIME_ZONE = "America/Bogota"
USE_I18N = True
USE_TZ = True

# nginx (conf/nginx.conf) sets X-Forwarded-Proto: behind TLS the cookies are Secure.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Strict"
HTTPS = os.environ.get("DJANGO_HTTPS") == "1"
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

WHATSAPP_SERVER_URL = _env("WHATSAPP_SERVER_URL", "http://127.0.0.1/whatsapp").rstrip("/")
WHATSAPP_API_KEY = _api_key()
WHATSAPP_LIVE_PATH = "/" + _env("WHATSAPP_LIVE_PATH", "/whatsapp-live").strip("/")
WHATSAPP_TOKEN_TTL = int(_env("WHATSAPP_TOKEN_TTL", "600"))
if not 1 <= WHATSAPP_TOKEN_TTL <= 600:
    raise ImproperlyConfigured("WHATSAPP_TOKEN_TTL must be 1..600 seconds")

# Log the gateway client's warnings (organization and error code: never the key, never a token).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"whatsapp": {"handlers": ["console"], "level": "INFO"}},
}
