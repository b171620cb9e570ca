#include "http_client.hpp"

#include <algorithm>

#include "tls.hpp"

WaHttpClient::WaHttpClient(ngx_log_t* log, Done done) : log_(log), done_(std::move(done)), dialer_(log, this) {
    ngx_memzero(&total_, sizeof(total_));
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
    WaDialer::Target target;
    target.host = req_.url.host;
    target.peer = peer();
    target.port = static_cast<in_port_t>(req_.url.port);
    target.resolver = req_.resolver;
    target.resolver_timeout = req_.resolver_timeout;
    target.connect_timeout = req_.connect_timeout;
    phase_ = Phase::Dialing;
    dialer_.dial(std::move(target));
}

void WaHttpClient::on_dialed(ngx_connection_t* c, const std::string& why, bool) {
    if (c == nullptr) return finish(0, why);
    c_ = c;
    c_->data = this;
    c_->read->handler = event_handler;
    c_->write->handler = event_handler;
    on_connected();
}

void WaHttpClient::event_handler(ngx_event_t* ev) {
    auto* c = static_cast<ngx_connection_t*>(ev->data);
    auto* h = static_cast<WaHttpClient*>(c->data);
    if (ev->timedout) return h->finish(0, "request to " + h->peer() + " timed out");
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
    dialer_.cancel();
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
