#include "transport.hpp"

#include "tls.hpp"

WaTransport::WaTransport(wa_main_conf_t* conf, ngx_log_t* log, Listener* listener)
    : conf_(conf), log_(log), listener_(listener), dialer_(log, this) {}

WaTransport::~WaTransport() { teardown(); }

std::string WaTransport::peer_name() const { return wa_str(conf_->url->host_header); }

void WaTransport::connect() {
    wa_server_url_t* u = conf_->url;
    WaDialer::Target target;
    target.host = wa_str(u->host);
    target.peer = peer_name();
    target.port = u->port;
    for (ngx_uint_t i = 0; u->addrs && i < u->naddrs; i++) {  // resolved by nginx at configuration time
        struct sockaddr_storage sa;
        ngx_memcpy(&sa, u->addrs[i].sockaddr, u->addrs[i].socklen);
        target.addrs.emplace_back(sa, u->addrs[i].socklen);
    }
    target.resolver = conf_->resolver;
    target.resolver_timeout = conf_->resolver_timeout;
    target.connect_timeout = conf_->connect_timeout;
    target.pool_size = 2048;
    phase_ = Phase::Dialing;
    dialer_.dial(std::move(target));
}

void WaTransport::on_dialed(ngx_connection_t* c, const std::string& why, bool timed_out) {
    if (c == nullptr) return fail(why, timed_out ? wa::Disconnect::Timeout : wa::Disconnect::Transport);
    c_ = c;
    c_->data = this;
    c_->read->handler = event_handler;
    c_->write->handler = event_handler;
    on_connected();
}

void WaTransport::event_handler(ngx_event_t* ev) {
    auto* c = static_cast<ngx_connection_t*>(ev->data);
    auto* t = static_cast<WaTransport*>(c->data);
    if (ev->timedout) {
        t->fail(std::string(t->phase_ == Phase::Open ? "write" : "handshake") + " to " + t->peer_name() + " timed out",
                wa::Disconnect::Timeout);
        return;
    }
    if (ev->write) {
        t->on_write();
        return;
    }
    t->on_read();
}

void WaTransport::on_connected() {
    if (!conf_->url->tls) {
        on_tls_done();
        return;
    }
    phase_ = Phase::Tls;
    c_->log->action = const_cast<char*>("TLS handshake with the WhatsApp server");
    std::string err;
    WaTlsResult r = wa_tls_start(c_, conf_->ssl, wa_str(conf_->url->host), conf_->connect_timeout,
                                 ssl_handshake_handler, err);
    if (r == WaTlsResult::Failed) fail(err);
    else if (r == WaTlsResult::Ok) ssl_handshake_handler(c_);
}

void WaTransport::ssl_handshake_handler(ngx_connection_t* c) {
    auto* t = static_cast<WaTransport*>(c->data);
    std::string err;
    if (wa_tls_check(c, wa_str(t->conf_->url->host), t->peer_name(), err) != WaTlsFailure::None) {
        t->fail(err);
        return;
    }
    c->read->handler = event_handler;
    c->write->handler = event_handler;
    t->on_tls_done();
}

void WaTransport::on_tls_done() {
    phase_ = Phase::Upgrading;
    c_->log->action = const_cast<char*>("WebSocket upgrade with the WhatsApp server");
    key_ = wa::ws::new_key();
    // WhatsApp Web's origin; the server rejects upgrades without it.
    out_ = wa::ws::upgrade_request(wa_str(conf_->url->host_header), wa_str(conf_->url->path), key_,
                                   "https://web.whatsapp.com");
    if (out_.empty()) {
        fail("whatsapp_server " + wa_str(conf_->url->url) + " cannot be put in an HTTP request line");
        return;
    }
    ngx_add_timer(c_->read, conf_->connect_timeout);
    if (!flush()) return;
    if (c_->read->ready) on_read();
}

bool WaTransport::flush() {
    if (out_.empty() && phase_ == Phase::Open && c_->write->timer_set) ngx_del_timer(c_->write);
    while (!out_.empty()) {
        ssize_t n = c_->send(c_, reinterpret_cast<u_char*>(&out_[0]), out_.size());
        if (n > 0) {
            out_.erase(0, static_cast<size_t>(n));
            continue;
        }
        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c_->write, 0) != NGX_OK) {
                fail("cannot wait for the socket to become writable");
                return false;
            }
            // A server that stops reading must not hold the link (and our memory) forever.
            if (phase_ == Phase::Open && !c_->write->timer_set) ngx_add_timer(c_->write, conf_->connect_timeout);
            return true;
        }
        fail("write to " + peer_name() + " failed");
        return false;
    }
    if (phase_ == Phase::Open && c_->write->timer_set) ngx_del_timer(c_->write);
    return true;
}

void WaTransport::on_write() {
    if (phase_ == Phase::Upgrading || phase_ == Phase::Open) flush();
}

void WaTransport::on_read() {
    u_char buf[16384];
    for (;;) {
        ssize_t n = c_->recv(c_, buf, sizeof buf);
        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c_->read, 0) != NGX_OK) fail("cannot wait for the socket to become readable");
            return;
        }
        if (n == 0) {
            fail(phase_ == Phase::Open ? "connection closed by " + peer_name()
                                       : "connection closed by " + peer_name() + " during the WebSocket upgrade");
            return;
        }
        if (n < 0) {
            fail("read from " + peer_name() + " failed");
            return;
        }
        std::string_view data(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
        if (phase_ == Phase::Upgrading) {
            in_.append(data);
            wa::ws::UpgradeResult up = wa::ws::parse_upgrade_response(in_, key_);
            if (up.kind == wa::ws::UpgradeResult::Incomplete) continue;
            if (up.kind == wa::ws::UpgradeResult::Rejected) {
                fail("WebSocket upgrade to " + wa_str(conf_->url->url) + " rejected: " + up.error,
                     wa::Disconnect::UpgradeRefused, static_cast<uint32_t>(up.status));
                return;
            }
            if (c_->read->timer_set) ngx_del_timer(c_->read);
            phase_ = Phase::Open;
            c_->log->action = const_cast<char*>("talking to the WhatsApp server");
            std::string rest = in_.substr(up.consumed);
            in_.clear();
            in_.shrink_to_fit();
            Listener* l = listener_;
            l->on_transport_open();  // may close us: check the phase before going on
            if (phase_ != Phase::Open) return;
            if (rest.empty()) continue;
            data = std::string_view();
            decoder_.feed(rest);
        } else {
            decoder_.feed(data);
        }
        for (;;) {
            wa::ws::Opcode op;
            std::string payload;
            auto r = decoder_.next(op, payload);
            if (r == wa::ws::FrameDecoder::Result::NeedMore) break;
            if (r == wa::ws::FrameDecoder::Result::Error) {
                fail("bad WebSocket frame from " + peer_name() + ": " + decoder_.error());
                return;
            }
            switch (op) {
            case wa::ws::Opcode::Binary:
                messages_in_++;
                listener_->on_transport_message(payload);
                if (phase_ != Phase::Open) return;
                break;
            case wa::ws::Opcode::Ping:
                out_ += wa::ws::encode_frame(wa::ws::Opcode::Pong, payload);
                if (!flush()) return;
                break;
            case wa::ws::Opcode::Close: {
                unsigned code = payload.size() >= 2 ? (static_cast<unsigned char>(payload[0]) << 8) |
                                                          static_cast<unsigned char>(payload[1])
                                                    : 1005;
                out_ += wa::ws::encode_frame(wa::ws::Opcode::Close, payload.substr(0, 2));
                flush();
                fail("WebSocket closed by " + peer_name() + " (code " + std::to_string(code) + ")",
                     wa::Disconnect::WsClose, code);
                return;
            }
            default:
                break;  // text frames and pongs carry nothing for us
            }
        }
    }
}

bool WaTransport::send_binary(std::string_view payload) {
    if (phase_ != Phase::Open) return false;
    if (out_.size() + payload.size() > kMaxQueuedOutput) {
        fail("more than 4 MiB queued for " + peer_name() + ": the server stopped reading");
        return false;
    }
    out_ += wa::ws::encode_frame(wa::ws::Opcode::Binary, payload);
    return flush();
}

void WaTransport::fail(const std::string& why, wa::Disconnect::Kind kind, uint32_t code) {
    teardown();
    wa::Disconnect d;
    d.kind = kind;
    d.code = code;
    d.text = why;
    Listener* l = listener_;
    l->on_transport_error(d);  // may delete this
}

void WaTransport::close(uint16_t code) {
    if (phase_ == Phase::Open && c_) {
        // Best effort, no waiting: the peer learns why, and the socket closes right after.
        std::string frame = wa::ws::encode_frame(wa::ws::Opcode::Close, wa::ws::close_payload(code, ""));
        c_->send(c_, reinterpret_cast<u_char*>(&frame[0]), frame.size());
    }
    teardown();
}

in_port_t WaTransport::local_port() const {
    if (c_ == nullptr || ngx_connection_local_sockaddr(c_, NULL, 0) != NGX_OK) return 0;
    return ngx_inet_get_port(c_->local_sockaddr);
}

void WaTransport::teardown() {
    dialer_.cancel();
    if (c_) {
        wa_outbound_close(c_, true);
        c_ = nullptr;
    }
    phase_ = Phase::Closed;
}
