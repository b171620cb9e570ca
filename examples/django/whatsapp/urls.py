from django.urls import re_path

from . import views

# The organization id as the gateway accepts it; anything else is a 404 before any view runs.
ORG = r"(?P<org>[A-Za-z0-9_-]{1,64})"

urlpatterns = [
    re_path(rf"^{ORG}/whatsapp/$", views.conexion, name="conexion"),
    re_path(rf"^{ORG}/whatsapp/iniciar$", views.iniciar, name="iniciar"),
    re_path(rf"^{ORG}/whatsapp/token$", views.token, name="token"),
    re_path(rf"^{ORG}/whatsapp/enviar$", views.enviar, name="enviar"),
    re_path(rf"^{ORG}/whatsapp/desvincular$", views.desvincular, name="desvincular"),
    re_path(rf"^{ORG}/whatsapp/reiniciar$", views.reiniciar, name="reiniciar"),
]
