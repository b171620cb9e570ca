// After the server accepts the login: <success>, prekey count and upload (whatsmeow prekeys.go: 812 on the
// first upload, 50 per top-up when the server holds fewer than 5), passive active, keep-alive pings
// (whatsmeow keepalive.go: every 20–30 s, 10 s to answer), and unlinking on logout.
#include "ctx.hpp"

namespace wa {

std::string be_bytes(uint32_t v, size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[n - 1 - i] = static_cast<char>((v >> (8 * i)) & 0xFF);
    return s;
}

uint32_t be_value(std::string_view b) {
    uint32_t v = 0;
    for (size_t i = 0; i < b.size() && i < 4; i++) v = (v << 8) | static_cast<uint8_t>(b[i]);
    return v;
}

namespace login {

bool generate_prekeys(store::Credentials& creds, uint32_t count, std::vector<store::PreKey>& out) {
    for (uint32_t i = 0; i < count; i++) {
        crypto::KeyPair kp;
        if (!crypto::generate_keypair(kp)) return false;
        store::PreKey k;
        k.id = creds.next_prekey_id++;
        if (creds.next_prekey_id > 0xFFFFFF) creds.next_prekey_id = 1;  // ids are 3 bytes on the wire
        k.priv = kp.priv;
        k.pub = kp.pub;
        out.push_back(std::move(k));
    }
    return true;
}

// <iq xmlns="encrypt" type="set" to=@s.whatsapp.net><registration/><type/><identity/><list>…</list><skey/></iq>
Node prekey_upload_iq(const store::Credentials& creds, const std::vector<store::PreKey>& keys) {
    std::vector<Node> list;
    list.reserve(keys.size());
    for (const store::PreKey& k : keys) {
        list.push_back(Node("key", {}, {Node::with_bytes("id", {}, be_bytes(k.id, 3)),
                                        Node::with_bytes("value", {}, k.pub)}));
    }
    Node skey("skey", {}, {Node::with_bytes("id", {}, be_bytes(creds.signed_prekey_id, 3)),
                           Node::with_bytes("value", {}, creds.signed_prekey_pub),
                           Node::with_bytes("signature", {}, creds.signed_prekey_sig)});
    return Node("iq", {{"xmlns", "encrypt"}, {"type", "set"}, {"to", "@s.whatsapp.net"}},
                {Node::with_bytes("registration", {}, be_bytes(creds.registration_id, 4)),
                 Node::with_bytes("type", {}, std::string(1, '\x05')),
                 Node::with_bytes("identity", {}, creds.identity_pub), Node("list", {}, std::move(list)),
                 std::move(skey)});
}

}  // namespace login

void Session::on_login_success(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out) {
    if (phase_ != Phase::LoggingIn || !creds_) return;  // whatsmeow ignores a success without pairing
    deadlines_.cancel(Deadlines::Login);
    phase_ = Phase::Online;
    std::string lid(n.attr_or("lid"));
    if (!lid.empty() && creds_->me_lid.empty()) {
        creds_->me_lid = lid;
        std::string err;
        if (store_) store_->put_credentials(org_, *creds_, &err);
    }
    status_.retry_count = 0;
    status_.last_error.clear();
    status_.connected_at = unix_s;
    status_.linked = true;
    Jid me;
    if (Jid::parse(creds_->me_jid, me)) status_.phone = me.user;
    set_state(State::Connected, unix_s, out);
    persist_org();
    ctx_->send_iq(Node("iq", {{"xmlns", "encrypt"}, {"type", "get"}, {"to", "@s.whatsapp.net"}}, {Node("count")}),
                  IqKind::PrekeyCount, now_ms, out);
    schedule_keepalive(now_ms);
    open_signal();
    resume_jobs(now_ms, out);
}

void Session::begin_prekey_upload(uint64_t now_ms, uint32_t count, Actions& out) {
    if (!ctx_ || ctx_->prekeys_wanted) return;  // one upload at a time
    ctx_->prekeys_wanted = count;
    continue_prekey_upload(now_ms, out);
}

// Keys are generated in slices (one slice per event-loop turn) so that 100 organizations linking at once
// do not freeze the others; ids are reused until an upload is acknowledged.
void Session::continue_prekey_upload(uint64_t now_ms, Actions& out) {
    if (!ctx_ || !creds_ || ctx_->prekeys_wanted == 0) return;
    std::vector<store::PreKey> pending;
    std::string err;
    if (store_) store_->load_unuploaded_prekeys(org_, ctx_->prekeys_wanted, pending, &err);
    if (pending.size() < ctx_->prekeys_wanted) {
        uint32_t missing = ctx_->prekeys_wanted - static_cast<uint32_t>(pending.size());
        uint32_t slice = std::min(missing, cfg_.prekeys_per_slice);
        if (cfg_.work_budget) slice = cfg_.work_budget(slice);
        if (slice == 0) {  // this turn's budget is spent by other sessions: the next turn
            deadlines_.set(Deadlines::Work, now_ms + 1);
            return;
        }
        std::vector<store::PreKey> fresh;
        login::generate_prekeys(*creds_, slice, fresh);
        if (store_) {
            store_->put_prekeys(org_, fresh, &err);
            store_->put_credentials(org_, *creds_, &err);
        }
        if (store_ && missing > slice) {
            deadlines_.set(Deadlines::Work, now_ms + 1);  // the next slice on a later turn, after other events
            return;
        }
        if (!store_) pending.insert(pending.end(), fresh.begin(), fresh.end());
        else store_->load_unuploaded_prekeys(org_, ctx_->prekeys_wanted, pending, &err);
    }
    if (pending.empty()) {
        ctx_->prekeys_wanted = 0;
        return;
    }
    // durable: the private keys must be on disk before their public halves reach the server.
    std::string id = ctx_->send_iq(login::prekey_upload_iq(*creds_, pending), IqKind::PrekeyUpload, now_ms, out, true);
    if (!id.empty()) {
        ctx_->iqs[id].first = pending.front().id;
        ctx_->iqs[id].last = pending.back().id;
    }
}

void Session::schedule_keepalive(uint64_t now_ms) {
    uint64_t span = cfg_.keepalive_max_ms > cfg_.keepalive_min_ms ? cfg_.keepalive_max_ms - cfg_.keepalive_min_ms : 0;
    deadlines_.set(Deadlines::KeepAlive, now_ms + cfg_.keepalive_min_ms + static_cast<uint64_t>(random() * span));
}

void Session::send_ping(uint64_t now_ms, Actions& out) {
    if (!ctx_ || phase_ != Phase::Online) return;
    // whatsmeow keepalive.go sendKeepAlive: <iq xmlns="w:p" type="get" to=@s.whatsapp.net/> with no child.
    ctx_->send_iq(Node("iq", {{"to", "@s.whatsapp.net"}, {"type", "get"}, {"xmlns", "w:p"}}), IqKind::Ping, now_ms, out);
    deadlines_.set(Deadlines::Ping, now_ms + cfg_.ping_timeout_ms);
    stats_.pings++;
}

void Session::finish_unlink(uint64_t now_ms, int64_t unix_s, bool on_server, Actions& out) {
    uint64_t cmd = ctx_ ? ctx_->unlink_command : 0;
    out.push_back({Action::Close, 1000});
    reset_link();
    deadlines_.clear();
    phase_ = Phase::Idle;
    creds_.reset();
    status_ = SessionStatus{};
    std::string err;
    if (store_) store_->forget_credentials(org_, &err);
    set_state(State::LoggedOut, unix_s, out);
    persist_org();
    if (cmd) {
        Action done{Action::Complete, 200, 0,
                    std::string(R"({"success":true,"status":"logged_out","unlinked_on_server":)") +
                        (on_server ? "true}" : "false}")};
        done.command_id = cmd;
        out.push_back(std::move(done));
    }
    (void)now_ms;
}

void Session::on_iq_result(uint64_t now_ms, int64_t unix_s, const Node& iq, Actions& out) {
    auto it = ctx_->iqs.find(std::string(iq.attr_or("id")));
    if (it == ctx_->iqs.end()) return;
    Ctx::PendingIq p = it->second;
    ctx_->iqs.erase(it);
    deadlines_.cancel(Deadlines::Iq, std::string(iq.attr_or("id")));
    bool ok = iq.attr_or("type") == "result";
    std::string err;
    switch (p.kind) {
    case IqKind::Ping:
        deadlines_.cancel(Deadlines::Ping);
        schedule_keepalive(now_ms);
        return;
    case IqKind::PrekeyCount: {
        const Node* count = iq.child("count");
        uint32_t server = 0, local = 0;
        if (count) parse_jid_number(count->attr_or("value"), 0xFFFFFFFFu, server);
        if (store_) store_->count_prekeys(org_, true, local, &err);
        if (server < cfg_.min_prekeys || local < cfg_.min_prekeys)
            begin_prekey_upload(now_ms, server == 0 && local == 0 ? cfg_.initial_prekeys : cfg_.prekey_batch, out);
        else
            ctx_->send_iq(Node("iq", {{"xmlns", "passive"}, {"type", "set"}, {"to", "@s.whatsapp.net"}},
                               {Node("active")}),
                          IqKind::Passive, now_ms, out);
        return;
    }
    case IqKind::PrekeyUpload:
        ctx_->prekeys_wanted = 0;
        if (!ok) return end_link(now_ms, unix_s, Disconnect{Disconnect::Protocol, 0, {}, 0, "prekey upload refused"}, out);
        if (store_) store_->mark_prekeys_uploaded(org_, p.first, p.last, &err);
        stats_.prekeys_uploaded += p.last >= p.first ? p.last - p.first + 1 : 0;
        // whatsmeow connectionevents.go: SetPassive(false) once the prekeys are in place.
        ctx_->send_iq(Node("iq", {{"xmlns", "passive"}, {"type", "set"}, {"to", "@s.whatsapp.net"}}, {Node("active")}),
                      IqKind::Passive, now_ms, out);
        return;
    case IqKind::Unlink: return finish_unlink(now_ms, unix_s, ok, out);
    case IqKind::Usync: return on_usync(now_ms, unix_s, p.job, iq, out);
    case IqKind::PreKeys: return on_prekeys(now_ms, unix_s, p.job, iq, out);
    case IqKind::ContactUsync: return on_contact_usync(p.command_id, iq, out);
    case IqKind::MediaConn: return on_media_conn(now_ms, iq, ok, out);
    case IqKind::LinkCodeHello: {
        const Node* reg = iq.child("link_code_companion_reg");
        const Node* ref = reg ? reg->child("link_code_pairing_ref") : nullptr;
        if (!ok || !ref || !ctx_->link_code) {
            uint64_t cmd = ctx_->link_code ? ctx_->link_code->command_id : 0;
            if (ctx_->link_code) ctx_->link_code.reset();
            if (cmd) {
                Action a{Action::Complete, 502, 0,
                         R"({"success":false,"error":"WhatsApp refused the pairing-code request","code":"pairing_refused"})"};
                a.command_id = cmd;
                out.push_back(std::move(a));
            }
            return;
        }
        ctx_->link_code->ref = ref->bytes;
        std::string code = ctx_->link_code->code;
        Action a{Action::Complete, 200, 0,
                 R"({"success":true,"code":")" + code.substr(0, 4) + "-" + code.substr(4) + "\"}"};
        a.command_id = ctx_->link_code->command_id;
        ctx_->link_code->command_id = 0;
        out.push_back(std::move(a));
        return;
    }
    default: return;
    }
}

}  // namespace wa
