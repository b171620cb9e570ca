// The operator dashboard (`whatsapp_dashboard;`) as pure functions: its page, script and style (built into the
// module: no CDN, no build step), the language chosen by Accept-Language and the same-origin check of its actions.
// The nginx handler (src/ngx/dashboard.cpp) only routes and moves bytes.
#pragma once
#include <string>
#include <string_view>

namespace wa::dashboard {

enum class Lang { En, Es };

// es, es-CO, es-419... as the most preferred language (highest q, the first of equals) → Spanish; anything else,
// a missing or an unreadable header → English. Only the first 2,048 bytes and 64 entries are looked at.
Lang choose_lang(std::string_view accept_language);

// True when `origin` (the Origin header) names the server the request was sent to: its host and port equal the
// Host header's (case-insensitive, default ports 80 and 443 implied) and its scheme is https, or http when the
// connection is not TLS (https also then: a TLS proxy in front of plain nginx forwards https origins). A missing,
// "null", malformed or foreign origin is false.
bool same_origin(std::string_view origin, std::string_view host, bool tls);

// Escapes & < > " ' for HTML text and attribute values.
std::string html_escape(std::string_view s);

// The page; `base` is the location's path without its trailing '/' (the page is at base + "/").
std::string page_html(Lang lang, std::string_view base);
const std::string& script_js();
const std::string& style_css();

// The Content-Security-Policy of the page: only its own script, style, streams and actions; QR images as data:
// URLs; never framed.
extern const char* const kContentSecurityPolicy;

}  // namespace wa::dashboard
