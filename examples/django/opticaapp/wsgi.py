"""WSGI entry point: /usr/bin/gunicorn --chdir examples/django opticaapp.wsgi"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opticaapp.settings")
application = get_wsgi_application()
