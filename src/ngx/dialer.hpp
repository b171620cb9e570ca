// The first step of every outbound connection of the helper (the WhatsApp link, WaTransport; webhooks and media,
// WaHttpClient): resolve the host with nginx's resolver, then TCP-connect to each address in turn until one
// answers. Nothing blocks; the owner hears once, through Owner::on_dialed, and takes the socket from there.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "wa_module.hpp"

class WaDialer {
public:
    using Address = std::pair<struct sockaddr_storage, socklen_t>;

    struct Target {
        std::string host;              // resolved unless it is an IP literal, "localhost", or `addrs` is given
        std::string peer;              // how errors name the peer ("host:port")
        in_port_t port = 0;            // set on every address
        std::vector<Address> addrs;    // known addresses (a server URL nginx resolved at configuration time)
        ngx_resolver_t* resolver = nullptr;
        ngx_msec_t resolver_timeout = 5000;
        ngx_msec_t connect_timeout = 5000;  // per address
        size_t pool_size = 1024;            // the connection's pool
    };

    struct Owner {
        // c: connected (TCP_NODELAY, its own pool, the dialer's log); the owner sets c->data and its handlers.
        // nullptr: `why` says what failed (timed_out: the last address's connect timed out). The dialer is idle
        // when this is called and is not touched after it: the owner may delete it from inside.
        virtual void on_dialed(ngx_connection_t* c, const std::string& why, bool timed_out) = 0;
        virtual ~Owner() = default;
    };

    WaDialer(ngx_log_t* log, Owner* owner) : log_(log), owner_(owner) {}
    ~WaDialer() { cancel(); }
    WaDialer(const WaDialer&) = delete;
    WaDialer& operator=(const WaDialer&) = delete;

    void dial(Target target);
    // Stops a resolution or a connect in progress; no callback follows.
    void cancel();

private:
    static void resolve_handler(ngx_resolver_ctx_t* ctx);
    static void connect_handler(ngx_event_t* ev);
    void resolve();
    void add_address(const struct sockaddr* sa, socklen_t len);
    bool add_literal();
    void connect_next(const std::string& why, bool timed_out);
    void connect_to(const Address& a);
    void connected();
    void done(ngx_connection_t* c, const std::string& why, bool timed_out);

    ngx_log_t* log_;
    Owner* owner_;
    Target target_;
    ngx_str_t name_{0, nullptr};  // target_.host, for the resolver and ngx_event_connect_peer
    ngx_resolver_ctx_t* resolve_ = nullptr;
    ngx_peer_connection_t pc_{};
    ngx_connection_t* c_ = nullptr;  // connecting
    struct sockaddr_storage addr_{};
    size_t next_addr_ = 0;
};
