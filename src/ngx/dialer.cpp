#include "dialer.hpp"

#include "tls.hpp"

void WaDialer::dial(Target target) {
    cancel();
    target_ = std::move(target);
    name_.data = reinterpret_cast<u_char*>(&target_.host[0]);
    name_.len = target_.host.size();
    next_addr_ = 0;
    for (Address& a : target_.addrs) ngx_inet_set_port(reinterpret_cast<struct sockaddr*>(&a.first), target_.port);
    if (target_.addrs.empty() && !add_literal()) return resolve();
    connect_next("", false);
}

void WaDialer::cancel() {
    if (resolve_) {
        ngx_resolve_name_done(resolve_);
        resolve_ = nullptr;
    }
    if (c_) {
        wa_outbound_close(c_, false);
        c_ = nullptr;
    }
}

void WaDialer::add_address(const struct sockaddr* sa, socklen_t len) {
    struct sockaddr_storage ss;
    ngx_memzero(&ss, sizeof(ss));
    ngx_memcpy(&ss, sa, len);
    ngx_inet_set_port(reinterpret_cast<struct sockaddr*>(&ss), target_.port);
    target_.addrs.emplace_back(ss, len);
}

// An IP literal, or "localhost" (IPv4 then IPv6, as /etc/hosts has it): no resolver needed.
bool WaDialer::add_literal() {
    const std::string& host = target_.host;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    ngx_memzero(&in4, sizeof(in4));
    ngx_memzero(&in6, sizeof(in6));
    in4.sin_family = AF_INET;
    in6.sin6_family = AF_INET6;
    bool local = host == "localhost";
    if (local || inet_pton(AF_INET, host.c_str(), &in4.sin_addr) == 1) {
        if (local) inet_pton(AF_INET, "127.0.0.1", &in4.sin_addr);
        add_address(reinterpret_cast<struct sockaddr*>(&in4), sizeof(in4));
    }
    if (local || inet_pton(AF_INET6, host.c_str(), &in6.sin6_addr) == 1) {
        if (local) inet_pton(AF_INET6, "::1", &in6.sin6_addr);
        add_address(reinterpret_cast<struct sockaddr*>(&in6), sizeof(in6));
    }
    return !target_.addrs.empty();
}

void WaDialer::resolve() {
    std::string cannot = "cannot resolve " + target_.host + ": ";
    if (target_.resolver == nullptr) return done(nullptr, cannot + "no resolver configured", false);
    ngx_resolver_ctx_t temp;
    ngx_memzero(&temp, sizeof(temp));
    temp.name = name_;
    ngx_resolver_ctx_t* ctx = ngx_resolve_start(target_.resolver, &temp);
    if (ctx == NULL || ctx == NGX_NO_RESOLVER) return done(nullptr, cannot + "no resolver available", false);
    ctx->name = name_;
    ctx->handler = resolve_handler;
    ctx->data = this;
    ctx->timeout = target_.resolver_timeout;
    ctx->cancelable = 1;
    resolve_ = ctx;
    // A cached answer calls resolve_handler from inside: `this` may be gone when this returns NGX_OK.
    if (ngx_resolve_name(ctx) != NGX_OK) {
        resolve_ = nullptr;  // ngx_resolve_name freed it
        done(nullptr, cannot + "resolver error", false);
    }
}

void WaDialer::resolve_handler(ngx_resolver_ctx_t* ctx) {
    auto* d = static_cast<WaDialer*>(ctx->data);
    d->resolve_ = nullptr;
    if (ctx->state || ctx->naddrs == 0) {
        std::string why = "cannot resolve " + d->target_.host + ": " +
                          (ctx->state ? ngx_resolver_strerror(ctx->state) : "no address");
        ngx_resolve_name_done(ctx);
        return d->done(nullptr, why, false);
    }
    // Every address, in the resolver's order (it rotates them between queries); a failed connect tries the next.
    for (ngx_uint_t i = 0; i < ctx->naddrs && i < 16; i++) d->add_address(ctx->addrs[i].sockaddr, ctx->addrs[i].socklen);
    ngx_resolve_name_done(ctx);
    d->connect_next("", false);
}

// `why` the previous address failed ("" before the first).
void WaDialer::connect_next(const std::string& why, bool timed_out) {
    if (next_addr_ >= target_.addrs.size())
        return done(nullptr, why.empty() ? "no address to connect to " + target_.peer : why, timed_out);
    if (!why.empty()) ngx_log_error(NGX_LOG_INFO, log_, 0, "whatsapp: %s; trying the next address", why.c_str());
    connect_to(target_.addrs[next_addr_++]);
}

// ngx_event_connect_peer() fails without setting errno when the helper has no free connection left.
static std::string connect_error(int err) {
    if (ngx_cycle->free_connection_n == 0)
        return "no free connection in the helper (all " + std::to_string(ngx_cycle->connection_n) +
               " worker_connections in use)";
    return err ? strerror(err) : "unknown error";
}

void WaDialer::connect_to(const Address& a) {
    ngx_memcpy(&addr_, &a.first, a.second);
    ngx_memzero(&pc_, sizeof(pc_));
    pc_.sockaddr = reinterpret_cast<struct sockaddr*>(&addr_);
    pc_.socklen = a.second;
    pc_.name = &name_;
    pc_.get = ngx_event_get_peer;
    pc_.log = log_;
    pc_.log_error = NGX_ERROR_INFO;  // the owner reports errors itself
    ngx_set_socket_errno(0);
    ngx_int_t rc = ngx_event_connect_peer(&pc_);
    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        int err = ngx_socket_errno;
        if (pc_.connection) ngx_close_connection(pc_.connection);
        return connect_next("connect() to " + target_.peer + " failed: " + connect_error(err), false);
    }
    c_ = pc_.connection;
    c_->data = this;
    // Small writes both ways (a WebSocket frame, an ack; a request's headers then its body): with Nagle's
    // algorithm a write made while the previous one is unacknowledged waits for the peer's delayed ACK, up to
    // 40 ms (Baileys' ws and Go's net, whatsmeow's, both turn it off).
    ngx_tcp_nodelay(c_);
    c_->pool = ngx_create_pool(target_.pool_size, log_);
    if (c_->pool == NULL) {
        cancel();
        return done(nullptr, "out of memory", false);
    }
    c_->log = log_;
    c_->read->log = log_;
    c_->write->log = log_;
    c_->read->handler = connect_handler;
    c_->write->handler = connect_handler;
    if (rc == NGX_AGAIN) {
        ngx_add_timer(c_->write, target_.connect_timeout);
        return;
    }
    connected();
}

// A refused connect can show up as a read event first (EPOLLERR wakes both directions).
void WaDialer::connect_handler(ngx_event_t* ev) {
    auto* c = static_cast<ngx_connection_t*>(ev->data);
    auto* d = static_cast<WaDialer*>(c->data);
    if (ev->timedout) {
        d->cancel();
        return d->connect_next("connect to " + d->target_.peer + " timed out", true);
    }
    if (c->write->timer_set) ngx_del_timer(c->write);
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) err = ngx_socket_errno;
    if (err) {
        d->cancel();
        return d->connect_next("connect() to " + d->target_.peer + " failed: " + strerror(err), false);
    }
    d->connected();
}

void WaDialer::connected() {
    ngx_connection_t* c = c_;
    c_ = nullptr;
    done(c, "", false);
}

void WaDialer::done(ngx_connection_t* c, const std::string& why, bool timed_out) {
    owner_->on_dialed(c, why, timed_out);  // may delete this
}
