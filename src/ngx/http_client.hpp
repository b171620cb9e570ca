// One outbound HTTP/1.1 request on the helper's nginx event loop (webhooks; media uploads later):
// resolve → TCP connect (every resolved address in turn) → TLS (chain verified against a CA file, host name
// checked, SNI) → request → status and headers (wa::http::ResponseParser; the body is read and dropped up to
// a cap). Timeouts: connect (per address) and the whole request. No threads, nothing blocks.
//
// Resolving and connecting are WaDialer's, as for WaTransport; TLS is tls.hpp's. One request per connection
// (Connection: close), unless the
// request names a WaHttpPool: then a kept-alive connection to the same origin is reused, and a clean response
// that allows it hands the connection back to the pool (HTTP/1.1 persistent connections).
#pragma once
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dialer.hpp"
#include "wa/webhook/http.hpp"
#include "wa_module.hpp"

// Idle kept-alive connections by origin (scheme, host, port, TLS context): at most `max_idle` per origin, each
// closed after `idle_timeout` or as soon as the peer sends anything or closes. Requests that name the pool
// must be formatted with keep_alive = true. The owner closes everything with close_all() (or the destructor).
class WaHttpPool {
public:
    WaHttpPool(size_t max_idle, ngx_msec_t idle_timeout) : max_idle_(max_idle), idle_timeout_(idle_timeout) {}
    ~WaHttpPool() { close_all(); }
    WaHttpPool(const WaHttpPool&) = delete;
    WaHttpPool& operator=(const WaHttpPool&) = delete;
    void configure(size_t max_idle, ngx_msec_t idle_timeout) { max_idle_ = max_idle; idle_timeout_ = idle_timeout; }
    // An idle connection to `key` (most recently used first), nullptr when none; the caller owns it then.
    ngx_connection_t* take(const std::string& key);
    // Keeps `c` idle under `key`, or closes it (pool full, off, or the socket cannot be watched).
    void put(const std::string& key, ngx_connection_t* c);
    void close_all();
    size_t idle() const;
    uint64_t reused() const { return reused_; }
    static void close_connection(ngx_connection_t* c);

private:
    struct Idle {
        WaHttpPool* pool;
        std::string key;
        ngx_connection_t* c;
    };
    static void idle_handler(ngx_event_t* ev);
    void drop(Idle* i);
    size_t max_idle_;
    ngx_msec_t idle_timeout_;
    uint64_t reused_ = 0;
    std::map<std::string, std::deque<Idle*>> idle_;
};

class WaHttpClient : private WaDialer::Owner {
public:
    struct Request {
        wa::http::Url url;
        ngx_ssl_t* ssl = nullptr;            // required for https: a context with the trusted CAs loaded
        ngx_resolver_t* resolver = nullptr;  // for host names; IP literals and "localhost" need none
        ngx_msec_t resolver_timeout = 5000;
        ngx_msec_t connect_timeout = 5000;
        ngx_msec_t timeout = 10000;          // the whole request, from start() to the end of the response
        std::string bytes;                   // the formatted request (wa::http::format_request)
        size_t max_body = 65536;
        size_t keep_body = 512;              // bytes of the response body kept (response().body_head())
        // A request body streamed after `bytes` (media uploads): appends the next chunk to `out`, sets `eof` after
        // the last; false on an error (`error` says why). Called only when the socket took everything before.
        std::function<bool(std::string& out, bool& eof, std::string& error)> body_source;
        std::function<void(std::string_view)> body_sink;  // the response body of a 2xx, as it arrives
        WaHttpPool* pool = nullptr;          // keep-alive: reuse an idle connection, give it back when clean
    };
    // status 0 = no response (error says why). Called once; the client is closed then, and must not be
    // deleted from inside the callback (the owner frees it later, e.g. in a posted event).
    using Done = std::function<void(int status, const std::string& error)>;

    WaHttpClient(ngx_log_t* log, Done done);
    ~WaHttpClient() override;
    WaHttpClient(const WaHttpClient&) = delete;
    WaHttpClient& operator=(const WaHttpClient&) = delete;

    void start(Request req);
    bool finished() const { return phase_ == Phase::Done; }
    const wa::http::ResponseParser& response() const { return parser_; }
    bool reused_connection() const { return reused_; }

private:
    enum class Phase { Idle, Dialing, Tls, Sending, Reading, Done };
    static void event_handler(ngx_event_t* ev);
    static void total_timeout_handler(ngx_event_t* ev);
    static void ssl_handshake_handler(ngx_connection_t* c);
    void open();
    void reconnect();
    std::string pool_key() const;
    void on_dialed(ngx_connection_t* c, const std::string& why, bool timed_out) override;
    void on_connected();
    void on_tls_done();
    void on_write();
    void on_read();
    void finish(int status, const std::string& error);
    void teardown();
    std::string peer() const;

    ngx_log_t* log_;
    Done done_;
    Request req_;
    Phase phase_ = Phase::Idle;
    WaDialer dialer_;
    ngx_connection_t* c_ = nullptr;
    ngx_event_t total_;
    std::string out_;
    bool body_eof_ = false;
    bool write_failed_ = false;  // the request could not be sent whole; an early answer may still be readable
    wa::http::ResponseParser parser_;
    bool reused_ = false;     // this request went out on a pooled connection
    bool got_bytes_ = false;  // any response byte arrived (a stale pooled connection shows none)
    bool reusable_ = false;   // the response ended cleanly, allows keep-alive, nothing followed it
};
