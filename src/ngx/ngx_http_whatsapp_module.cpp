// ngx_http_whatsapp_module: directives, configuration checks and process hooks.
//
// Process model (../shared/docs/nginx-process-model.md): init_module adds one worker to the master's count;
// the worker whose ngx_worker equals that index closes its listeners and becomes the helper, which owns every
// organization's WhatsApp connection. The master therefore spawns it, respawns it after a crash and hands it
// QUIT on reload like any worker. `nginx -t` only parses and checks: nothing is spawned, opened or locked.

#include "wa_module.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include <sys/resource.h>

#include "wa/codec/base64.hpp"
#include "wa/api/limits.hpp"
#include "wa/api/phone.hpp"
#include "wa/api/validate.hpp"
#include "webhooks.hpp"

static void* wa_create_main_conf(ngx_conf_t* cf);
static char* wa_init_main_conf(ngx_conf_t* cf, void* conf);
static void* wa_create_loc_conf(ngx_conf_t* cf);
static char* wa_merge_loc_conf(ngx_conf_t* cf, void* parent, void* child);
static char* wa_zone_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_api_key_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_api_key_file_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_resolver_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_backoff_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_api_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_send_rate_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_client_version_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_browser_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_keepalive_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_qr_refresh_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_retention_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_metrics_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_dashboard_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
static char* wa_check_region(ngx_conf_t* cf, void* post, void* data);
static char* wa_check_root_key(ngx_conf_t* cf, void* post, void* data);
static char* wa_check_server(ngx_conf_t* cf, void* post, void* data);
static char* wa_check_max_sessions(ngx_conf_t* cf, void* post, void* data);
static ngx_int_t wa_init_module(ngx_cycle_t* cycle);

// Checked where they are written, so that nginx -t points at the directive's own line.
static ngx_conf_post_t wa_region_post = {wa_check_region};
static ngx_conf_post_t wa_root_key_post = {wa_check_root_key};
static ngx_conf_post_t wa_server_post = {wa_check_server};
static ngx_conf_post_t wa_max_sessions_post = {wa_check_max_sessions};
static ngx_int_t wa_init_process(ngx_cycle_t* cycle);
static void wa_exit_process(ngx_cycle_t* cycle);

#define MAIN NGX_HTTP_MAIN_CONF
#define MAIN_OFF(f) offsetof(wa_main_conf_t, f)

// whatsapp_store_sync normal | full;  (see Store::set_synchronous)
static ngx_conf_enum_t wa_store_sync_modes[] = {{ngx_string("normal"), 0}, {ngx_string("full"), 1}, {ngx_null_string, 0}};

static ngx_command_t wa_commands[] = {
    {ngx_string("whatsapp_zone"), MAIN | NGX_CONF_TAKE2, wa_zone_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_state_dir"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_str_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(state_dir), NULL},
    {ngx_string("whatsapp_api_key"), MAIN | NGX_CONF_TAKE1, wa_api_key_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_api_key_file"), MAIN | NGX_CONF_TAKE1, wa_api_key_file_directive, NGX_HTTP_MAIN_CONF_OFFSET,
     0, NULL},
    {ngx_string("whatsapp_server"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_str_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(server), &wa_server_post},
    {ngx_string("whatsapp_default_region"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_str_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(default_region), &wa_region_post},
    {ngx_string("whatsapp_root_key"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_str_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(root_key), &wa_root_key_post},
    {ngx_string("whatsapp_ssl_trusted_certificate"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_str_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, MAIN_OFF(trusted_certificate), NULL},
    {ngx_string("whatsapp_resolver"), MAIN | NGX_CONF_1MORE, wa_resolver_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     NULL},
    {ngx_string("whatsapp_resolver_timeout"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_msec_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, MAIN_OFF(resolver_timeout), NULL},
    {ngx_string("whatsapp_connect_timeout"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(connect_timeout), NULL},
    {ngx_string("whatsapp_handshake_timeout"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_msec_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, MAIN_OFF(handshake_timeout), NULL},
    {ngx_string("whatsapp_command_timeout"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(command_timeout), NULL},
    {ngx_string("whatsapp_send_timeout"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(send_timeout), NULL},
    {ngx_string("whatsapp_reconnect_backoff"), MAIN | NGX_CONF_TAKE2, wa_backoff_directive, NGX_HTTP_MAIN_CONF_OFFSET,
     0, NULL},
    {ngx_string("whatsapp_send_rate"), MAIN | NGX_CONF_TAKE12, wa_send_rate_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     NULL},
    {ngx_string("whatsapp_max_body"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_size_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(max_body), NULL},
    {ngx_string("whatsapp_max_media_size"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_size_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(max_media), NULL},
    {ngx_string("whatsapp_queue_size"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_num_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(queue_size), NULL},
    {ngx_string("whatsapp_max_sessions"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_num_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(max_sessions), &wa_max_sessions_post},
    {ngx_string("whatsapp_client_version"), MAIN | NGX_CONF_TAKE1, wa_client_version_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_browser"), MAIN | NGX_CONF_TAKE2, wa_browser_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_keepalive"), MAIN | NGX_CONF_TAKE3, wa_keepalive_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     NULL},
    {ngx_string("whatsapp_qr_refresh"), MAIN | NGX_CONF_TAKE2, wa_qr_refresh_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     NULL},
    {ngx_string("whatsapp_message_retention"), MAIN | NGX_CONF_TAKE12, wa_retention_directive, NGX_HTTP_MAIN_CONF_OFFSET,
     0, NULL},
    {ngx_string("whatsapp_store_sync"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_enum_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(store_sync_full), &wa_store_sync_modes},
    {ngx_string("whatsapp_webhook"), MAIN | NGX_CONF_1MORE, wa_webhook_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_webhook_retry_for"), MAIN | NGX_CONF_TAKE1, wa_webhook_retry_for_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_webhook_concurrency"), MAIN | NGX_CONF_TAKE1, wa_webhook_concurrency_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_webhook_backoff"), MAIN | NGX_CONF_TAKE2, wa_webhook_backoff_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_webhook_timeout"), MAIN | NGX_CONF_TAKE1, wa_webhook_timeout_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_webhook_keepalive"), MAIN | NGX_CONF_TAKE12, wa_webhook_keepalive_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_webhook_override_secret"), MAIN | NGX_CONF_TAKE1, wa_webhook_override_secret_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_status_summary"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(status_summary), NULL},
    {ngx_string("whatsapp_api"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE12, wa_api_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},
    {ngx_string("whatsapp_events_max"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_num_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(events_max), NULL},
    {ngx_string("whatsapp_events_heartbeat"), MAIN | NGX_CONF_TAKE1, ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     MAIN_OFF(events_heartbeat), NULL},
    {ngx_string("whatsapp_metrics"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, wa_metrics_directive, NGX_HTTP_LOC_CONF_OFFSET,
     0, NULL},
    {ngx_string("whatsapp_dashboard"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, wa_dashboard_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},
    ngx_null_command};

static ngx_int_t wa_postconfiguration(ngx_conf_t*) { return wa_install_error_filters(); }

static ngx_http_module_t wa_module_ctx = {
    NULL, wa_postconfiguration, wa_create_main_conf, wa_init_main_conf, NULL, NULL, wa_create_loc_conf,
    wa_merge_loc_conf};

extern "C" {
ngx_module_t ngx_http_whatsapp_module = {NGX_MODULE_V1,
                                         &wa_module_ctx,
                                         wa_commands,
                                         NGX_HTTP_MODULE,
                                         NULL,
                                         wa_init_module,
                                         wa_init_process,
                                         NULL,
                                         NULL,
                                         wa_exit_process,
                                         NULL,
                                         NGX_MODULE_V1_PADDING};
}

wa_main_conf_t* wa_main_conf(ngx_cycle_t* cycle) {
    if (cycle->conf_ctx == NULL || cycle->conf_ctx[ngx_http_module.index] == NULL) return NULL;
    return static_cast<wa_main_conf_t*>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_whatsapp_module));
}

wa_zone_ctx_t* wa_zone(ngx_cycle_t* cycle) {
    wa_main_conf_t* mcf = wa_main_conf(cycle);
    if (mcf == NULL || mcf->zone == NULL) return NULL;
    return static_cast<wa_zone_ctx_t*>(mcf->zone->data);
}

static void* wa_create_main_conf(ngx_conf_t* cf) {
    auto* m = static_cast<wa_main_conf_t*>(ngx_pcalloc(cf->pool, sizeof(wa_main_conf_t)));
    if (m == NULL) return NULL;
    m->resolver_timeout = NGX_CONF_UNSET_MSEC;
    m->connect_timeout = NGX_CONF_UNSET_MSEC;
    m->handshake_timeout = NGX_CONF_UNSET_MSEC;
    m->command_timeout = NGX_CONF_UNSET_MSEC;
    m->send_timeout = NGX_CONF_UNSET_MSEC;
    m->backoff_min = NGX_CONF_UNSET_MSEC;
    m->backoff_max = NGX_CONF_UNSET_MSEC;
    m->max_body = NGX_CONF_UNSET_SIZE;
    m->max_media = NGX_CONF_UNSET_SIZE;
    m->queue_size = NGX_CONF_UNSET_UINT;
    m->send_rate_per_min = NGX_CONF_UNSET_UINT;
    m->send_burst = NGX_CONF_UNSET_UINT;
    m->max_sessions = NGX_CONF_UNSET_UINT;
    m->keepalive_min = NGX_CONF_UNSET_MSEC;
    m->keepalive_max = NGX_CONF_UNSET_MSEC;
    m->ping_timeout = NGX_CONF_UNSET_MSEC;
    m->qr_first = NGX_CONF_UNSET_MSEC;
    m->qr_next = NGX_CONF_UNSET_MSEC;
    m->message_retention = NGX_CONF_UNSET;
    m->message_cap = NGX_CONF_UNSET_UINT;
    m->store_sync_full = NGX_CONF_UNSET;
    m->events_max = NGX_CONF_UNSET_UINT;
    m->events_heartbeat = NGX_CONF_UNSET_MSEC;
    m->status_summary = NGX_CONF_UNSET_MSEC;
    m->helper_worker = -1;
    return m;
}

static void* wa_create_loc_conf(ngx_conf_t* cf) {
    auto* l = static_cast<wa_loc_conf_t*>(ngx_pcalloc(cf->pool, sizeof(wa_loc_conf_t)));
    if (l == NULL) return NULL;
    l->api = NGX_CONF_UNSET;
    return l;
}

static char* wa_merge_loc_conf(ngx_conf_t* cf, void* parent, void* child) {
    auto* prev = static_cast<wa_loc_conf_t*>(parent);
    auto* conf = static_cast<wa_loc_conf_t*>(child);
    ngx_conf_merge_value(conf->api, prev->api, 0);
    if (conf->clcf && conf->dashboard) {
        // A dashboard action's body is {"organization_id": ...}: nginx refuses anything much larger as it arrives.
        conf->clcf->client_max_body_size = 1024;
    } else if (conf->clcf) {
        // nginx then refuses a larger body itself, while it arrives (chunked too) and before it is buffered,
        // and the error filters turn that refusal into the contract's 413 JSON. Left at nginx's 1m, bodies
        // between whatsapp_max_body and 1m would be read in full first, and larger ones get HTML.
        auto* m = static_cast<wa_main_conf_t*>(ngx_http_conf_get_module_main_conf(cf, ngx_http_whatsapp_module));
        // The location made for POST /api/send-media (wa_add_media_location) takes wa_media_body_limit.
        conf->clcf->client_max_body_size =
            static_cast<off_t>(conf->media_location ? std::max(m->max_body, wa_media_body_limit(m)) : m->max_body);
    }
    return NGX_CONF_OK;
}

static char* wa_zone_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    ngx_str_t* v = static_cast<ngx_str_t*>(cf->args->elts);
    if (m->zone) return (char*)"is duplicate";
    ssize_t size = ngx_parse_size(&v[2]);
    if (size == NGX_ERROR || size < (ssize_t)(256 * 1024)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_zone \"%V\": size must be at least 256k", &v[1]);
        return (char*)NGX_CONF_ERROR;
    }
    // The layout version is part of the name: a build with another layout never reuses an old mapping.
    ngx_str_t name;
    name.data = static_cast<u_char*>(ngx_pnalloc(cf->pool, v[1].len + NGX_INT_T_LEN + 3));
    if (name.data == NULL) return (char*)NGX_CONF_ERROR;
    name.len = ngx_sprintf(name.data, "%V@wa%d", &v[1], WA_SHM_LAYOUT) - name.data;
    m->zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_whatsapp_module);
    if (m->zone == NULL) return (char*)NGX_CONF_ERROR;
    if (m->zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_zone \"%V\" is already used", &v[1]);
        return (char*)NGX_CONF_ERROR;
    }
    auto* ctx = static_cast<wa_zone_ctx_t*>(ngx_pcalloc(cf->pool, sizeof(wa_zone_ctx_t)));
    if (ctx == NULL) return (char*)NGX_CONF_ERROR;
    m->zone->init = wa_shm_init_zone;
    m->zone->data = ctx;
    m->enabled = 1;
    return NGX_CONF_OK;
}

// Keys are secrets: they are checked here but never echoed in a message.
static bool wa_add_key(ngx_conf_t* cf, wa_main_conf_t* m, const u_char* p, size_t len) {
    if (len < 8 || len > 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "an API key must be 8 to 256 characters long");
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "an API key must be printable ASCII without spaces");
            return false;
        }
    }
    if (m->api_keys == NULL) {
        m->api_keys = ngx_array_create(cf->pool, 2, sizeof(wa::KeyDigest));
        if (m->api_keys == NULL) return false;
    }
    auto* k = static_cast<wa::KeyDigest*>(ngx_array_push(m->api_keys));
    if (k == NULL) return false;
    *k = wa::key_digest(std::string_view(reinterpret_cast<const char*>(p), len));
    return true;
}

static char* wa_api_key_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    ngx_str_t* v = static_cast<ngx_str_t*>(cf->args->elts);
    return wa_add_key(cf, static_cast<wa_main_conf_t*>(conf), v[1].data, v[1].len) ? NGX_CONF_OK
                                                                                   : (char*)NGX_CONF_ERROR;
}

// One key per line; blank lines and lines starting with '#' are skipped. Lets ops keep keys out of
// nginx.conf (and out of `nginx -T`) and rotate them with a reload.
static char* wa_api_key_file_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    ngx_str_t* v = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_str_t file = v[1];
    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) return (char*)NGX_CONF_ERROR;
    std::string path = wa_str(file);
    std::ifstream in(path);
    if (!in) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "cannot read whatsapp_api_key_file \"%V\"", &file);
        return (char*)NGX_CONF_ERROR;
    }
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
        size_t s = line.find_first_not_of(" \t");
        if (s == std::string::npos || line[s] == '#') continue;
        if (!wa_add_key(cf, static_cast<wa_main_conf_t*>(conf), reinterpret_cast<const u_char*>(line.data()) + s,
                        line.size() - s))
            return (char*)NGX_CONF_ERROR;
        n++;
    }
    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_api_key_file \"%V\" holds no key", &file);
        return (char*)NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

static char* wa_resolver_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    if (m->resolver) return (char*)"is duplicate";
    ngx_str_t* v = static_cast<ngx_str_t*>(cf->args->elts);
    m->resolver = ngx_resolver_create(cf, &v[1], cf->args->nelts - 1);
    return m->resolver ? NGX_CONF_OK : (char*)NGX_CONF_ERROR;
}

static char* wa_backoff_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    ngx_str_t* v = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_int_t lo = ngx_parse_time(&v[1], 0), hi = ngx_parse_time(&v[2], 0);
    if (lo == NGX_ERROR || hi == NGX_ERROR || lo <= 0 || hi < lo) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_reconnect_backoff needs \"min max\" with 0 < min <= max");
        return (char*)NGX_CONF_ERROR;
    }
    m->backoff_min = lo;
    m->backoff_max = hi;
    return NGX_CONF_OK;
}

// whatsapp_send_rate 60r/m [burst=20]; also Nr/s.
static char* wa_send_rate_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    ngx_str_t* v = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_str_t r = v[1];
    ngx_uint_t scale = 0;
    if (r.len > 3 && ngx_strncmp(r.data + r.len - 3, "r/s", 3) == 0) scale = 60;
    else if (r.len > 3 && ngx_strncmp(r.data + r.len - 3, "r/m", 3) == 0) scale = 1;
    ngx_int_t n = scale ? ngx_atoi(r.data, r.len - 3) : NGX_ERROR;
    if (n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_send_rate \"%V\": expected a rate like 60r/m or 2r/s", &r);
        return (char*)NGX_CONF_ERROR;
    }
    m->send_rate_per_min = n * scale;
    m->send_burst = 20;
    if (cf->args->nelts == 3) {
        ngx_int_t b = v[2].len > 6 && ngx_strncmp(v[2].data, "burst=", 6) == 0 ? ngx_atoi(v[2].data + 6, v[2].len - 6)
                                                                               : NGX_ERROR;
        if (b <= 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_send_rate: invalid \"%V\", expected burst=N", &v[2]);
            return (char*)NGX_CONF_ERROR;
        }
        m->send_burst = b;
    }
    return NGX_CONF_OK;
}

// POST /api/send-media takes bodies up to wa_media_body_limit, every other route whatsapp_max_body. nginx checks
// client_max_body_size per location before any handler runs (and while a chunked body arrives), so the module
// adds, inside a prefix location that says whatsapp_api, the exact location "= <prefix>/api/send-media" with the
// larger limit, as if it had been written there (it inherits everything else of the location by the usual merge).
static char* wa_add_media_location(ngx_conf_t* cf, wa_loc_conf_t* l, ngx_http_core_loc_conf_t* pclcf) {
    if (l->token_only || pclcf->exact_match || pclcf->named || pclcf->noname
#if (NGX_PCRE)
        || pclcf->regex
#endif
    )
        return NGX_CONF_OK;
    static const char tail[] = "/api/send-media";
    size_t len = l->prefix.len + sizeof tail - 1;
    u_char* name = static_cast<u_char*>(ngx_pnalloc(cf->pool, len));
    if (name == NULL) return (char*)NGX_CONF_ERROR;
    ngx_memcpy(ngx_cpymem(name, l->prefix.data, l->prefix.len), tail, sizeof tail - 1);
    // Only where nginx would accept it as a nested location (its name starts with the parent's).
    if (pclcf->name.len > len || ngx_strncmp(name, pclcf->name.data, pclcf->name.len) != 0) return NGX_CONF_OK;
    auto* pctx = static_cast<ngx_http_conf_ctx_t*>(cf->ctx);
    auto* ctx = static_cast<ngx_http_conf_ctx_t*>(ngx_pcalloc(cf->pool, sizeof(ngx_http_conf_ctx_t)));
    if (ctx == NULL) return (char*)NGX_CONF_ERROR;
    ctx->main_conf = pctx->main_conf;
    ctx->srv_conf = pctx->srv_conf;
    ctx->loc_conf = static_cast<void**>(ngx_pcalloc(cf->pool, sizeof(void*) * ngx_http_max_module));
    if (ctx->loc_conf == NULL) return (char*)NGX_CONF_ERROR;
    for (ngx_uint_t i = 0; cf->cycle->modules[i]; i++) {  // as ngx_http_core_location does
        if (cf->cycle->modules[i]->type != NGX_HTTP_MODULE) continue;
        auto* module = static_cast<ngx_http_module_t*>(cf->cycle->modules[i]->ctx);
        if (module->create_loc_conf) {
            void* c = module->create_loc_conf(cf);
            if (c == NULL) return (char*)NGX_CONF_ERROR;
            ctx->loc_conf[cf->cycle->modules[i]->ctx_index] = c;
        }
    }
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ctx->loc_conf[ngx_http_core_module.ctx_index]);
    clcf->loc_conf = ctx->loc_conf;
    clcf->name.data = name;
    clcf->name.len = len;
    clcf->exact_match = 1;
    clcf->handler = wa_api_handler;
    auto* wl = static_cast<wa_loc_conf_t*>(ctx->loc_conf[ngx_http_whatsapp_module.ctx_index]);
    wl->api = 1;
    wl->clcf = clcf;
    wl->prefix = l->prefix;
    wl->prefix_set = 1;
    wl->media_location = 1;
    if (ngx_http_add_location(cf, &pclcf->locations, clcf) != NGX_OK) return (char*)NGX_CONF_ERROR;
    return NGX_CONF_OK;
}

static char* wa_api_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* l = static_cast<wa_loc_conf_t*>(conf);
    if (l->api != NGX_CONF_UNSET) return (char*)"is duplicate";
    l->api = 1;
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (clcf->handler == wa_metrics_handler) return (char*)"cannot share a location with whatsapp_metrics";
    if (clcf->handler == wa_dashboard_handler) return (char*)"cannot share a location with whatsapp_dashboard";
    clcf->handler = wa_api_handler;
    l->clcf = clcf;
    ngx_str_t* v = static_cast<ngx_str_t*>(cf->args->elts);
    // whatsapp_api [prefix] [token_only]: token_only serves status, qr and events with a session token, nothing else.
    ngx_str_t* prefix = NULL;
    for (ngx_uint_t i = 1; i < cf->args->nelts; i++) {
        if (v[i].len == 10 && ngx_strncmp(v[i].data, "token_only", 10) == 0) {
            if (l->token_only) return (char*)"has token_only twice";
            l->token_only = 1;
        } else if (prefix == NULL) {
            prefix = &v[i];
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_api takes a prefix and \"token_only\", got \"%V\"", &v[i]);
            return (char*)NGX_CONF_ERROR;
        }
    }
    if (prefix) {
        l->prefix = *prefix;
        l->prefix_set = 1;
        if (l->prefix.len && l->prefix.data[l->prefix.len - 1] == '/') l->prefix.len--;
        return wa_add_media_location(cf, l, clcf);
    }
    // Without an explicit prefix the mount point follows from the location: "/api/" and "= /health" are
    // mounted at the root, "/whatsapp/" mounts the API at /whatsapp/api/... and /whatsapp/health.
    ngx_str_t name = clcf->name;
#if (NGX_PCRE)
    if (clcf->regex) {
        ngx_str_null(&l->prefix);
        return NGX_CONF_OK;
    }
#endif
    auto ends_with = [&](const char* s) {
        size_t n = ngx_strlen(s);
        return name.len >= n && ngx_strncmp(name.data + name.len - n, s, n) == 0;
    };
    if (ends_with("/api/")) name.len -= 5;
    else if (ends_with("/api")) name.len -= 4;
    else if (clcf->exact_match && ends_with("/health")) name.len -= 7;
    else if (name.len && name.data[name.len - 1] == '/') name.len--;
    // "/api/status/" style exact or deeper locations: cut at the first "/api/" segment.
    u_char* api = ngx_strlcasestrn(name.data, name.data + name.len, (u_char*)"/api/", 5 - 1);
    if (api) name.len = api - name.data;
    l->prefix = name;
    return wa_add_media_location(cf, l, clcf);
}

// Parses ws[s]://host[:port]/path. IP literals and "localhost" need no resolver; other names are resolved
// at connect time, so that nginx -t and start-up never wait on DNS.
static bool wa_parse_server_url(ngx_conf_t* cf, wa_main_conf_t* m) {
    ngx_str_t s = m->server;
    // It goes into the request line and Host header verbatim: visible ASCII only, no fragment.
    for (size_t i = 0; i < s.len; i++) {
        if (s.data[i] <= 0x20 || s.data[i] >= 0x7f || s.data[i] == '#') {
            // Control bytes are shown escaped, so that the log line stays one line.
            std::string shown;
            for (size_t j = 0; j < s.len; j++) {
                char hex[8];
                if (s.data[j] < 0x20 || s.data[j] >= 0x7f) {
                    snprintf(hex, sizeof hex, "\\x%02x", s.data[j]);
                    shown += hex;
                } else {
                    shown += static_cast<char>(s.data[j]);
                }
            }
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "whatsapp_server \"%s\" must be a URL of visible ASCII characters without '#'",
                               shown.c_str());
            return false;
        }
    }
    auto* u = static_cast<wa_server_url_t*>(ngx_pcalloc(cf->pool, sizeof(wa_server_url_t)));
    if (u == NULL) return false;
    u->url = s;
    size_t skip;
    if (s.len > 6 && ngx_strncasecmp(s.data, (u_char*)"wss://", 6) == 0) {
        u->tls = true;
        skip = 6;
    } else if (s.len > 5 && ngx_strncasecmp(s.data, (u_char*)"ws://", 5) == 0) {
        skip = 5;
    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_server \"%V\" must start with wss:// or ws://", &s);
        return false;
    }
    ngx_url_t url;
    ngx_memzero(&url, sizeof(ngx_url_t));
    url.url.data = s.data + skip;
    url.url.len = s.len - skip;
    url.default_port = u->tls ? 443 : 80;
    url.uri_part = 1;
    url.no_resolve = 1;
    if (ngx_parse_url(cf->pool, &url) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_server \"%V\": %s", &s, url.err ? url.err : "invalid");
        return false;
    }
    u->host = url.host;
    u->port = url.port ? url.port : url.default_port;
    static ngx_str_t root_path = ngx_string("/");
    u->path = url.uri.len ? url.uri : root_path;
    u->host_header.data = s.data + skip;
    u->host_header.len = (url.uri.len ? url.uri.data : s.data + s.len) - u->host_header.data;
    if (url.naddrs > 0) {
        u->addrs = url.addrs;
        u->naddrs = url.naddrs;
    } else if (url.host.len == 9 && ngx_strncasecmp(url.host.data, (u_char*)"localhost", 9) == 0) {
        ngx_url_t lo;
        ngx_memzero(&lo, sizeof(ngx_url_t));
        char buf[32];
        int n = snprintf(buf, sizeof buf, "127.0.0.1:%u", (unsigned)u->port);
        lo.url.data = static_cast<u_char*>(ngx_pnalloc(cf->pool, n));
        ngx_memcpy(lo.url.data, buf, n);
        lo.url.len = n;
        if (ngx_parse_url(cf->pool, &lo) != NGX_OK || lo.naddrs == 0) return false;
        u->addrs = lo.addrs;
        u->naddrs = lo.naddrs;
    }
    m->url = u;
    return true;
}

// Without whatsapp_resolver (or an http-level resolver) names are resolved with the nameservers the
// system uses, read from /etc/resolv.conf at configuration time.
static ngx_resolver_t* wa_system_resolver(ngx_conf_t* cf) {
    std::ifstream in("/etc/resolv.conf");
    std::vector<std::string> ns;
    std::string line;
    while (std::getline(in, line)) {
        if (line.compare(0, 10, "nameserver") != 0) continue;
        size_t s = line.find_first_not_of(" \t", 10);
        if (s == std::string::npos) continue;
        std::string a = line.substr(s, line.find_first_of(" \t#", s) - s);
        if (a.find(':') != std::string::npos) a = "[" + a + "]";  // IPv6 literal for ngx_parse_url
        ns.push_back(a);
    }
    if (ns.empty()) ns.push_back("127.0.0.1");
    auto* names = static_cast<ngx_str_t*>(ngx_pcalloc(cf->pool, ns.size() * sizeof(ngx_str_t)));
    for (size_t i = 0; i < ns.size(); i++) {
        names[i].len = ns[i].size();
        names[i].data = static_cast<u_char*>(ngx_pnalloc(cf->pool, ns[i].size()));
        ngx_memcpy(names[i].data, ns[i].data(), ns[i].size());
    }
    return ngx_resolver_create(cf, names, ns.size());
}

static char* wa_check_region(ngx_conf_t* cf, void*, void* data) {
    auto* v = static_cast<ngx_str_t*>(data);
    if (wa::valid_region(wa_str(*v))) return NGX_CONF_OK;
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_default_region \"%V\" is not a known region code", v);
    return (char*)NGX_CONF_ERROR;
}

static char* wa_check_root_key(ngx_conf_t* cf, void*, void* data) {
    std::string raw;
    if (wa::base64_decode(wa_str(*static_cast<ngx_str_t*>(data)), raw) && raw.size() == 32) return NGX_CONF_OK;
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_root_key must be the base64 of a 32-byte Curve25519 public key");
    return (char*)NGX_CONF_ERROR;
}

static char* wa_check_server(ngx_conf_t* cf, void*, void* data) {
    auto* m = reinterpret_cast<wa_main_conf_t*>(static_cast<char*>(data) - offsetof(wa_main_conf_t, server));
    return wa_parse_server_url(cf, m) ? NGX_CONF_OK : (char*)NGX_CONF_ERROR;
}

// What the helper can hold: its worker_connections and its open-file limit (worker_rlimit_nofile, else the
// limit nginx was started with), minus a reserve. False while the events{} block is not parsed yet.
static bool wa_session_capacity(ngx_cycle_t* cycle, wa_main_conf_t* m) {
    if (cycle->conf_ctx[ngx_events_module.index] == NULL) return false;
    auto* ecf = static_cast<ngx_event_conf_t*>(ngx_event_get_conf(cycle->conf_ctx, ngx_event_core_module));
    auto* ccf = reinterpret_cast<ngx_core_conf_t*>(ngx_get_conf(cycle->conf_ctx, ngx_core_module));
    if (ecf == NULL || ecf->connections == NGX_CONF_UNSET_UINT) return false;
    uint64_t files = RLIM_INFINITY;
    struct rlimit rl;
    if (ccf && ccf->rlimit_nofile != NGX_CONF_UNSET) files = static_cast<uint64_t>(ccf->rlimit_nofile);
    else if (getrlimit(RLIMIT_NOFILE, &rl) == 0) files = rl.rlim_cur;
    m->worker_connections = ecf->connections;
    m->open_files = files == RLIM_INFINITY ? NGX_MAX_UINT32_VALUE : static_cast<ngx_uint_t>(files);
    m->session_capacity = static_cast<ngx_uint_t>(wa::session_limit(m->worker_connections, m->open_files).max);
    return true;
}

// Names both sides, so that the fix is obvious from the message alone.
static void wa_log_too_many_sessions(ngx_log_t* log, ngx_conf_t* cf, wa_main_conf_t* m) {
    const char* fmt = "whatsapp_max_sessions %ui is more than the helper can hold: worker_connections %ui and an "
                      "open-file limit of %ui (worker_rlimit_nofile) leave room for %ui sessions, %ui being kept for "
                      "its own sockets and files; raise worker_connections (and worker_rlimit_nofile) or lower "
                      "whatsapp_max_sessions";
    ngx_uint_t reserve = static_cast<ngx_uint_t>(wa::session_limit(m->worker_connections, m->open_files).reserve);
    if (cf) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, fmt, m->max_sessions, m->worker_connections, m->open_files,
                           m->session_capacity, reserve);
    } else {
        ngx_log_error(NGX_LOG_EMERG, log, 0, fmt, m->max_sessions, m->worker_connections, m->open_files,
                      m->session_capacity, reserve);
    }
}

static char* wa_check_max_sessions(ngx_conf_t* cf, void*, void* data) {
    auto* m = reinterpret_cast<wa_main_conf_t*>(static_cast<char*>(data) - offsetof(wa_main_conf_t, max_sessions));
    m->max_sessions_set = 1;
    if (m->max_sessions < 1) return (char*)"must be at least 1";
    // With events{} parsed already (its usual place), nginx -t points at this line.
    if (wa_session_capacity(cf->cycle, m) && m->max_sessions > m->session_capacity) {
        wa_log_too_many_sessions(cf->log, cf, m);
        return (char*)NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

// Without whatsapp_max_sessions the limit is what the helper can hold; a larger explicit one is an error.
// Runs at the end of http{} and again from init_module (where events{} and worker_rlimit_nofile are known
// whatever their place in the file); false when the explicit limit is too high.
static bool wa_settle_max_sessions(ngx_cycle_t* cycle, wa_main_conf_t* m, ngx_conf_t* cf) {
    if (!wa_session_capacity(cycle, m)) {
        if (!m->max_sessions_set) m->max_sessions = 10000;  // provisional, settled in init_module
        return true;
    }
    if (!m->max_sessions_set) m->max_sessions = m->session_capacity;
    if (m->max_sessions <= m->session_capacity) return true;
    wa_log_too_many_sessions(cycle->log, cf, m);
    return false;
}

static char* wa_init_main_conf(ngx_conf_t* cf, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    ngx_conf_init_msec_value(m->resolver_timeout, 10000);
    ngx_conf_init_msec_value(m->connect_timeout, 10000);
    ngx_conf_init_msec_value(m->handshake_timeout, 20000);
    ngx_conf_init_msec_value(m->command_timeout, 10000);
    ngx_conf_init_msec_value(m->send_timeout, 30000);
    ngx_conf_init_msec_value(m->backoff_min, 2000);
    ngx_conf_init_msec_value(m->backoff_max, 30000);
    ngx_conf_init_size_value(m->max_body, 64 * 1024);
    ngx_conf_init_size_value(m->max_media, 16 * 1024 * 1024);
    if (m->max_media == 0 || m->max_media > 1024u * 1024 * 1024) return (char*)"whatsapp_max_media_size must be 1 to 1g";
    ngx_conf_init_uint_value(m->queue_size, 1024);
    ngx_conf_init_uint_value(m->send_rate_per_min, 60);
    ngx_conf_init_uint_value(m->send_burst, 20);
    ngx_conf_init_msec_value(m->keepalive_min, 20000);  // whatsmeow keepalive.go: 20-30 s, 10 s to answer
    ngx_conf_init_msec_value(m->keepalive_max, 30000);
    ngx_conf_init_msec_value(m->ping_timeout, 10000);
    ngx_conf_init_msec_value(m->qr_first, 60000);  // whatsmeow qrchan.go
    ngx_conf_init_msec_value(m->qr_next, 20000);
    ngx_conf_init_value(m->message_retention, 30 * 86400);
    ngx_conf_init_uint_value(m->message_cap, 100000);
    ngx_conf_init_value(m->store_sync_full, 0);
    ngx_conf_init_uint_value(m->events_max, 1024);
    ngx_conf_init_msec_value(m->events_heartbeat, 15000);
    if (m->events_heartbeat < 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_events_heartbeat must be at least 100ms");
        return (char*)NGX_CONF_ERROR;
    }
    ngx_conf_init_msec_value(m->status_summary, 60000);
    if (m->client_version[0] == 0) {
        // The newest WhatsApp Web version whatsmeow advertised (wa-protocol-2026.md); a 405 login failure
        // means it is outdated: raise whatsapp_client_version and reload.
        m->client_version[0] = 2;
        m->client_version[1] = 3000;
        m->client_version[2] = 1047769893;
    }
    if (m->browser.len == 0) {
        ngx_str_set(&m->browser, "Chrome");
        ngx_str_set(&m->browser_os, "Mac OS");
    }
    if (m->server.len == 0) {
        // Copied into the pool: the resolver lowercases the host in place (ngx_resolve_name_locked), and a
        // string literal is read-only memory (the helper died of SIGSEGV at its first start-session).
        static const char def[] = "wss://web.whatsapp.com/ws/chat";
        m->server.len = sizeof def - 1;
        m->server.data = static_cast<u_char*>(ngx_pnalloc(cf->pool, m->server.len));
        if (m->server.data == NULL) return (char*)NGX_CONF_ERROR;
        ngx_memcpy(m->server.data, def, m->server.len);
    }
    if (m->default_region.len == 0) {
        ngx_str_set(&m->default_region, "CO");
    }
    if (m->state_dir.len == 0) {
        ngx_str_set(&m->state_dir, "/var/lib/nginx/whatsapp");
    }
    bool ca_given = m->trusted_certificate.len != 0;
    if (m->trusted_certificate.len == 0) {
        ngx_str_set(&m->trusted_certificate, "/etc/ssl/certs/ca-certificates.crt");
    }

    if (!wa_webhooks_init_conf(cf, m)) return (char*)NGX_CONF_ERROR;
    if (m->queue_size < 1 || m->queue_size > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_queue_size must be between 1 and 1000000");
        return (char*)NGX_CONF_ERROR;
    }
    if (ngx_conf_full_name(cf->cycle, &m->state_dir, 0) != NGX_OK) return (char*)NGX_CONF_ERROR;
    if (!m->enabled) return NGX_CONF_OK;
    if (!wa_settle_max_sessions(cf->cycle, m, cf)) return (char*)NGX_CONF_ERROR;

    if (m->url == NULL && !wa_parse_server_url(cf, m)) return (char*)NGX_CONF_ERROR;
    if (m->url->addrs == NULL && m->resolver == NULL) {
        auto* clcf =
            static_cast<ngx_http_core_loc_conf_t*>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
        if (clcf->resolver && clcf->resolver->connections.nelts) m->resolver = clcf->resolver;
        else m->resolver = wa_system_resolver(cf);
        if (m->resolver == NULL) return (char*)NGX_CONF_ERROR;
    }
    // Media uploads (send-media) are HTTPS even when the WhatsApp endpoint is a plain ws:// test server: the
    // context exists whenever its CAs can be loaded (given explicitly, or the system bundle is there).
    if (m->url->tls || ca_given || access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0) {
        m->ssl = static_cast<ngx_ssl_t*>(ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t)));
        if (m->ssl == NULL) return (char*)NGX_CONF_ERROR;
        m->ssl->log = cf->log;
        if (ngx_ssl_create(m->ssl, NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3, NULL) != NGX_OK) return (char*)NGX_CONF_ERROR;
        ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            ngx_ssl_cleanup_ctx(m->ssl);
            return (char*)NGX_CONF_ERROR;
        }
        cln->handler = ngx_ssl_cleanup_ctx;
        cln->data = m->ssl;
        if (ngx_conf_full_name(cf->cycle, &m->trusted_certificate, 1) != NGX_OK) return (char*)NGX_CONF_ERROR;
        ngx_str_t ca = m->trusted_certificate;
        if (ngx_ssl_trusted_certificate(cf, m->ssl, &ca, 4) != NGX_OK) return (char*)NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

// Runs in the master (and once before daemonizing), never under -t: it only adds the helper to the worker
// count and prepares the state directory for the unprivileged helper.
static ngx_int_t wa_init_module(ngx_cycle_t* cycle) {
    wa_main_conf_t* m = wa_main_conf(cycle);
    if (m == NULL || !m->enabled) return NGX_OK;
    if (!wa_settle_max_sessions(cycle, m, NULL)) return NGX_ERROR;
    if (m->api_keys == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "no whatsapp_api_key configured: every /api route answers 401 until one is set");
    }
    if (ngx_test_config) return NGX_OK;
    auto* ccf = reinterpret_cast<ngx_core_conf_t*>(ngx_get_conf(cycle->conf_ctx, ngx_core_module));
    if (ccf->master) {
        m->helper_worker = ccf->worker_processes;
        ccf->worker_processes++;
    }
    std::string dir = wa_str(m->state_dir);
    if (mkdir(dir.c_str(), 0700) == 0) {
        // A new directory is durable only once its parent is: fsync the parent.
        std::string parent = dir.substr(0, dir.find_last_of('/') == 0 ? 1 : dir.find_last_of('/'));
        int pfd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd == -1 || fsync(pfd) == -1)
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno, "whatsapp_state_dir: fsync(\"%s\") failed", parent.c_str());
        if (pfd != -1) close(pfd);
    } else if (errno != EEXIST) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno, "whatsapp_state_dir \"%V\": mkdir() failed", &m->state_dir);
        return NGX_ERROR;
    }
    struct stat st;
    if (lstat(dir.c_str(), &st) == -1 || !S_ISDIR(st.st_mode)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "whatsapp_state_dir \"%V\" is not a directory", &m->state_dir);
        return NGX_ERROR;
    }
    // Keys and credentials live here: nobody but the owner may even list it, whatever mode it was made with
    // (mkdir's umask, an administrator's mkdir). 0500 (read-only on purpose) is left alone.
    if ((st.st_mode & 077) != 0) {
        char modes[32];  // (ngx_sprintf has no octal)
        std::snprintf(modes, sizeof modes, "0%o, now 0%o", (unsigned)(st.st_mode & 07777), (unsigned)(st.st_mode & 0700));
        if (chmod(dir.c_str(), st.st_mode & 0700) == -1) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno, "whatsapp_state_dir \"%V\": chmod() failed (was %s)",
                          &m->state_dir, modes);
            return NGX_ERROR;
        }
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0, "whatsapp_state_dir \"%V\" was %s", &m->state_dir, modes);
    }
    if (geteuid() == 0 && ccf->user != (ngx_uid_t)NGX_CONF_UNSET_UINT && st.st_uid != ccf->user) {
        if (chown(dir.c_str(), ccf->user, ccf->group) == -1) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno, "chown(\"%V\") failed", &m->state_dir);
            return NGX_ERROR;
        }
    }
    return NGX_OK;
}

static bool wa_is_helper(wa_main_conf_t* m) {
    return ngx_process == NGX_PROCESS_WORKER && m->helper_worker >= 0 && ngx_worker == (ngx_uint_t)m->helper_worker;
}

static ngx_int_t wa_init_process(ngx_cycle_t* cycle) {
    wa_main_conf_t* m = wa_main_conf(cycle);
    if (m == NULL || !m->enabled) return NGX_OK;
    if (wa_is_helper(m)) return wa_helper_init_process(cycle);
    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) return NGX_OK;
    if (wa_worker_init_process(cycle) != NGX_OK) return NGX_ERROR;
    // master_process off: one process serves HTTP and owns the sessions too (for debugging).
    if (ngx_process == NGX_PROCESS_SINGLE) return wa_helper_init_process(cycle);
    return NGX_OK;
}

static void wa_exit_process(ngx_cycle_t* cycle) {
    wa_main_conf_t* m = wa_main_conf(cycle);
    if (m == NULL || !m->enabled) return;
    if (wa_is_helper(m) || ngx_process == NGX_PROCESS_SINGLE) wa_helper_exit_process(cycle);
    wa_worker_exit_process(cycle);
}

// whatsapp_client_version 2.3000.1047769893;
static char* wa_client_version_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    std::string v = wa_str(args[1]);
    unsigned long parts[3];
    char tail = 0;
    if (v.size() > 32 || std::sscanf(v.c_str(), "%lu.%lu.%lu%c", &parts[0], &parts[1], &parts[2], &tail) != 3 ||
        parts[0] == 0 || parts[0] > 99 || parts[1] > 0xFFFFFFFFul || parts[2] > 0xFFFFFFFFul) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_client_version \"%V\" must be three numbers like 2.3000.1047769893",
                           &args[1]);
        return (char*)NGX_CONF_ERROR;
    }
    for (int i = 0; i < 3; i++) m->client_version[i] = static_cast<uint32_t>(parts[i]);
    return NGX_CONF_OK;
}

// whatsapp_browser Chrome "Mac OS";  The pairing-code request sends "Browser (OS)", which the server validates.
static char* wa_browser_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    static const char* const kBrowsers[] = {"Chrome", "Firefox", "Safari", "Edge", "Opera", "Desktop"};
    bool known = false;
    for (const char* b : kBrowsers) known = known || wa_str(args[1]) == b;
    bool os_ok = args[2].len > 0 && args[2].len <= 40;
    for (size_t i = 0; os_ok && i < args[2].len; i++) os_ok = args[2].data[i] >= 0x20 && args[2].data[i] < 0x7f;
    if (!known || !os_ok) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "whatsapp_browser takes one of Chrome, Firefox, Safari, Edge, Opera, Desktop and an OS name "
                           "of 1-40 printable ASCII characters");
        return (char*)NGX_CONF_ERROR;
    }
    m->browser = args[1];
    m->browser_os = args[2];
    return NGX_CONF_OK;
}

// whatsapp_keepalive 20s 30s 10s;  ping interval (random in [min, max]) and how long an answer may take.
static char* wa_keepalive_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_msec_t v[3];
    for (int i = 0; i < 3; i++) {
        ngx_int_t t = ngx_parse_time(&args[i + 1], 0);
        if (t == NGX_ERROR || t < 100) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_keepalive: invalid time \"%V\"", &args[i + 1]);
            return (char*)NGX_CONF_ERROR;
        }
        v[i] = static_cast<ngx_msec_t>(t);
    }
    if (v[0] > v[1]) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_keepalive: the minimum interval exceeds the maximum");
        return (char*)NGX_CONF_ERROR;
    }
    m->keepalive_min = v[0];
    m->keepalive_max = v[1];
    m->ping_timeout = v[2];
    return NGX_CONF_OK;
}

// whatsapp_qr_refresh 60s 20s;  how long the first QR ref and each next one are shown (whatsmeow's timing).
static char* wa_qr_refresh_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_int_t first = ngx_parse_time(&args[1], 0), next = ngx_parse_time(&args[2], 0);
    if (first == NGX_ERROR || next == NGX_ERROR || first < 1000 || next < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_qr_refresh takes two times of at least 1s");
        return (char*)NGX_CONF_ERROR;
    }
    m->qr_first = static_cast<ngx_msec_t>(first);
    m->qr_next = static_cast<ngx_msec_t>(next);
    return NGX_CONF_OK;
}

// whatsapp_message_retention 30d [max=100000];  stored messages older than this, or beyond the newest max of an
// organization, are deleted (checked every minute).
static char* wa_retention_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* m = static_cast<wa_main_conf_t*>(conf);
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    time_t t = ngx_parse_time(&args[1], 1);
    if (t == (time_t)NGX_ERROR || t < 60) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_message_retention: \"%V\" must be a time of at least 1m", &args[1]);
        return (char*)NGX_CONF_ERROR;
    }
    m->message_retention = t;
    if (cf->args->nelts == 3) {
        if (args[2].len <= 4 || ngx_strncmp(args[2].data, "max=", 4) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_message_retention: expected max=N, got \"%V\"", &args[2]);
            return (char*)NGX_CONF_ERROR;
        }
        ngx_int_t n = ngx_atoi(args[2].data + 4, args[2].len - 4);
        if (n == NGX_ERROR || n < 1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_message_retention: max must be a positive number");
            return (char*)NGX_CONF_ERROR;
        }
        m->message_cap = static_cast<ngx_uint_t>(n);
    }
    return NGX_CONF_OK;
}

// whatsapp_metrics;  Prometheus text format (metrics.cpp). Protect the location (allow/deny): it names organizations.
static char* wa_metrics_directive(ngx_conf_t* cf, ngx_command_t*, void*) {
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (clcf->handler == wa_api_handler) return (char*)"cannot share a location with whatsapp_api";
    if (clcf->handler == wa_dashboard_handler) return (char*)"cannot share a location with whatsapp_dashboard";
    clcf->handler = wa_metrics_handler;
    return NGX_CONF_OK;
}

// whatsapp_dashboard;  The operator dashboard (dashboard.cpp) in a prefix location, which nginx protects
// (allow/deny, auth_basic): its page, its streams and its actions (same-origin POSTs) are all served under it.
static char* wa_dashboard_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* l = static_cast<wa_loc_conf_t*>(conf);
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (l->dashboard) return (char*)"is duplicate";
    if (clcf->handler == wa_api_handler) return (char*)"cannot share a location with whatsapp_api";
    if (clcf->handler == wa_metrics_handler) return (char*)"cannot share a location with whatsapp_metrics";
    bool prefix = !clcf->exact_match && !clcf->named && !clcf->noname;
#if (NGX_PCRE)
    prefix = prefix && clcf->regex == NULL;
#endif
    if (!prefix || clcf->name.len == 0 || clcf->name.data[0] != '/')
        return (char*)"needs a prefix location, such as location /dashboard/ { whatsapp_dashboard; }";
    clcf->handler = wa_dashboard_handler;
    l->dashboard = 1;
    l->clcf = clcf;
    l->dash_prefix = clcf->name;
    if (l->dash_prefix.data[l->dash_prefix.len - 1] == '/') l->dash_prefix.len--;
    return NGX_CONF_OK;
}
