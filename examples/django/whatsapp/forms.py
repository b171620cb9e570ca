import re
import uuid

from django import forms

PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{5,24}$")


class MensajePruebaForm(forms.Form):
    telefono = forms.CharField(label="Número de teléfono", max_length=25,
                               widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "tel",
                                                             "placeholder": "300 123 4567"}))
    mensaje = forms.CharField(label="Mensaje", max_length=4096,
                              widget=forms.Textarea(attrs={"rows": 3}))
    # One key per rendered form: a double submit or a retried POST sends the message once (gateway idempotency).
    clave = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)

    def clean_telefono(self):
        tel = self.cleaned_data["telefono"].strip()
        digits = re.sub(r"\D", "", tel)
        if not PHONE_RE.match(tel) or not 7 <= len(digits) <= 15:
            raise forms.ValidationError("Escriba un número válido, por ejemplo 300 123 4567 o +57 300 123 4567.")
        return tel

    def clean_mensaje(self):
        msg = self.cleaned_data["mensaje"].strip()
        if not msg:
            raise forms.ValidationError("Escriba un mensaje.")
        return msg
