// `whatsapp_dashboard;`: the operator dashboard, served in the workers from its location (say /dashboard/):
//   GET  /dashboard/                 the page (English or Spanish by Accept-Language)
//   GET  /dashboard/dashboard.js     its script; /dashboard/dashboard.css its style
//   GET  /dashboard/events           every organization, live (events.cpp: wa_dashboard_events_start)
//   GET  /dashboard/events/:org      one organization's status and QR, live (the API's own stream)
//   POST /dashboard/start-session    {"organization_id"}: the same command path as POST /api/start-session
//   POST /dashboard/logout           ... as POST /api/logout
//   POST /dashboard/clear-session    ... as POST /api/clear-session
// No API key is involved: nginx protects the location (allow/deny, auth_basic, ...), and every action must come
// with an Origin header naming this server (a page of any other origin cannot act through the operator's browser).

#include <string>
#include <string_view>

#include "wa/api/api.hpp"
#include "wa/api/dashboard.hpp"
#include "wa_module.hpp"

namespace api = wa::api;
namespace dash = wa::dashboard;

namespace {

const size_t kActionMaxBody = 1024;  // {"organization_id":"<64 characters>"} and some room

bool add_header(ngx_http_request_t* r, const char* name, std::string_view value) {
    auto* h = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
    if (h == NULL) return false;
    h->hash = 1;
    h->key.data = (u_char*)name;
    h->key.len = ngx_strlen(name);
    h->value.len = value.size();
    h->value.data = static_cast<u_char*>(ngx_pnalloc(r->pool, value.size() ? value.size() : 1));
    if (h->value.data == NULL) return false;
    ngx_memcpy(h->value.data, value.data(), value.size());
    return true;
}

ngx_int_t send_body(ngx_http_request_t* r, ngx_uint_t status, const char* type, const std::string& body,
                    bool page) {
    r->headers_out.status = status;
    r->headers_out.content_type.data = (u_char*)type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = body.size();
    bool ok = add_header(r, "Cache-Control", page ? "no-store" : "no-cache") &&
              add_header(r, "X-Content-Type-Options", "nosniff");
    if (page) {
        ok = ok && add_header(r, "Content-Security-Policy", dash::kContentSecurityPolicy) &&
             add_header(r, "X-Frame-Options", "DENY") && add_header(r, "Referrer-Policy", "no-referrer") &&
             add_header(r, "Vary", "Accept-Language");
    }
    if (!ok) return NGX_ERROR;
    if (r->method == NGX_HTTP_HEAD) r->header_only = 1;
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) return rc;
    ngx_buf_t* b = ngx_create_temp_buf(r->pool, body.size() ? body.size() : 1);
    if (b == NULL) return NGX_ERROR;
    b->last = ngx_cpymem(b->last, body.data(), body.size());
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    ngx_chain_t out = {b, NULL};
    return ngx_http_output_filter(r, &out);
}

// The one header called `name` (nullptr when there is none, or more than one: which would count is unclear).
const ngx_table_elt_t* single_header(ngx_http_request_t* r, const char* name) {
    size_t n = ngx_strlen(name);
    const ngx_table_elt_t* found = NULL;
    ngx_list_part_t* part = &r->headers_in.headers.part;
    auto* h = static_cast<ngx_table_elt_t*>(part->elts);
    for (ngx_uint_t i = 0;; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) break;
            part = part->next;
            h = static_cast<ngx_table_elt_t*>(part->elts);
            i = 0;
        }
        if (h[i].key.len != n || ngx_strncasecmp(h[i].key.data, (u_char*)name, n) != 0) continue;
        if (found) return NULL;
        found = &h[i];
    }
    return found;
}

std::string_view view(const ngx_str_t& s) { return std::string_view(reinterpret_cast<const char*>(s.data), s.len); }

bool same_origin(ngx_http_request_t* r) {
    const ngx_table_elt_t* origin = single_header(r, "Origin");
    ngx_table_elt_t* host = r->headers_in.host;
    if (origin == NULL || host == NULL) return false;
    bool tls = false;
#if (NGX_HTTP_SSL)
    tls = r->connection->ssl != NULL;
#endif
    return dash::same_origin(view(origin->value), view(host->value), tls);
}

ngx_int_t answer(ngx_http_request_t* r, const api::Response& resp) {
    if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    return wa_send_response(r, resp);
}

ngx_int_t method_not_allowed(ngx_http_request_t* r, const char* allow) {
    api::Response resp = api::error(405, "method_not_allowed", "method not allowed on this route");
    resp.allow = allow;
    return answer(r, resp);
}

}  // namespace

ngx_int_t wa_dashboard_handler(ngx_http_request_t* r) {
    auto* m = static_cast<wa_main_conf_t*>(ngx_http_get_module_main_conf(r, ngx_http_whatsapp_module));
    auto* l = static_cast<wa_loc_conf_t*>(ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module));
    if (m->zone == NULL)
        return answer(r, api::error(500, "internal_error", "whatsapp_dashboard needs whatsapp_zone in the http block"));
    std::string_view uri = view(r->uri), prefix = view(l->dash_prefix);
    if (uri.substr(0, prefix.size()) != prefix) return answer(r, api::error(404, "not_found", "unknown route"));
    std::string_view path = uri.substr(prefix.size());
    bool get = (r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)) != 0, post = r->method == NGX_HTTP_POST;

    if (path.empty()) {  // location /dashboard (no slash): the page lives at /dashboard/, where its links resolve
        if (!get) return method_not_allowed(r, "GET, HEAD");
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        ngx_http_clear_location(r);
        std::string to = std::string(prefix) + "/";
        auto* loc = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
        u_char* p = static_cast<u_char*>(ngx_pnalloc(r->pool, to.size()));
        if (loc == NULL || p == NULL) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        ngx_memcpy(p, to.data(), to.size());
        loc->hash = 1;
        ngx_str_set(&loc->key, "Location");
        loc->value = {to.size(), p};
        r->headers_out.location = loc;
        return NGX_HTTP_MOVED_PERMANENTLY;
    }

    struct Asset {
        std::string_view path;
        const char* type;
    };
    static const Asset kAssets[] = {{"/", "text/html; charset=utf-8"},
                                    {"/dashboard.js", "text/javascript; charset=utf-8"},
                                    {"/dashboard.css", "text/css; charset=utf-8"}};
    for (const Asset& a : kAssets) {
        if (path != a.path) continue;
        if (!get) return method_not_allowed(r, "GET, HEAD");
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (a.path == "/") {
            ngx_table_elt_t* al = r->headers_in.accept_language;
            dash::Lang lang = dash::choose_lang(al ? view(al->value) : std::string_view());
            return send_body(r, NGX_HTTP_OK, a.type, dash::page_html(lang, prefix), true);
        }
        return send_body(r, NGX_HTTP_OK, a.type, a.path == "/dashboard.js" ? dash::script_js() : dash::style_css(), false);
    }

    if (path == "/events" || path.substr(0, 8) == "/events/") {
        if (!get) return method_not_allowed(r, "GET, HEAD");
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (path == "/events") return wa_dashboard_events_start(r, m);
        api::Route route;
        route.id = api::RouteId::Events;
        route.method_ok = true;
        route.org.assign(path.substr(8));  // validated by wa_events_start (400 invalid_organization_id)
        return wa_events_start(r, m, route, 0);
    }

    static const std::pair<std::string_view, api::RouteId> kActions[] = {
        {"/start-session", api::RouteId::StartSession},
        {"/logout", api::RouteId::Logout},
        {"/clear-session", api::RouteId::ClearSession}};
    for (const auto& [action, route] : kActions) {
        if (path != action) continue;
        if (!post) return method_not_allowed(r, "POST");
        // Before anything else, the body included: a request of another origin learns nothing else.
        if (!same_origin(r)) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "whatsapp dashboard: action refused: missing or foreign Origin header");
            return answer(r, api::error(403, "forbidden_origin",
                                        "dashboard actions must come from the dashboard's own origin (Origin header)"));
        }
        return wa_command_request(r, m, route, kActionMaxBody);
    }
    return answer(r, api::error(404, "not_found", "unknown route"));
}
