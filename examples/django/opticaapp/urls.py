from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/organizacion/23/whatsapp/", permanent=False)),
    path("organizacion/", include("whatsapp.urls")),
]
