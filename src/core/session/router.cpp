// Dispatch of server nodes on tag (whatsmeow client.go nodeHandlers) and of due deadlines.
#include "ctx.hpp"

namespace wa {

namespace {

// whatsmeow receipt.go sendAck: class = the node's tag, id, to = its from, participant/recipient copied,
// type copied except for messages.
Node ack_for(const Node& n) {
    Node a("ack", {{"class", n.tag}, {"id", std::string(n.attr_or("id"))}, {"to", std::string(n.attr_or("from"))}});
    if (const std::string* p = n.attr("participant")) a.attrs.emplace_back("participant", *p);
    if (const std::string* r = n.attr("recipient")) a.attrs.emplace_back("recipient", *r);
    if (n.tag != "message")
        if (const std::string* t = n.attr("type")) a.attrs.emplace_back("type", *t);
    return a;
}

Disconnect stream_error(const Node& n) {
    Disconnect d{Disconnect::StreamError, 0, {}, 0, {}};
    uint32_t code = 0;
    if (parse_jid_number(n.attr_or("code"), 65535, code)) d.code = code;
    if (const Node* c = n.child("conflict")) d.child = std::string(c->attr_or("type"));
    return d;
}

Disconnect login_failure(const Node& n) {
    Disconnect d{Disconnect::LoginFailure, 0, {}, 0, {}};
    uint32_t v = 0;
    if (parse_jid_number(n.attr_or("reason"), 65535, v)) d.code = v;
    if (parse_jid_number(n.attr_or("expire"), 0xFFFFFFFFu, v)) d.expire = v;
    return d;
}

}  // namespace

std::string Session::Ctx::next_iq_id() {
    if (iq_prefix.empty()) {
        uint16_t r[2] = {0, 0};
        crypto::random_bytes(r, sizeof r);
        iq_prefix = std::to_string(r[0]) + "." + std::to_string(r[1]) + "-";  // Baileys' "<u16>.<u16>-<n>"
    }
    return iq_prefix + std::to_string(++iq_counter);
}

bool Session::Ctx::write_node(const Node& n, Actions& out, bool durable) {
    std::string plain;
    if (!wa::encode(n, plain)) return false;
    std::string frame = transport.encrypt_frame(plain);
    if (frame.empty()) return false;
    Action a{Action::Write, 0, 0, std::move(frame)};
    a.durable = durable;
    out.push_back(std::move(a));
    s.stats_.frames_out++;
    return true;
}

std::string Session::Ctx::send_iq(Node iq, IqKind kind, uint64_t now_ms, Actions& out, bool durable) {
    std::string id = next_iq_id();
    iq.set_attr("id", id);
    if (!write_node(iq, out, durable)) return {};
    iqs[id] = PendingIq{kind, 0, 0, {}, 0};
    s.deadlines_.set(Deadlines::Iq, now_ms + s.cfg_.iq_timeout_ms, id);
    return id;
}

void Session::dispatch(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out) {
    Ctx& c = *ctx_;
    if (n.tag == "iq") {
        std::string_view type = n.attr_or("type");
        if (type == "result" || type == "error") {
            on_iq_result(now_ms, unix_s, n, out);
            return;
        }
        if (n.attr_or("from") != "@s.whatsapp.net" && n.attr_or("from") != "s.whatsapp.net") return;
        if (n.child("pair-device")) {
            if (phase_ == Phase::Registering) pair::on_pair_device(c, n, now_ms, out);
            on_qr_refs(now_ms, unix_s, out);
            return;
        }
        if (n.child("pair-success")) {
            on_pair_success(now_ms, unix_s, n, out);
            return;
        }
        if (n.attr_or("xmlns") == "urn:xmpp:ping") {
            c.write_node(Node("iq", {{"to", std::string(n.attr_or("from"))}, {"id", std::string(n.attr_or("id"))},
                                     {"type", "result"}}),
                         out);
        }
        return;
    }
    if (n.tag == "success") return on_login_success(now_ms, unix_s, n, out);
    if (n.tag == "failure") return end_link(now_ms, unix_s, login_failure(n), out);
    if (n.tag == "stream:error") return end_link(now_ms, unix_s, stream_error(n), out);
    if (n.tag == "xmlstreamend") return end_link(now_ms, unix_s, Disconnect{Disconnect::StreamEnd, 0, {}, 0, {}}, out);
    if (n.tag == "notification") return on_notification(now_ms, unix_s, n, out);
    if (n.tag == "receipt") {
        c.write_node(ack_for(n), out);
        on_receipt(now_ms, unix_s, n, out);
        return;
    }
    if (n.tag == "call") {
        c.write_node(ack_for(n), out);
        return;
    }
    if (n.tag == "ack") {
        if (n.attr_or("class") == "message") on_message_ack(now_ms, unix_s, n, out);
        return;
    }
    if (n.tag == "message") return on_incoming_message(now_ms, unix_s, n, out);
    if (n.tag == "ib") {
        if (n.child("downgrade_webclient"))
            end_link(now_ms, unix_s, Disconnect{Disconnect::LoginFailure, 411, {}, 0, "downgrade_webclient"}, out);
        return;
    }
}

void Session::on_notification(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out) {
    Ctx& c = *ctx_;
    std::string_view type = n.attr_or("type");
    if (type == "passkey_prologue_request") {
        // Linking behind a passkey needs the account owner's browser (wa-protocol-2026.md; whatsmeow
        // pair-passkey.go): say so instead of showing QR codes that can never link.
        c.write_node(ack_for(n), out);
        end_link(now_ms, unix_s, Disconnect{Disconnect::PasskeyRequired, 0, {}, 0, {}}, out);
        return;
    }
    c.write_node(ack_for(n), out);
    if (type == "privacy_token") return on_privacy_tokens(unix_s, n);
    if (type == "mex") return on_mex(unix_s, n, out);
    if (type == "encrypt" && phase_ == Phase::Online) {
        if (const Node* count = n.child("count")) {
            uint32_t v = 0;
            if (parse_jid_number(count->attr_or("value"), 0xFFFFFFFFu, v) && v < cfg_.min_prekeys)
                begin_prekey_upload(now_ms, cfg_.prekey_batch, out);
        }
        return;
    }
    if (type == "link_code_companion_reg" && c.link_code && creds_) {
        std::string err;
        if (!pair::on_code_notification(c, n, *creds_, now_ms, out, &err)) {
            end_link(now_ms, unix_s, Disconnect{Disconnect::Protocol, 0, {}, 0, "pairing code: " + err}, out);
            return;
        }
        if (store_) store_->put_credentials(org_, *creds_, &err);  // the new adv secret
    }
}

void Session::on_deadline(uint64_t now_ms, int64_t unix_s, Deadlines::Kind kind, const std::string& key,
                          Actions& out) {
    switch (kind) {
    case Deadlines::Retry:
        if (phase_ != Phase::BackingOff) return;
        phase_ = Phase::Dialing;
        status_.next_retry_at = 0;
        set_state(State::Connecting, unix_s, out);
        out.push_back({Action::Connect});
        return;
    case Deadlines::Handshake:
        return end_link(now_ms, unix_s,
                        Disconnect{Disconnect::Timeout, 0, {}, 0, "no WhatsApp server hello within " +
                                                                      std::to_string(cfg_.handshake_timeout_ms / 1000) + " s"},
                        out);
    case Deadlines::Login:
        return end_link(now_ms, unix_s, Disconnect{Disconnect::Timeout, 0, {}, 0, "no login answer from the server"}, out);
    case Deadlines::QrRef: return on_qr_refs(now_ms, unix_s, out);
    case Deadlines::KeepAlive: return send_ping(now_ms, out);
    case Deadlines::Ping:
        return end_link(now_ms, unix_s,
                        Disconnect{Disconnect::Timeout, 0, {}, 0,
                                   "keep-alive ping unanswered for " + std::to_string(cfg_.ping_timeout_ms / 1000) + " s"},
                        out);
    case Deadlines::Iq:
        if (ctx_) {
            auto it = ctx_->iqs.find(key);
            if (it != ctx_->iqs.end()) {
                IqKind k = it->second.kind;
                ctx_->iqs.erase(it);
                if (k == IqKind::Unlink) return finish_unlink(now_ms, unix_s, false, out);
                if (k == IqKind::MediaConn)
                    return fail_media_waiting("media_conn_failed", "WhatsApp did not answer the media_conn query", out);
                if (k == IqKind::LinkCodeHello || k == IqKind::PrekeyCount || k == IqKind::PrekeyUpload)
                    return end_link(now_ms, unix_s, Disconnect{Disconnect::Timeout, 0, {}, 0, "iq unanswered"}, out);
            }
        }
        return;
    case Deadlines::Work: return continue_prekey_upload(now_ms, out);
    case Deadlines::Unlink: return finish_unlink(now_ms, unix_s, false, out);
    }
}

}  // namespace wa
