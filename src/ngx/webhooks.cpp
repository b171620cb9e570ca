#include "webhooks.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <random>

#include "http_client.hpp"
#include "wa/webhook/http.hpp"

namespace {

struct Target {
    std::string url;
    wa::http::Url u;
    std::string secret;
    std::string events;    // "" = all
    std::string ca;        // ca=path, else whatsapp_ssl_trusted_certificate
    ngx_ssl_t* ssl = nullptr;
};

struct Conf {
    std::vector<Target> targets;
    ngx_msec_t retry_for = 24 * 3600 * 1000;
    ngx_msec_t timeout = 10000;
    ngx_msec_t backoff_min = 1000, backoff_max = 600000;
    ngx_uint_t concurrency = 4;
    ngx_uint_t keepalive = 4;          // idle kept-alive connections per URL (0: one request per connection)
    ngx_msec_t keepalive_timeout = 4000;  // under common servers' own idle limits (Node and Apache: 5 s)
    ngx_ssl_t* default_ssl = nullptr;  // https URLs given through POST /api/webhooks
    std::string override_secret;       // whatsapp_webhook_override_secret: signs organizations' own URLs
};

struct Override {
    std::string url, events;
};

// Kept beside the main conf (one per cycle): keyed by the conf's address, so a reload gets a fresh one.
std::map<const wa_main_conf_t*, std::unique_ptr<Conf>> g_confs;

Conf* conf_of(const wa_main_conf_t* m, bool create) {
    auto it = g_confs.find(m);
    if (it != g_confs.end()) return it->second.get();
    if (!create) return nullptr;
    return g_confs.emplace(m, std::make_unique<Conf>()).first->second.get();
}

bool read_secret(const std::string& path, std::string& out, std::string& err) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        err = std::string("open() failed: ") + strerror(errno);
        return false;
    }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0) {
        err = std::string("read() failed: ") + strerror(errno);
        return false;
    }
    out.assign(buf, static_cast<size_t>(n));
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
    if (out.empty()) {
        err = "the file is empty";
        return false;
    }
    return true;
}

// ---- the engine ----

struct Engine {
    wa_main_conf_t* m = nullptr;
    Conf* conf = nullptr;
    wa::store::Store* store = nullptr;
    ngx_log_t* log = nullptr;
    std::function<void()> begin_write;
    ngx_event_t timer;
    std::map<std::string, std::vector<int64_t>> inflight;  // url -> rows being posted
    std::vector<std::unique_ptr<WaHttpClient>> clients;
    std::unique_ptr<WaHttpPool> pool;
    std::mt19937_64 rng{std::random_device{}()};
    bool running = false;
    std::map<std::string, Override> overrides;  // org -> its own URL (POST /api/webhooks)
    std::map<std::string, Target> dynamic;      // targets of the overrides, by URL (never erased: pointers stay)
    uint64_t delivered = 0, failed = 0, dead = 0;
};
Engine E;

void deliver(const Target& t, const wa::store::WebhookEvent& e);

wa_zone_ctx_t* zone() { return wa_zone(const_cast<ngx_cycle_t*>(ngx_cycle)); }


int64_t now_ms() {
    ngx_time_t* tp = ngx_timeofday();
    return static_cast<int64_t>(tp->sec) * 1000 + static_cast<int64_t>(tp->msec);
}

void reap() {
    // Finished clients are freed here, never inside their own callback.
    for (auto it = E.clients.begin(); it != E.clients.end();) {
        if ((*it)->finished()) it = E.clients.erase(it);
        else ++it;
    }
}

void poll(ngx_event_t*) {
    wa_webhooks_kick();
    if (E.running && !E.timer.timer_set) ngx_add_timer(&E.timer, 100);
}

void on_done(const Target& t, const wa::store::WebhookEvent& e, int status, const std::string& error) {
    auto& rows = E.inflight[t.url];
    rows.erase(std::remove(rows.begin(), rows.end(), e.n), rows.end());
    if (!E.running || !E.store) return;
    E.begin_write();
    std::string err;
    if (status >= 200 && status < 300) {
        E.delivered++;
        wa_metrics_webhook(zone(), e.org, 1, 0, 0);
        if (!E.store->webhook_delivered(e.n, &err))
            ngx_log_error(NGX_LOG_ERR, E.log, 0, "whatsapp org=%s: webhook %s: %s", e.org.c_str(), e.id.c_str(), err.c_str());
        return;
    }
    E.failed++;
    wa_metrics_webhook(zone(), e.org, 0, 1, 0);
    std::string why = status ? "HTTP " + std::to_string(status) : error;
    uint32_t attempts = e.attempts + 1;
    // The backoff and the retry window start again at a replay (window_*); the attempt count goes on.
    uint32_t in_window = attempts > e.window_attempts ? attempts - e.window_attempts : 1;
    int64_t window_start = e.window_start_ms ? e.window_start_ms : e.created_at_ms;
    double r = std::uniform_real_distribution<double>(0.0, 1.0)(E.rng);
    uint64_t wait = wa::webhook::backoff_ms(in_window, E.conf->backoff_min, E.conf->backoff_max, r);
    int64_t next = now_ms() + static_cast<int64_t>(wait);
    if (next - window_start > static_cast<int64_t>(E.conf->retry_for)) {
        E.dead++;
        wa_metrics_webhook(zone(), e.org, 0, 0, 1);
        ngx_log_error(NGX_LOG_WARN, E.log, 0,
                      "whatsapp org=%s: webhook event %s (%s, seq %uL) to %s is dead after %uD attempts "
                      "(%uD replays): %s",
                      e.org.c_str(), e.id.c_str(), e.type.c_str(), e.seq, t.url.c_str(), attempts, e.replays, why.c_str());
        E.store->webhook_dead(e.n, why, &err);
        return;
    }
    ngx_uint_t level = attempts == 1 ? NGX_LOG_WARN : NGX_LOG_INFO;
    ngx_log_error(level, E.log, 0,
                  "whatsapp org=%s: webhook event %s (%s) to %s failed: %s; attempt %uD, next in %uL ms", e.org.c_str(),
                  e.id.c_str(), e.type.c_str(), t.url.c_str(), why.c_str(), attempts, wait);
    E.store->webhook_retry(e.n, next, why, &err);
}

void deliver(const Target& t, const wa::store::WebhookEvent& e) {
    std::string body = wa::webhook::envelope(e);
    std::vector<std::pair<std::string, std::string>> headers;
    if (!t.secret.empty()) headers.emplace_back("X-WhatsApp-Signature", wa::webhook::signature(t.secret, ngx_time(), body));
    headers.emplace_back("X-WhatsApp-Event", e.type);
    headers.emplace_back("X-WhatsApp-Event-Id", e.id);
    WaHttpClient::Request req;
    req.url = t.u;
    req.ssl = t.ssl;
    req.resolver = E.m->resolver;
    req.resolver_timeout = E.m->resolver_timeout;
    req.connect_timeout = E.m->connect_timeout < E.conf->timeout ? E.m->connect_timeout : E.conf->timeout;
    req.timeout = E.conf->timeout;
    bool keep = E.pool && E.conf->keepalive > 0;
    req.bytes = wa::http::format_request("POST", t.u, headers, "application/json", body, keep);
    if (keep) req.pool = E.pool.get();
    E.inflight[t.url].push_back(e.n);
    const Target* tp = &t;
    auto c = std::make_unique<WaHttpClient>(E.log, [tp, e](int status, const std::string& error) {
        on_done(*tp, e, status, error);
    });
    WaHttpClient* raw = c.get();
    E.clients.push_back(std::move(c));
    raw->start(std::move(req));  // may finish (and call on_done) at once
}

}  // namespace

// ---- directives ----

static Conf* conf_for(ngx_conf_t* cf, void* conf) {
    (void)cf;
    return conf_of(static_cast<wa_main_conf_t*>(conf), true);
}

// Reads secret_file=path (relative to the prefix) into `out`; NGX_CONF_OK or an error already logged.
static char* secret_file_arg(ngx_conf_t* cf, const std::string& a, const char* directive, std::string& out) {
    std::string p = a.substr(12);
    ngx_str_t path;
    path.data = reinterpret_cast<u_char*>(ngx_pnalloc(cf->pool, p.size() + 1));
    if (!path.data) return (char*)NGX_CONF_ERROR;
    ngx_memcpy(path.data, p.data(), p.size());
    path.len = p.size();
    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) return (char*)NGX_CONF_ERROR;
    std::string err;
    if (!read_secret(wa_str(path), out, err)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s secret_file \"%V\": %s", directive, &path, err.c_str());
        return (char*)NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

char* wa_webhook_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    Conf* c = conf_for(cf, conf);
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    Target t;
    t.url = wa_str(args[1]);
    std::string err;
    if (!wa::http::parse_url(t.url, t.u, &err)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_webhook \"%V\": %s", &args[1], err.c_str());
        return (char*)NGX_CONF_ERROR;
    }
    for (ngx_uint_t i = 2; i < cf->args->nelts; i++) {
        std::string a = wa_str(args[i]);
        if (a.rfind("secret_file=", 0) == 0) {
            char* rv = secret_file_arg(cf, a, "whatsapp_webhook", t.secret);
            if (rv != NGX_CONF_OK) return rv;
        } else if (a.rfind("events=", 0) == 0) {
            t.events = a.substr(7);
            std::string bad;
            if (!wa::webhook::valid_events(t.events, &bad)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "whatsapp_webhook: unknown event type \"%s\" (message.received, message.status, "
                                   "session.status, account.restricted, session.qr)", bad.c_str());
                return (char*)NGX_CONF_ERROR;
            }
        } else if (a.rfind("ca=", 0) == 0) {
            t.ca = a.substr(3);
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_webhook: unknown parameter \"%V\"", &args[i]);
            return (char*)NGX_CONF_ERROR;
        }
    }
    for (const Target& o : c->targets)
        if (o.url == t.url) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "whatsapp_webhook \"%V\" is given twice", &args[1]);
            return (char*)NGX_CONF_ERROR;
        }
    c->targets.push_back(std::move(t));
    return NGX_CONF_OK;
}

// whatsapp_webhook_override_secret secret_file=path: the secret that signs the URLs organizations set with
// POST /api/webhooks (unless the URL lies under a configured whatsapp_webhook: then that one's secret).
char* wa_webhook_override_secret_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    std::string a = wa_str(args[1]);
    if (a.rfind("secret_file=", 0) != 0) return (char*)"takes secret_file=path";
    Conf* c = conf_for(cf, conf);
    if (!c->override_secret.empty()) return (char*)"is duplicate";
    return secret_file_arg(cf, a, "whatsapp_webhook_override_secret", c->override_secret);
}

char* wa_webhook_retry_for_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_msec_t v = ngx_parse_time(&args[1], 0);
    if (v == (ngx_msec_t)NGX_ERROR) return (char*)"invalid value";
    conf_for(cf, conf)->retry_for = v;
    return NGX_CONF_OK;
}

char* wa_webhook_timeout_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_msec_t v = ngx_parse_time(&args[1], 0);
    if (v == (ngx_msec_t)NGX_ERROR || v == 0) return (char*)"invalid value";
    conf_for(cf, conf)->timeout = v;
    return NGX_CONF_OK;
}

char* wa_webhook_concurrency_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_int_t v = ngx_atoi(args[1].data, args[1].len);
    if (v < 1 || v > 1000) return (char*)"must be between 1 and 1000";
    conf_for(cf, conf)->concurrency = static_cast<ngx_uint_t>(v);
    return NGX_CONF_OK;
}

// whatsapp_webhook_keepalive <idle connections per URL> [<idle timeout>]; 0 = a new connection per request.
char* wa_webhook_keepalive_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_int_t v = ngx_atoi(args[1].data, args[1].len);
    if (v < 0 || v > 1000) return (char*)"must be between 0 and 1000";
    Conf* c = conf_for(cf, conf);
    c->keepalive = static_cast<ngx_uint_t>(v);
    if (cf->args->nelts > 2) {
        ngx_msec_t t = ngx_parse_time(&args[2], 0);
        if (t == (ngx_msec_t)NGX_ERROR || t == 0) return (char*)"invalid idle timeout";
        c->keepalive_timeout = t;
    }
    return NGX_CONF_OK;
}

char* wa_webhook_backoff_directive(ngx_conf_t* cf, ngx_command_t*, void* conf) {
    auto* args = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_msec_t a = ngx_parse_time(&args[1], 0), b = ngx_parse_time(&args[2], 0);
    if (a == (ngx_msec_t)NGX_ERROR || b == (ngx_msec_t)NGX_ERROR || a == 0 || b < a) return (char*)"invalid values";
    Conf* c = conf_for(cf, conf);
    c->backoff_min = a;
    c->backoff_max = b;
    return NGX_CONF_OK;
}

bool wa_webhooks_init_conf(ngx_conf_t* cf, wa_main_conf_t* m) {
    Conf* c = conf_of(m, false);
    if (!c) return true;
    Target def;
    def.u.tls = true;
    std::vector<Target*> all{&def};
    for (Target& t : c->targets) all.push_back(&t);
    for (Target* tp : all) {
        Target& t = *tp;
        if (!t.u.tls) continue;
        t.ssl = static_cast<ngx_ssl_t*>(ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t)));
        if (t.ssl == NULL) return false;
        t.ssl->log = cf->log;
        if (ngx_ssl_create(t.ssl, NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3, NULL) != NGX_OK) return false;
        ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) return false;
        cln->handler = ngx_ssl_cleanup_ctx;
        cln->data = t.ssl;
        ngx_str_t ca;
        std::string path = t.ca.empty() ? wa_str(m->trusted_certificate) : t.ca;
        ca.data = reinterpret_cast<u_char*>(ngx_pnalloc(cf->pool, path.size() + 1));
        if (!ca.data) return false;
        ngx_memcpy(ca.data, path.data(), path.size());
        ca.data[path.size()] = '\0';  // OpenSSL takes it as a C string
        ca.len = path.size();
        if (ngx_conf_full_name(cf->cycle, &ca, 1) != NGX_OK) return false;
        if (ngx_ssl_trusted_certificate(cf, t.ssl, &ca, 4) != NGX_OK) return false;
    }
    c->default_ssl = def.ssl;
    return true;
}

// ---- helper side ----

// The secret for an organization's own URL: that of the configured whatsapp_webhook it lies under (same scheme,
// host and port, and the configured path is a prefix of its path: the same application), else
// whatsapp_webhook_override_secret, else the first whatsapp_webhook's (the behaviour before the directive).
static std::string override_secret(const Conf& c, const wa::http::Url& u) {
    const Target* best = nullptr;
    for (const Target& t : c.targets) {
        if (t.u.tls != u.tls || t.u.host != u.host || t.u.port != u.port) continue;
        std::string base = t.u.target.substr(0, t.u.target.find('?'));
        if (u.target.compare(0, base.size(), base) != 0) continue;
        if (!best || base.size() > best->u.target.substr(0, best->u.target.find('?')).size()) best = &t;
    }
    if (best) return best->secret;
    if (!c.override_secret.empty()) return c.override_secret;
    return c.targets.empty() ? std::string() : c.targets[0].secret;
}

wa::webhook::Router wa_webhooks_router(wa_main_conf_t* m) {
    Conf* c = conf_of(m, false);
    if (!c || c->targets.empty()) return {};
    return [c](const std::string& org, std::string_view type) {
        std::vector<std::string> out;
        auto ov = E.overrides.find(org);
        if (ov != E.overrides.end()) {
            if (wa::webhook::events_match(ov->second.events, type)) out.push_back(ov->second.url);
            return out;
        }
        for (const Target& t : c->targets)
            if (wa::webhook::events_match(t.events, type)) out.push_back(t.url);
        return out;
    };
}

// The URLs events may go to now: every whatsapp_webhook and the organizations' own (POST /api/webhooks).
static std::vector<std::string> known_targets() {
    std::vector<std::string> keep;
    if (E.conf)
        for (const Target& t : E.conf->targets) keep.push_back(t.url);
    for (const auto& [url, t] : E.dynamic) keep.push_back(url);
    return keep;
}

// Pending rows for a URL that left the config (a reload, a restart with another nginx.conf) or an override
// that was removed: parked as dead, replayable once the URL is configured again, instead of pending forever.
static void park_unknown(wa::store::Store* store, ngx_log_t* log, const std::vector<std::string>& keep) {
    std::vector<wa::store::ParkedWebhooks> parked;
    std::string err;
    if (!store->park_webhooks(keep, "the URL is no longer configured (neither a whatsapp_webhook nor the "
                                    "organization's POST /api/webhooks URL when the helper started)", parked, &err)) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "whatsapp: webhooks: %s", err.c_str());
        return;
    }
    for (const auto& p : parked) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "whatsapp org=%s: %uL pending webhook events for %s, which is no longer configured, parked as "
                      "dead (POST /api/webhooks/replay sends them once the URL is configured again)",
                      p.org.c_str(), p.n, p.target.c_str());
        wa_metrics_webhook(zone(), p.org, 0, 0, p.n);
    }
}

void wa_webhooks_start(wa_main_conf_t* m, wa::store::Store* store, ngx_log_t* log, std::function<void()> begin_write) {
    Conf* c = conf_of(m, false);
    if (!store) return;
    if (!c || c->targets.empty()) {
        E.conf = nullptr;
        E.dynamic.clear();
        E.overrides.clear();
        park_unknown(store, log, {});  // no webhook at all: nothing can deliver what is pending
        return;
    }
    E.m = m;
    E.conf = c;
    E.store = store;
    E.log = log;
    E.begin_write = std::move(begin_write);
    E.running = true;
    E.pool = std::make_unique<WaHttpPool>(c->keepalive, c->keepalive_timeout);
    std::vector<std::array<std::string, 3>> rows;
    std::string err;
    if (store->load_webhook_targets(rows, &err)) {
        for (auto& r : rows) wa_webhooks_set(nullptr, r[0], r[1], r[2]);
        park_unknown(store, log, known_targets());
    } else {
        ngx_log_error(NGX_LOG_ERR, log, 0, "whatsapp: webhooks: %s", err.c_str());
    }
    ngx_memzero(&E.timer, sizeof(E.timer));
    E.timer.handler = poll;
    E.timer.log = log;
    E.timer.data = &E;
    E.timer.cancelable = 1;
    ngx_add_timer(&E.timer, 0);
}

void wa_webhooks_kick() {
    if (!E.running) return;
    try {
        reap();
        int64_t now = now_ms();
        std::vector<const Target*> all;
        for (const Target& t : E.conf->targets) all.push_back(&t);
        for (const auto& [url, t] : E.dynamic) all.push_back(&t);
        for (const Target* tp : all) {
            const Target& t = *tp;
            auto& rows = E.inflight[t.url];
            if (rows.size() >= E.conf->concurrency) continue;
            std::vector<wa::store::WebhookEvent> due;
            std::string err;
            if (!E.store->due_webhooks(t.url, now, E.conf->concurrency - rows.size(), rows, due, &err)) {
                ngx_log_error(NGX_LOG_ERR, E.log, 0, "whatsapp: webhooks: %s", err.c_str());
                continue;
            }
            for (const auto& e : due) deliver(t, e);
        }
    } catch (const std::exception& x) {
        ngx_log_error(NGX_LOG_ALERT, E.log, 0, "whatsapp: webhook delivery failed: %s", x.what());
    }
}

void wa_webhooks_stop() {
    if (!E.running) return;
    E.running = false;
    if (E.timer.timer_set) ngx_del_timer(&E.timer);
    E.clients.clear();  // closes what is in flight; those rows stay pending and go again after a restart
    E.pool.reset();     // and the idle kept-alive connections
    E.inflight.clear();
    E.store = nullptr;
}

// ---- API ----

wa::api::Response wa_webhooks_dead(wa::store::Store* store, const std::string& org, const std::string& cursor,
                                   uint32_t limit) {
    if (!store) return wa::api::error(503, "helper_unavailable", "the store is not open");
    std::vector<wa::store::WebhookEvent> rows;
    std::string err;
    int64_t after = cursor.empty() ? 0 : std::stoll(cursor);
    if (!store->list_dead_webhooks(org, after, limit + 1, rows, &err)) {
        ngx_log_error(NGX_LOG_ERR, E.log ? E.log : ngx_cycle->log, 0, "whatsapp org=%s: %s", org.c_str(), err.c_str());
        return wa::api::error(507, "storage_error", "dead webhook events could not be read");
    }
    std::string next;
    if (rows.size() > limit) {
        rows.resize(limit);
        next = std::to_string(rows.back().n);
    }
    std::string body = "{\"success\":true,\"items\":[";
    for (size_t i = 0; i < rows.size(); i++) {
        const auto& e = rows[i];
        if (i) body += ",";
        std::string ev = wa::webhook::envelope(e);
        // target and last_error are ours (a URL from the config, an error text without secrets)
        body += "{\"event\":" + ev + ",\"target\":\"" + wa::webhook::json_escape(e.target) + "\",\"attempts\":" +
                std::to_string(e.attempts) + ",\"replays\":" + std::to_string(e.replays) + ",\"last_error\":\"" +
                wa::webhook::json_escape(e.last_error) + "\"}";
    }
    body += "],\"next_cursor\":" + (next.empty() ? std::string("null") : "\"" + next + "\"") + "}";
    return wa::api::Response{200, body, {}, {}};
}

wa::api::Response wa_webhooks_replay(wa::store::Store* store, const std::string& org, const std::string& id) {
    if (!store) return wa::api::error(503, "helper_unavailable", "the store is not open");
    uint64_t n = 0, skipped = 0;
    std::string err;
    std::vector<std::string> ids;
    if (!id.empty()) ids.push_back(id);
    // Only to URLs that are configured now: a row for a URL that left the config stays dead (it would
    // otherwise sit pending with nobody to deliver it).
    if (!store->replay_webhooks_to(org, ids, now_ms(), known_targets(), n, skipped, &err)) {
        ngx_log_error(NGX_LOG_ERR, E.log ? E.log : ngx_cycle->log, 0, "whatsapp org=%s: %s", org.c_str(), err.c_str());
        return wa::api::error(507, "storage_error", "dead webhook events could not be replayed");
    }
    if (n || skipped)
        ngx_log_error(NGX_LOG_NOTICE, E.log ? E.log : ngx_cycle->log, 0,
                      "whatsapp org=%s: %uL dead webhook events replayed (a fresh retry window), %uL left dead: their "
                      "URL is not configured", org.c_str(), n, skipped);
    return wa::api::Response{200, "{\"success\":true,\"replayed\":" + std::to_string(n) + ",\"skipped\":" +
                             std::to_string(skipped) + "}", {}, {}};
}

wa::api::Response wa_webhooks_set(wa::store::Store* store, const std::string& org, const std::string& url,
                                  const std::string& events) {
    if (!E.conf) return wa::api::error(409, "webhooks_off", "no whatsapp_webhook is configured");
    if (store) {
        std::string err;
        bool ok = url.empty() ? store->delete_webhook_target(org, &err) : store->put_webhook_target(org, url, events, &err);
        if (!ok) {
            ngx_log_error(NGX_LOG_ERR, E.log, 0, "whatsapp org=%s: %s", org.c_str(), err.c_str());
            return wa::api::error(507, "storage_error", "the webhook could not be stored");
        }
    }
    if (url.empty()) {
        E.overrides.erase(org);
    } else {
        E.overrides[org] = Override{url, events};
        if (!E.dynamic.count(url)) {
            bool configured = false;
            for (const Target& t : E.conf->targets) configured = configured || t.url == url;
            if (!configured) {
                Target t;
                t.url = url;
                wa::http::parse_url(url, t.u, nullptr);
                t.secret = override_secret(*E.conf, t.u);
                t.ssl = E.conf->default_ssl;
                E.dynamic.emplace(url, std::move(t));
            }
        }
    }
    if (store)
        ngx_log_error(NGX_LOG_NOTICE, E.log, 0, "whatsapp org=%s: webhook %s", org.c_str(),
                      url.empty() ? "override removed" : ("set to " + url).c_str());
    return wa::api::Response{200, "{\"success\":true,\"url\":" + (url.empty() ? std::string("null") : "\"" +
                             wa::webhook::json_escape(url) + "\"") + "}", {}, {}};
}
