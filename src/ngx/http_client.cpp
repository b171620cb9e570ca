#include "http_client.hpp"

#include <algorithm>

#include "tls.hpp"

WaHttpClient::WaHttpClient(ngx_log_t* log, Done done) : log_(log), done_(std::move(done)) {
    ngx_memzero(&pc_, sizeof(pc_));
    ngx_memzero(&total_, sizeof(total_));
    ngx_memzero(&addr_, sizeof(addr_));
    total_.handler = total_timeout_handler;
    total_.data = this;
    total_.log = log_;
    total_.cancelable = 1;
}

WaHttpClient::~WaHttpClient() {
    teardown();
    if (total_.timer_set) ngx_del_timer(&total_);
}

std::string WaHttpClient::peer() const { return req_.url.host_header; }

void WaHttpClient::start(Request req) {
    req_ = std::move(req);
    parser_ = wa::http::ResponseParser(16384, req_.max_body);
    parser_.keep_body(req_.keep_body);
    if (req_.body_sink) parser_.body_sink(req_.body_sink);
    body_eof_ = !req_.body_source;
    name_.data = reinterpret_cast<u_char*>(&req_.url.host[0]);
    name_.len = req_.url.host.size();
    ngx_add_timer(&total_, req_.timeout);
    if (req_.url.tls && req_.ssl == nullptr) return finish(0, "https without a TLS context");
    if (req_.pool) {
        if (ngx_connection_t* c = req_.pool->take(pool_key())) {
            c_ = c;
            c_->data = this;
            c_->log = log_;
            c_->read->log = log_;
            c_->write->log = log_;
            c_->read->handler = event_handler;
            c_->write->handler = event_handler;
            reused_ = true;
            return on_tls_done();
        }
    }
    open();
}

std::string WaHttpClient::pool_key() const {
    char p[32];
    snprintf(p, sizeof p, "|%p", static_cast<void*>(req_.ssl));
    return std::string(req_.url.tls ? "https://" : "http://") + req_.url.host + ":" + std::to_string(req_.url.port) + p;
}

void WaHttpClient::open() {
    const std::string& host = req_.url.host;
    auto add = [this](const struct sockaddr* sa, socklen_t len) {
        struct sockaddr_storage ss;
        ngx_memzero(&ss, sizeof(ss));
        ngx_memcpy(&ss, sa, len);
        ngx_inet_set_port(reinterpret_cast<struct sockaddr*>(&ss), req_.url.port);
        addrs_.emplace_back(ss, len);
    };
    if (wa_ip_literal(host) || host == "localhost") {
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        ngx_memzero(&in4, sizeof(in4));
        ngx_memzero(&in6, sizeof(in6));
        in4.sin_family = AF_INET;
        in6.sin6_family = AF_INET6;
        if (host == "localhost") {
            inet_pton(AF_INET, "127.0.0.1", &in4.sin_addr);
            add(reinterpret_cast<struct sockaddr*>(&in4), sizeof(in4));
            inet_pton(AF_INET6, "::1", &in6.sin6_addr);
            add(reinterpret_cast<struct sockaddr*>(&in6), sizeof(in6));
        } else if (inet_pton(AF_INET, host.c_str(), &in4.sin_addr) == 1) {
            add(reinterpret_cast<struct sockaddr*>(&in4), sizeof(in4));
        } else {
            inet_pton(AF_INET6, host.c_str(), &in6.sin6_addr);
            add(reinterpret_cast<struct sockaddr*>(&in6), sizeof(in6));
        }
        return connect_next("");
    }
    if (req_.resolver == nullptr) return finish(0, "cannot resolve " + host + ": no resolver configured");
    ngx_resolver_ctx_t temp;
    ngx_memzero(&temp, sizeof(temp));
    temp.name = name_;
    ngx_resolver_ctx_t* ctx = ngx_resolve_start(req_.resolver, &temp);
    if (ctx == NULL || ctx == NGX_NO_RESOLVER) return finish(0, "cannot resolve " + host + ": no resolver available");
    ctx->name = name_;
    ctx->handler = resolve_handler;
    ctx->data = this;
    ctx->timeout = req_.resolver_timeout;
    ctx->cancelable = 1;
    resolve_ = ctx;
    phase_ = Phase::Resolving;
    if (ngx_resolve_name(ctx) != NGX_OK) {
        resolve_ = nullptr;
        finish(0, "cannot resolve " + host + ": resolver error");
    }
}

void WaHttpClient::resolve_handler(ngx_resolver_ctx_t* ctx) {
    auto* h = static_cast<WaHttpClient*>(ctx->data);
    h->resolve_ = nullptr;
    if (ctx->state || ctx->naddrs == 0) {
        std::string why = "cannot resolve " + h->req_.url.host + ": " +
                          (ctx->state ? ngx_resolver_strerror(ctx->state) : "no address");
        ngx_resolve_name_done(ctx);
        return h->finish(0, why);
    }
    for (ngx_uint_t i = 0; i < ctx->naddrs && i < 16; i++) {
        struct sockaddr_storage ss;
        ngx_memzero(&ss, sizeof(ss));
        ngx_memcpy(&ss, ctx->addrs[i].sockaddr, ctx->addrs[i].socklen);
        ngx_inet_set_port(reinterpret_cast<struct sockaddr*>(&ss), h->req_.url.port);
        h->addrs_.emplace_back(ss, ctx->addrs[i].socklen);
    }
    ngx_resolve_name_done(ctx);
    h->connect_next("");
}

void WaHttpClient::connect_next(const std::string& why) {
    teardown();
    if (next_addr_ >= addrs_.size()) return finish(0, why.empty() ? "no address to connect to" : why);
    auto& a = addrs_[next_addr_++];
    connect_to(reinterpret_cast<struct sockaddr*>(&a.first), a.second);
}

void WaHttpClient::connect_to(const struct sockaddr* sa, socklen_t len) {
    ngx_memcpy(&addr_, sa, len);
    ngx_memzero(&pc_, sizeof(pc_));
    pc_.sockaddr = reinterpret_cast<struct sockaddr*>(&addr_);
    pc_.socklen = len;
    pc_.name = &name_;
    pc_.get = ngx_event_get_peer;
    pc_.log = log_;
    pc_.log_error = NGX_ERROR_INFO;
    phase_ = Phase::Connecting;
    ngx_set_socket_errno(0);
    ngx_int_t rc = ngx_event_connect_peer(&pc_);
    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        int err = ngx_socket_errno;
        if (pc_.connection) {
            ngx_close_connection(pc_.connection);
            pc_.connection = nullptr;
        }
        return connect_next("connect() to " + peer() + " failed: " +
                            (ngx_cycle->free_connection_n == 0 ? "no free connection in the helper"
                                                               : err ? strerror(err) : "unknown error"));
    }
    c_ = pc_.connection;
    c_->data = this;
    // A request is written in pieces (headers, body): none may wait for a delayed ACK.
    ngx_tcp_nodelay(c_);
    c_->pool = ngx_create_pool(1024, log_);
    if (c_->pool == NULL) return finish(0, "out of memory");
    c_->log = log_;
    c_->read->log = log_;
    c_->write->log = log_;
    c_->read->handler = event_handler;
    c_->write->handler = event_handler;
    if (rc == NGX_AGAIN) {
        ngx_add_timer(c_->write, req_.connect_timeout);
        return;
    }
    on_connected();
}

void WaHttpClient::event_handler(ngx_event_t* ev) {
    auto* c = static_cast<ngx_connection_t*>(ev->data);
    auto* h = static_cast<WaHttpClient*>(c->data);
    if (ev->timedout) {
        if (h->phase_ == Phase::Connecting) return h->connect_next("connect to " + h->peer() + " timed out");
        return h->finish(0, "request to " + h->peer() + " timed out");
    }
    if (h->phase_ == Phase::Connecting) {
        if (c->write->timer_set) ngx_del_timer(c->write);
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) err = ngx_socket_errno;
        if (err) return h->connect_next("connect() to " + h->peer() + " failed: " + strerror(err));
        return h->on_connected();
    }
    if (ev->write) return h->on_write();
    h->on_read();
}

void WaHttpClient::on_connected() {
    if (!req_.url.tls) return on_tls_done();
    phase_ = Phase::Tls;
    std::string err;
    WaTlsResult r = wa_tls_start(c_, req_.ssl, req_.url.host, req_.connect_timeout, ssl_handshake_handler, err);
    if (r == WaTlsResult::Failed) return finish(0, err);
    if (r == WaTlsResult::Ok) ssl_handshake_handler(c_);
}

void WaHttpClient::ssl_handshake_handler(ngx_connection_t* c) {
    auto* h = static_cast<WaHttpClient*>(c->data);
    std::string err;
    WaTlsFailure f = wa_tls_check(c, h->req_.url.host, h->peer(), err);
    if (f != WaTlsFailure::None) return h->finish(0, err);
    c->read->handler = event_handler;
    c->write->handler = event_handler;
    h->on_tls_done();
}

void WaHttpClient::on_tls_done() {
    phase_ = Phase::Sending;
    out_ = req_.bytes;
    on_write();
}

void WaHttpClient::on_write() {
    if (phase_ != Phase::Sending) return;
    size_t streamed = 0;
    for (;;) {
        if (out_.empty()) {
            if (body_eof_) break;
            // A streamed body yields the event loop after each MiB (a fast peer would otherwise take it all in one
            // turn, and the helper serves every other organization from the same loop).
            if (streamed >= 1024 * 1024) {
                ngx_post_event(c_->write, &ngx_posted_next_events);
                return;
            }
            // The next chunk of a streamed body: at most one chunk is held at a time.
            std::string why;
            if (!req_.body_source(out_, body_eof_, why)) return finish(0, why);
            streamed += out_.size();
            if (out_.empty()) continue;
        }
        ssize_t n = c_->send(c_, reinterpret_cast<u_char*>(&out_[0]), out_.size());
        if (n > 0) {
            out_.erase(0, static_cast<size_t>(n));
            continue;
        }
        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c_->write, 0) != NGX_OK) finish(0, "cannot wait for the socket");
            return;
        }
        if (reused_ && !req_.body_source) return reconnect();  // a pooled connection the peer had closed
        // A server may answer and close before taking the whole body (a media host refusing an upload): read
        // what it said before calling it a write failure.
        write_failed_ = true;
        phase_ = Phase::Reading;
        return on_read();
    }
    phase_ = Phase::Reading;
    if (ngx_handle_read_event(c_->read, 0) != NGX_OK) return finish(0, "cannot wait for the socket");
    if (c_->read->ready) on_read();
}

void WaHttpClient::on_read() {
    if (phase_ != Phase::Reading) {
        // Readable before the request is out (an early answer or a close): read it once we are done sending.
        if (phase_ == Phase::Sending) on_write();
        return;
    }
    u_char buf[8192];
    for (;;) {
        ssize_t n = c_->recv(c_, buf, sizeof buf);
        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c_->read, 0) != NGX_OK) finish(0, "cannot wait for the socket");
            return;
        }
        if ((n == 0 || n == NGX_ERROR) && reused_ && !got_bytes_ && !req_.body_source) return reconnect();  // closed idle
        if (n == 0) {
            if (parser_.on_eof() == wa::http::ResponseParser::Result::Done) return finish(parser_.status(), "");
            if (write_failed_ && parser_.status() == 0) return finish(0, "write to " + peer() + " failed");
            return finish(parser_.status(), parser_.error() + " (" + peer() + ")");
        }
        if (n < 0) return finish(0, (write_failed_ ? "write to " : "read from ") + peer() + " failed");
        got_bytes_ = true;
        size_t used = 0;
        auto r = parser_.feed(std::string_view(reinterpret_cast<const char*>(buf), static_cast<size_t>(n)), &used);
        if (r == wa::http::ResponseParser::Result::Done) {
            reusable_ = parser_.keep_alive() && used == static_cast<size_t>(n) && !write_failed_;
            return finish(parser_.status(), "");
        }
        if (r == wa::http::ResponseParser::Result::Error)
            return finish(parser_.status(), parser_.error() + " (" + peer() + ")");
    }
}

void WaHttpClient::total_timeout_handler(ngx_event_t* ev) {
    auto* h = static_cast<WaHttpClient*>(ev->data);
    h->finish(0, "request to " + h->peer() + " timed out");
}

void WaHttpClient::teardown() {
    if (resolve_) {
        ngx_resolve_name_done(resolve_);
        resolve_ = nullptr;
    }
    if (c_) {
        wa_outbound_close(c_, false);
        c_ = nullptr;
    }
}

// A pooled connection the peer had closed while idle (nothing of a response came back): the same request
// once more on a fresh connection. Never a second time (reused_ is false after this).
void WaHttpClient::reconnect() {
    reused_ = false;
    got_bytes_ = false;
    write_failed_ = false;
    parser_ = wa::http::ResponseParser(16384, req_.max_body);
    parser_.keep_body(req_.keep_body);
    if (req_.body_sink) parser_.body_sink(req_.body_sink);
    teardown();
    phase_ = Phase::Idle;
    open();
}

void WaHttpClient::finish(int status, const std::string& error) {
    if (phase_ == Phase::Done) return;
    phase_ = Phase::Done;
    if (reusable_ && req_.pool && c_ && status > 0) {
        if (c_->read->timer_set) ngx_del_timer(c_->read);
        if (c_->write->timer_set) ngx_del_timer(c_->write);
        req_.pool->put(pool_key(), c_);
        c_ = nullptr;
    }
    teardown();
    if (total_.timer_set) ngx_del_timer(&total_);
    Done d = std::move(done_);
    if (d) d(status, error);
}

// ---- WaHttpPool ----

void WaHttpPool::close_connection(ngx_connection_t* c) { wa_outbound_close(c, false); }

ngx_connection_t* WaHttpPool::take(const std::string& key) {
    auto it = idle_.find(key);
    if (it == idle_.end() || it->second.empty()) return nullptr;
    Idle* i = it->second.back();
    it->second.pop_back();
    if (it->second.empty()) idle_.erase(it);
    ngx_connection_t* c = i->c;
    delete i;
    if (c->read->timer_set) ngx_del_timer(c->read);
    c->read->cancelable = 0;
    c->idle = 0;
    reused_++;
    return c;
}

void WaHttpPool::put(const std::string& key, ngx_connection_t* c) {
    if (max_idle_ == 0 || idle_timeout_ == 0 || ngx_exiting || ngx_quit || ngx_terminate || c->read->pending_eof ||
        c->read->eof || c->error)
        return close_connection(c);
    auto& list = idle_[key];
    if (list.size() >= max_idle_) return close_connection(c);
    auto* i = new Idle{this, key, c};
    c->data = i;
    c->read->handler = idle_handler;
    c->write->handler = idle_handler;
    c->idle = 1;
    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        delete i;
        if (list.empty()) idle_.erase(key);
        return close_connection(c);
    }
    c->read->cancelable = 1;  // an idle connection never keeps a quitting process alive
    ngx_add_timer(c->read, idle_timeout_);
    list.push_back(i);
}

void WaHttpPool::idle_handler(ngx_event_t* ev) {
    auto* c = static_cast<ngx_connection_t*>(ev->data);
    auto* i = static_cast<Idle*>(c->data);
    if (ev->write) return;  // writable: nothing to say while idle
    // c->close: a quitting process closes its idle connections (ngx_close_idle_connections sets it).
    if (!ev->timedout && !c->close) {
        // A spurious wake-up keeps the connection; data or an end while idle means the peer is done with it.
        char b;
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
        if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
            ev->ready = 0;
            if (ngx_handle_read_event(c->read, 0) == NGX_OK) return;
        }
    }
    i->pool->drop(i);
}

void WaHttpPool::drop(Idle* i) {
    auto it = idle_.find(i->key);
    if (it != idle_.end()) {
        auto& l = it->second;
        l.erase(std::remove(l.begin(), l.end(), i), l.end());
        if (l.empty()) idle_.erase(it);
    }
    ngx_connection_t* c = i->c;
    delete i;
    if (c->read->timer_set) ngx_del_timer(c->read);
    close_connection(c);
}

void WaHttpPool::close_all() {
    while (!idle_.empty()) drop(idle_.begin()->second.front());
}

size_t WaHttpPool::idle() const {
    size_t n = 0;
    for (const auto& [k, l] : idle_) n += l.size();
    return n;
}
