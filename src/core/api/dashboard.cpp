// The operator dashboard's page, script and style, its language choice and the same-origin check of its actions
// (include/wa/api/dashboard.hpp). Everything the page shows arrives through its event streams and reaches the DOM
// through textContent or attributes set one by one, never as markup.

#include "wa/api/dashboard.hpp"

#include <cctype>

namespace wa::dashboard {

namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// q=0.8 → 800; a malformed q → -1 (the entry is skipped).
int parse_q(std::string_view v) {
    v = trim(v);
    if (v.empty() || v.size() > 5 || (v[0] != '0' && v[0] != '1')) return -1;
    int q = (v[0] - '0') * 1000;
    if (v.size() == 1) return q;
    if (v[1] != '.') return -1;
    int scale = 100;
    for (size_t i = 2; i < v.size(); i++, scale /= 10) {
        if (v[i] < '0' || v[i] > '9') return -1;
        q += (v[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

// host[:port] in lower case without the scheme's default port; false when it is not a plausible authority.
bool normalize_authority(std::string_view a, bool https, std::string& out) {
    if (a.empty() || a.size() > 262) return false;
    out.clear();
    for (char c : a) {
        unsigned char u = static_cast<unsigned char>(c);
        bool ok = std::isalnum(u) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
        if (!ok) return false;  // no userinfo, path, query, spaces or control bytes
        out += lower(c);
    }
    const char* def = https ? ":443" : ":80";
    size_t n = std::char_traits<char>::length(def);
    if (out.size() > n && out.compare(out.size() - n, n, def) == 0) out.resize(out.size() - n);
    return !out.empty() && out[0] != ':';
}

}  // namespace

Lang choose_lang(std::string_view header) {
    if (header.size() > 2048) header = header.substr(0, 2048);
    int best_q = 0;
    bool spanish = false;
    for (int entries = 0; !header.empty() && entries < 64; entries++) {
        size_t comma = header.find(',');
        std::string_view item = header.substr(0, comma);
        header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
        size_t semi = item.find(';');
        std::string_view tag = trim(item.substr(0, semi));
        int q = 1000;
        std::string_view params = semi == std::string_view::npos ? std::string_view() : item.substr(semi + 1);
        while (!params.empty()) {
            size_t next = params.find(';');
            std::string_view p = trim(params.substr(0, next));
            if (p.size() >= 2 && lower(p[0]) == 'q' && p[1] == '=') q = parse_q(p.substr(2));
            params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
        }
        if (tag.empty() || q <= best_q) continue;
        best_q = q;
        spanish = tag.size() >= 2 && lower(tag[0]) == 'e' && lower(tag[1]) == 's' && (tag.size() == 2 || tag[2] == '-');
    }
    return spanish ? Lang::Es : Lang::En;
}

bool same_origin(std::string_view origin, std::string_view host, bool tls) {
    origin = trim(origin);
    host = trim(host);
    bool https;
    if (origin.size() > 8 && iequals(origin.substr(0, 8), "https://")) {
        https = true;
        origin.remove_prefix(8);
    } else if (origin.size() > 7 && iequals(origin.substr(0, 7), "http://")) {
        if (tls) return false;
        https = false;
        origin.remove_prefix(7);
    } else {
        return false;  // "null", another scheme, garbage
    }
    std::string o, h;
    if (!normalize_authority(origin, https, o) || !normalize_authority(host, https, h)) return false;
    return o == h;
}

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

const char* const kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

namespace {

struct Texts {
    const char *lang, *title, *connecting, *organizations, *filter, *organization, *state, *phone, *last_error,
        *retries, *restricted_until, *sent_today, *failed_today, *session, *show, *qr_alt, *no_qr, *start, *logout,
        *clear;
};

const Texts kEn = {"en", "WhatsApp sessions", "Connecting…", "Organizations", "Filter by organization or phone",
                   "Organization", "State", "Phone", "Last error", "Retries", "Restricted until", "Sent today",
                   "Failed today", "Session", "Show", "WhatsApp QR code to scan", "No QR code right now",
                   "Start session", "Log out", "Clear session"};
const Texts kEs = {"es", "Sesiones de WhatsApp", "Conectando…", "Organizaciones", "Filtrar por organización o teléfono",
                   "Organización", "Estado", "Teléfono", "Último error", "Reintentos", "Restringido hasta",
                   "Enviados hoy", "Fallidos hoy", "Sesión", "Ver", "Código QR de WhatsApp para escanear",
                   "Sin código QR por ahora", "Iniciar sesión", "Cerrar sesión", "Borrar sesión"};

}  // namespace

std::string page_html(Lang lang, std::string_view base_path) {
    const Texts& t = lang == Lang::Es ? kEs : kEn;
    std::string b = html_escape(base_path);
    std::string h;
    h.reserve(4096);
    h += "<!DOCTYPE html>\n<html lang=\"";
    h += t.lang;
    h += "\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
         "<meta name=\"referrer\" content=\"no-referrer\">\n<title>";
    h += t.title;
    h += "</title>\n<link rel=\"stylesheet\" href=\"" + b + "/dashboard.css\">\n<script src=\"" + b +
         "/dashboard.js\" defer></script>\n</head>\n<body data-base=\"" + b + "/\">\n<header>\n<h1>";
    h += t.title;
    h += "</h1>\n<p id=\"live\" class=\"live off\">";
    h += t.connecting;
    h += "</p>\n<p id=\"summary\"></p>\n</header>\n<main>\n<section id=\"orgs-section\">\n<h2>";
    h += t.organizations;
    h += "</h2>\n<input id=\"filter\" type=\"search\" maxlength=\"64\" placeholder=\"";
    h += t.filter;
    h += "\">\n<table id=\"orgs\">\n<thead><tr>";
    for (const char* c : {t.organization, t.state, t.phone, t.last_error, t.retries, t.restricted_until, t.sent_today,
                          t.failed_today}) {
        h += "<th>";
        h += c;
        h += "</th>";
    }
    h += "<th></th></tr></thead>\n<tbody></tbody>\n</table>\n</section>\n<section id=\"session\">\n<h2>";
    h += t.session;
    h += "</h2>\n<form id=\"pick\"><label for=\"org\">";
    h += t.organization;
    h += "</label> <input id=\"org\" name=\"org\" maxlength=\"64\" pattern=\"[A-Za-z0-9_\\-]{1,64}\" required "
         "autocomplete=\"off\" spellcheck=\"false\"> <button type=\"submit\">";
    h += t.show;
    h += "</button></form>\n<div id=\"panel\" hidden>\n<p class=\"sel\"><strong id=\"sel-org\"></strong> "
         "<span id=\"sel-state\" class=\"state\"></span> <span id=\"sel-phone\"></span></p>\n"
         "<img id=\"qr\" width=\"264\" height=\"264\" hidden alt=\"";
    h += t.qr_alt;
    h += "\">\n<p id=\"qr-none\">";
    h += t.no_qr;
    h += "</p>\n<p class=\"actions\"><button type=\"button\" id=\"start\">";
    h += t.start;
    h += "</button> <button type=\"button\" id=\"logout\">";
    h += t.logout;
    h += "</button> <button type=\"button\" id=\"clear\">";
    h += t.clear;
    h += "</button></p>\n<p id=\"result\" role=\"status\"></p>\n</div>\n</section>\n</main>\n</body>\n</html>\n";
    return h;
}

const std::string& script_js() {
    static const std::string js = R"JS(// ngx_whatsapp operator dashboard. Data reaches the DOM through textContent and single attributes only.
(function () {
  'use strict';
  var T = {
    en: {
      live: 'Live', reconnecting: 'Reconnecting…', qr: 'QR',
      summary: '{n} organizations · {c} connected · {q} waiting for a QR scan',
      states: { disconnected: 'Disconnected', connecting: 'Connecting', qr_ready: 'Waiting for QR scan',
        connected: 'Connected', reconnecting: 'Reconnecting', logged_out: 'Logged out', conflict: 'Conflict' },
      confirm_logout: 'Log out {org}? The phone has to scan a new QR code to link again.',
      confirm_clear: 'Clear the session of {org}? Its credentials are deleted.',
      sending: 'Sending…', done: 'Done: {s}', refused: 'Refused: {s}', invalid: 'An organization id is 1 to 64 characters: A-Z, a-z, 0-9, _ or -'
    },
    es: {
      live: 'En vivo', reconnecting: 'Reconectando…', qr: 'QR',
      summary: '{n} organizaciones · {c} conectadas · {q} esperando escaneo del QR',
      states: { disconnected: 'Desconectado', connecting: 'Conectando', qr_ready: 'Esperando escaneo del QR',
        connected: 'Conectado', reconnecting: 'Reconectando', logged_out: 'Sesión cerrada', conflict: 'Conflicto' },
      confirm_logout: '¿Cerrar la sesión de {org}? El teléfono tendrá que escanear un nuevo código QR.',
      confirm_clear: '¿Borrar la sesión de {org}? Sus credenciales se eliminan.',
      sending: 'Enviando…', done: 'Hecho: {s}', refused: 'Rechazado: {s}', invalid: 'Un id de organización tiene de 1 a 64 caracteres: A-Z, a-z, 0-9, _ o -'
    }
  };
  var lang = document.documentElement.lang === 'es' ? 'es' : 'en';
  var t = T[lang];
  var base = document.body.getAttribute('data-base') || './';
  var ORG_RE = /^[A-Za-z0-9_-]{1,64}$/;
  var QR_PREFIX = 'data:image/png;base64,';
  var COLS = ['state', 'phone', 'last_error', 'retry_count', 'restricted_until', 'sent_today', 'failed_today'];
  var rows = new Map();  // organization id -> {tr, cells, state}
  var order = [];        // organization ids, sorted
  var tbody = document.querySelector('#orgs tbody');
  var $ = function (id) { return document.getElementById(id); };

  function fmt(s, vars) { return s.replace(/\{(\w+)\}/g, function (m, k) { return k in vars ? String(vars[k]) : m; }); }
  function stateName(s) { return Object.prototype.hasOwnProperty.call(t.states, s) ? s : 'unknown'; }
  function stateText(s) { return t.states[stateName(s)] || String(s); }
  function when(iso) {
    if (typeof iso !== 'string' || !iso) return '';
    var d = new Date(iso);
    return isNaN(d.getTime()) ? '' : d.toLocaleString(lang === 'es' ? 'es-CO' : 'en-US');
  }
  function num(v) { return typeof v === 'number' && isFinite(v) ? String(v) : ''; }
  function text(v) { return typeof v === 'string' ? v : ''; }

  var summaryQueued = false;
  function summary() {
    if (summaryQueued) return;
    summaryQueued = true;
    setTimeout(function () {
      summaryQueued = false;
      var c = 0, q = 0;
      rows.forEach(function (r) { if (r.state === 'connected') c++; else if (r.state === 'qr_ready') q++; });
      $('summary').textContent = fmt(t.summary, { n: rows.size, c: c, q: q });
      $('orgs').setAttribute('data-count', String(rows.size));
    }, 50);
  }

  function insertSorted(id, tr) {
    var lo = 0, hi = order.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (order[mid] < id) lo = mid + 1; else hi = mid; }
    var next = lo < order.length ? rows.get(order[lo]).tr : null;
    order.splice(lo, 0, id);
    tbody.insertBefore(tr, next);
  }

  function makeRow(id) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-org', id);
    var th = document.createElement('th');
    th.scope = 'row';
    th.textContent = id;
    tr.appendChild(th);
    var cells = {};
    COLS.forEach(function (k) {
      var td = document.createElement('td');
      td.className = k;
      tr.appendChild(td);
      cells[k] = td;
    });
    var td = document.createElement('td');
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'pick';
    b.textContent = t.qr;
    b.addEventListener('click', function () { select(id); });
    td.appendChild(b);
    tr.appendChild(td);
    var r = { tr: tr, cells: cells, state: '' };
    rows.set(id, r);
    insertSorted(id, tr);
    applyFilter(r, id);
    return r;
  }

  function update(o) {
    if (!o || typeof o.organization_id !== 'string' || !ORG_RE.test(o.organization_id)) return;
    var id = o.organization_id;
    var r = rows.get(id) || makeRow(id);
    var st = stateName(o.status);
    r.state = st;
    r.phone = text(o.phone_number);
    r.tr.setAttribute('data-state', st);
    r.cells.state.textContent = stateText(st);
    r.cells.state.setAttribute('data-state', st);
    r.cells.phone.textContent = r.phone;
    r.cells.last_error.textContent = text(o.last_error);
    r.cells.retry_count.textContent = num(o.retry_count);
    r.cells.restricted_until.textContent = when(o.restricted_until);
    r.cells.sent_today.textContent = num(o.sent_today);
    r.cells.failed_today.textContent = num(o.failed_today);
    r.tr.classList.toggle('failing', typeof o.failed_today === 'number' && o.failed_today > 0);
    applyFilter(r, id);
    summary();
  }

  function applyFilter(r, id) {
    var f = $('filter').value.trim().toLowerCase();
    r.tr.hidden = !!f && id.toLowerCase().indexOf(f) < 0 && (r.phone || '').indexOf(f) < 0;
  }
  $('filter').addEventListener('input', function () { rows.forEach(applyFilter); });

  function parse(ev) { try { return JSON.parse(ev.data); } catch (e) { return null; } }

  var live = $('live');
  var all = new EventSource(base + 'events');
  all.addEventListener('open', function () { live.textContent = t.live; live.className = 'live on'; });
  all.addEventListener('error', function () { live.textContent = t.reconnecting; live.className = 'live off'; });
  all.addEventListener('org', function (ev) { update(parse(ev)); });
  all.addEventListener('ready', function () { $('orgs').setAttribute('data-ready', '1'); summary(); });

  // One organization: its own stream (status and QR), and the actions.
  var selected = null, one = null;
  function showQr(j) {
    var img = $('qr');
    if (j && j.success === true && typeof j.qr === 'string' && j.qr.indexOf(QR_PREFIX) === 0) {
      img.src = j.qr;
      img.setAttribute('data-qr-text', text(j.qr_text));
      img.hidden = false;
      $('qr-none').hidden = true;
    } else {
      img.removeAttribute('src');
      img.removeAttribute('data-qr-text');
      img.hidden = true;
      $('qr-none').hidden = false;
    }
  }
  function select(id) {
    if (!ORG_RE.test(id)) { $('result').textContent = t.invalid; return; }
    if (one) one.close();
    selected = id;
    $('org').value = id;
    $('panel').hidden = false;
    $('sel-org').textContent = id;
    $('sel-state').textContent = '';
    $('sel-state').removeAttribute('data-state');
    $('sel-phone').textContent = '';
    $('result').textContent = '';
    showQr(null);
    if (location.hash !== '#' + id) history.replaceState(null, '', '#' + id);
    one = new EventSource(base + 'events/' + encodeURIComponent(id));
    one.addEventListener('status', function (ev) {
      var j = parse(ev);
      if (!j || id !== selected) return;
      var st = stateName(j.status);
      $('sel-state').textContent = stateText(st);
      $('sel-state').setAttribute('data-state', st);
      $('sel-phone').textContent = text(j.phone_number);
      if (st !== 'qr_ready') showQr(null);
    });
    one.addEventListener('qr', function (ev) { if (id === selected) showQr(parse(ev)); });
  }
  $('pick').addEventListener('submit', function (ev) { ev.preventDefault(); select($('org').value.trim()); });

  function act(path, confirmText) {
    var id = selected;
    if (!id) return;
    if (confirmText && !window.confirm(fmt(confirmText, { org: id }))) return;
    var out = $('result');
    out.textContent = t.sending;
    out.removeAttribute('data-status');
    fetch(base + path, {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ organization_id: id })
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (j) {
        out.setAttribute('data-status', String(res.status));
        out.textContent = res.ok ? fmt(t.done, { s: stateText(j.status) })
                                 : fmt(t.refused, { s: text(j.code) || String(res.status) });
      });
    }).catch(function (e) {
      out.setAttribute('data-status', '0');
      out.textContent = fmt(t.refused, { s: String(e && e.message || e) });
    });
  }
  $('start').addEventListener('click', function () { act('start-session', null); });
  $('logout').addEventListener('click', function () { act('logout', t.confirm_logout); });
  $('clear').addEventListener('click', function () { act('clear-session', t.confirm_clear); });

  var h = location.hash.slice(1);  // #org: ids need no percent-decoding (A-Z, a-z, 0-9, _ and -)
  if (ORG_RE.test(h)) select(h);
})();
)JS";
    return js;
}

const std::string& style_css() {
    static const std::string css = R"CSS(:root { color-scheme: light; font-family: system-ui, sans-serif; font-size: 14px; }
body { margin: 0; background: #f4f6f5; color: #1d2521; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1.2em; background: #075e54; color: #fff; }
header h1 { font-size: 1.3em; margin: 0; }
.live.on::before { content: "● "; color: #6ee07a; }
.live.off::before { content: "● "; color: #f2b84b; }
main { display: flex; gap: 1.2em; padding: 1em 1.2em; align-items: flex-start; }
#orgs-section { flex: 1 1 auto; min-width: 0; overflow-x: auto; }
#session { flex: 0 0 290px; position: sticky; top: 1em; z-index: 1; background: #fff; border: 1px solid #d5dbd8; padding: .8em; border-radius: 6px; }
h2 { font-size: 1.1em; margin: 0 0 .6em; }
#filter { width: 22em; max-width: 100%; margin-bottom: .6em; padding: .3em; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid #e3e8e5; white-space: nowrap; }
td.last_error { white-space: normal; max-width: 22em; overflow-wrap: anywhere; color: #8a2c1c; }
td.retry_count, td.sent_today, td.failed_today { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #e9efec; }
td.state { white-space: normal; min-width: 13em; }
tr.failing td.failed_today { color: #b3261e; font-weight: bold; }
.state[data-state="connected"], td.state[data-state="connected"] { color: #0a7d32; font-weight: bold; }
.state[data-state="qr_ready"], td.state[data-state="qr_ready"] { color: #8a5a00; }
.state[data-state="reconnecting"], .state[data-state="connecting"] { color: #5b5f9e; }
.state[data-state="logged_out"], .state[data-state="conflict"] { color: #b3261e; }
#qr { display: block; margin: .6em 0; image-rendering: pixelated; border: 1px solid #d5dbd8; }
#qr[hidden] { display: none; }
.actions button { margin: .2em .2em .2em 0; }
#result { min-height: 1.2em; }
input:user-invalid { border-color: #b3261e; }
)CSS";
    return css;
}

}  // namespace wa::dashboard
