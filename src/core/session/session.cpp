// The session router and its state machine: commands, transport events and deadlines in; actions out.
// Protocol concerns live beside it: link.cpp (Noise, ClientPayload), pair.cpp (QR, code, pair-success),
// login.cpp (success, prekeys, passive, keep-alive), disconnect.cpp (what each ending means).
#include <ctime>

#include "wa/session.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "ctx.hpp"
#include "wa/signal/account.hpp"
#include "wa/crypto/xeddsa.hpp"

namespace wa {

static const char* const kStateNames[] = {"disconnected", "connecting",  "qr_ready", "connected",
                                          "reconnecting", "logged_out", "conflict"};

const char* state_name(State s) {
    auto i = static_cast<size_t>(s);
    return i < sizeof(kStateNames) / sizeof(kStateNames[0]) ? kStateNames[i] : "disconnected";
}

bool parse_state(std::string_view name, State& out) {
    for (size_t i = 0; i < sizeof(kStateNames) / sizeof(kStateNames[0]); i++) {
        if (name == kStateNames[i]) {
            out = static_cast<State>(i);
            return true;
        }
    }
    return false;
}

uint64_t Backoff::delay_ms(uint32_t attempt, double unit_random) const {
    if (attempt == 0) attempt = 1;
    // base * 2^(attempt-1), computed without overflow: past 2^20 it is far above any cap anyway.
    uint64_t d = base_ms << std::min<uint32_t>(attempt - 1, 20);
    if (d > cap_ms) d = cap_ms;
    double r = std::clamp(unit_random, 0.0, 1.0);
    double factor = 1.0 + jitter * (2.0 * r - 1.0);  // uniform in [1-j, 1+j)
    return static_cast<uint64_t>(std::llround(static_cast<double>(d) * factor));
}

Session::Session(SessionConfig cfg, std::string org, store::Store* store)
    : cfg_(std::move(cfg)), org_(std::move(org)), store_(store) {
    if (!cfg_.verify) cfg_.verify = [](std::string_view p, std::string_view m, std::string_view s) {
        return xeddsa_verify(p, m, s);
    };
    if (cfg_.root_pub.empty()) cfg_.root_pub = std::string(noise::wa_root_public());
}

Session::~Session() = default;

double Session::random() {
    if (cfg_.random) return cfg_.random();
    static thread_local std::mt19937_64 gen{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

void Session::restore(const store::OrgRecord& rec) {
    status_.wanted = rec.wanted;
    status_.phone = rec.phone;
    status_.connected_at = rec.connected_at;
    status_.state_since = rec.state_since;
    status_.restricted_until = rec.restricted_until;
    State st = static_cast<State>(rec.state);
    // A logged-out or conflicted session stays so until an operator acts; anything else was interrupted.
    status_.state = (st == State::LoggedOut || st == State::Conflict) ? st : State::Disconnected;
    if (st == State::LoggedOut || st == State::Conflict) status_.last_error = rec.last_error;
    if (store_) {
        auto c = std::make_unique<store::Credentials>();
        bool found = false;
        std::string err;
        if (store_->load_credentials(org_, *c, found, &err) && found) creds_ = std::move(c);
    }
    status_.linked = creds_ && !creds_->me_jid.empty();
}

void Session::persist_org() {
    if (!store_) return;
    store::OrgRecord r;
    r.org = org_;
    r.wanted = status_.wanted;
    r.state = static_cast<uint8_t>(status_.state);
    r.phone = status_.phone;
    r.last_error = status_.last_error;
    r.state_since = status_.state_since;
    r.connected_at = status_.connected_at;
    r.restricted_until = status_.restricted_until;
    std::string err;
    store_->put_org(r, &err);
}

void Session::set_state(State s, int64_t unix_s, Actions& out) {
    bool changed = status_.state != s;
    if (changed) {
        status_.state = s;
        status_.state_since = unix_s;
    }
    if (s != State::Reconnecting) status_.next_retry_at = 0;
    if (s != State::QrReady) {
        status_.qr_text.clear();
        status_.qr_expires_ms = 0;
    }
    out.push_back({Action::Publish});
    // Only what survives a restart is written: the state's kind, not every retry.
    if (changed && s != State::Reconnecting && s != State::Connecting && s != State::QrReady) persist_org();
    if (changed && s != State::Connecting && s != State::QrReady)
        emit(webhook::kSessionStatus, webhook::session_data(state_name(s), status_.last_error, status_.phone), unix_s);
}

void Session::emit(std::string_view type, const std::string& data, int64_t unix_s) {
    std::string err;
    if (unix_s == 0) unix_s = static_cast<int64_t>(std::time(nullptr));  // callers without a clock at hand
    webhook::emit(store_, cfg_.webhooks, org_, type, data, unix_s * 1000, &err);
}

Actions Session::finish(Actions out, uint64_t now_ms) {
    (void)now_ms;
    uint64_t at = deadlines_.earliest();
    if (at != armed_at_) {
        if (at == 0)
            out.push_back({Action::CancelTimer});
        else
            out.push_back({Action::SetTimer, 0, at, {}});
        armed_at_ = at;
    }
    return out;
}

bool Session::ensure_credentials(std::string* err) {
    if (creds_) return true;
    auto c = std::make_unique<store::Credentials>();
    crypto::KeyPair noise_kp, identity, spk;
    if (!crypto::generate_keypair(noise_kp) || !crypto::generate_keypair(identity) || !crypto::generate_keypair(spk)) {
        if (err) *err = "key generation failed";
        return false;
    }
    c->noise_priv = noise_kp.priv;
    c->noise_pub = noise_kp.pub;
    c->identity_priv = identity.priv;
    c->identity_pub = identity.pub;
    uint16_t reg = 0;
    crypto::random_bytes(&reg, sizeof reg);
    c->registration_id = (reg & 16383) ? (reg & 16383) : 1;  // 14 bits, never 0 (Baileys, libsignal)
    c->signed_prekey_id = 1;
    c->signed_prekey_priv = spk.priv;
    c->signed_prekey_pub = spk.pub;
    // The signed prekey signature covers the 33-byte serialized key (0x05 || pub).
    c->signed_prekey_sig = crypto::xeddsa_sign(identity.priv, std::string(1, '\x05') + spk.pub);
    c->adv_secret = crypto::random_string(32);
    if (c->signed_prekey_sig.size() != 64 || c->adv_secret.size() != 32) {
        if (err) *err = "signing the signed prekey failed";
        return false;
    }
    if (store_ && !store_->put_credentials(org_, *c, err)) return false;
    creds_ = std::move(c);
    return true;
}

void Session::reset_link() {
    ctx_.reset();
    deadlines_.cancel(Deadlines::Handshake);
    deadlines_.cancel(Deadlines::Login);
    deadlines_.cancel_all(Deadlines::QrRef);
    deadlines_.cancel(Deadlines::KeepAlive);
    deadlines_.cancel(Deadlines::Ping);
    deadlines_.cancel_all(Deadlines::Iq);
    deadlines_.cancel(Deadlines::Work);
    deadlines_.cancel(Deadlines::Unlink);
}

// ---- commands -----------------------------------------------------------------------------------------

Actions Session::start(uint64_t now_ms, int64_t unix_s) {
    Actions out;
    bool was_wanted = status_.wanted;
    status_.wanted = true;
    if (busy()) {
        // Idempotent: a session on its way up (or up) stays as it is.
        if (!was_wanted) persist_org();
        return finish(std::move(out), now_ms);
    }
    // An operator asking again does not wait out a backoff; the retry count keeps growing.
    deadlines_.cancel(Deadlines::Retry);
    status_.last_error.clear();
    phase_ = Phase::Dialing;
    set_state(State::Connecting, unix_s, out);
    if (!was_wanted) persist_org();
    out.push_back({Action::Connect});
    return finish(std::move(out), now_ms);
}

Actions Session::clear(uint64_t now_ms, int64_t unix_s) {
    Actions out;
    if (busy()) out.push_back({Action::Close, 1000});
    reset_link();
    deadlines_.clear();
    phase_ = Phase::Idle;
    creds_.reset();
    status_ = SessionStatus{};
    status_.state_since = unix_s;
    std::string err;
    if (store_) store_->clear_org(org_, &err);
    out.push_back({Action::Publish});
    return finish(std::move(out), now_ms);
}

Actions Session::logout(uint64_t now_ms, int64_t unix_s, uint64_t command_id) {
    Actions out;
    if (phase_ == Phase::Online && ctx_ && creds_ && !creds_->me_jid.empty()) {
        // Unlink on the server first, as the phone's "Log out" would (whatsmeow client.go Logout).
        ctx_->unlink_command = command_id;
        ctx_->unlinking = true;
        Node iq("iq", {{"to", "@s.whatsapp.net"}, {"type", "set"}, {"xmlns", "md"}},
                {Node("remove-companion-device", {{"jid", creds_->me_jid}, {"reason", "user_initiated"}})});
        ctx_->send_iq(std::move(iq), IqKind::Unlink, now_ms, out);
        deadlines_.set(Deadlines::Unlink, now_ms + 5000);
        return finish(std::move(out), now_ms);
    }
    if (busy()) out.push_back({Action::Close, 1000});
    reset_link();
    deadlines_.clear();
    phase_ = Phase::Idle;
    creds_.reset();
    status_ = SessionStatus{};
    std::string err;
    if (store_) store_->forget_credentials(org_, &err);
    set_state(State::LoggedOut, unix_s, out);
    persist_org();
    if (command_id) {
        Action done{Action::Complete, 200, 0,
                    R"({"success":true,"status":"logged_out","unlinked_on_server":false})"};
        done.command_id = command_id;
        out.push_back(std::move(done));
    }
    return finish(std::move(out), now_ms);
}

Actions Session::shutdown(uint64_t now_ms, int64_t unix_s) {
    (void)unix_s;
    Actions out;
    // 1001 "going away": the next helper generation picks the session up again.
    if (busy()) out.push_back({Action::Close, 1001});
    reset_link();
    deadlines_.clear();
    phase_ = Phase::Idle;
    return finish(std::move(out), now_ms);
}

// ---- transport events ---------------------------------------------------------------------------------

Actions Session::on_transport_open(uint64_t now_ms, int64_t unix_s) {
    Actions out;
    if (phase_ != Phase::Dialing) return out;
    std::string err;
    if (!ensure_credentials(&err)) {
        end_link(now_ms, unix_s, Disconnect{Disconnect::Protocol, 0, {}, 0, "cannot create credentials: " + err}, out);
        return finish(std::move(out), now_ms);
    }
    ctx_ = std::make_unique<Ctx>(*this);
    phase_ = Phase::Handshaking;
    if (!link::start_handshake(*ctx_, *creds_, cfg_, out, &err)) {
        end_link(now_ms, unix_s, Disconnect{Disconnect::Noise, 0, {}, 0, err}, out);
        return finish(std::move(out), now_ms);
    }
    deadlines_.set(Deadlines::Handshake, now_ms + cfg_.handshake_timeout_ms);
    return finish(std::move(out), now_ms);
}

Actions Session::on_message(uint64_t now_ms, int64_t unix_s, std::string_view payload) {
    Actions out;
    if (!ctx_) return out;
    stats_.frames_in++;
    std::string err;
    if (phase_ == Phase::Handshaking) {
        bool ok = link::on_handshake_bytes(*ctx_, payload, *creds_, cfg_, unix_s, out, &err);
        if (!ok) {
            end_link(now_ms, unix_s, Disconnect{Disconnect::Noise, 0, {}, 0, err}, out);
            return finish(std::move(out), now_ms);
        }
        if (!ctx_->transport_ready) return finish(std::move(out), now_ms);
        deadlines_.cancel(Deadlines::Handshake);
        deadlines_.set(Deadlines::Login, now_ms + cfg_.login_timeout_ms);
        phase_ = status_.linked ? Phase::LoggingIn : Phase::Registering;
        std::string rest = ctx_->reader.take_buffered();
        if (rest.empty()) return finish(std::move(out), now_ms);
        payload = std::string_view();
        ctx_->transport.feed(rest);
    } else {
        ctx_->transport.feed(payload);
    }
    for (;;) {
        std::string plain;
        noise::Transport::Result r = ctx_->transport.next(plain, &err);
        if (r == noise::Transport::NeedMore) break;
        if (r == noise::Transport::Error) {
            end_link(now_ms, unix_s, Disconnect{Disconnect::Noise, 0, {}, 0, "transport frame: " + err}, out);
            break;
        }
        Node node;
        if (!wa::decode(plain, node, &err)) continue;  // whatsmeow drops undecodable frames (client.go handleFrame)
        dispatch(now_ms, unix_s, node, out);
        if (!ctx_) break;  // the node ended the link
    }
    return finish(std::move(out), now_ms);
}

Actions Session::on_transport_error(uint64_t now_ms, int64_t unix_s, const Disconnect& why) {
    Actions out;
    if (phase_ == Phase::Idle || phase_ == Phase::BackingOff) return out;
    end_link(now_ms, unix_s, why, out);
    // The transport is already gone: drop the Close that end_link asked for.
    out.erase(std::remove_if(out.begin(), out.end(), [](const Action& a) { return a.kind == Action::Close; }),
              out.end());
    return finish(std::move(out), now_ms);
}

Actions Session::on_timer(uint64_t now_ms, int64_t unix_s) {
    Actions out;
    armed_at_ = 0;  // the host's timer fired
    for (const Deadlines::Due& d : deadlines_.take_due(now_ms)) {
        on_deadline(now_ms, unix_s, d.kind, d.key, out);
    }
    return finish(std::move(out), now_ms);
}

// ---- endings ------------------------------------------------------------------------------------------

void Session::schedule_retry(uint64_t now_ms, int64_t unix_s, std::string_view why, uint64_t delay_ms, Actions& out) {
    status_.retry_count++;
    status_.last_error.assign(why);
    if (delay_ms == 0) delay_ms = cfg_.backoff.delay_ms(status_.retry_count, random());
    phase_ = Phase::BackingOff;
    deadlines_.set(Deadlines::Retry, now_ms + delay_ms);
    set_state(State::Reconnecting, unix_s, out);
    status_.next_retry_at = unix_s + static_cast<int64_t>((delay_ms + 999) / 1000);
}

void Session::end_link(uint64_t now_ms, int64_t unix_s, const Disconnect& why, Actions& out) {
    DisconnectPolicy p = decide(why, status_.linked);
    if (p.next == DisconnectPolicy::ReconnectNow || p.next == DisconnectPolicy::Backoff ||
        p.next == DisconnectPolicy::RetryAt)
        stats_.reconnects[why.kind < kDisconnectKinds ? why.kind : 0]++;
    bool pairing_restart = ctx_ && ctx_->paired;
    uint64_t pending_code = ctx_ && ctx_->link_code ? ctx_->link_code->command_id : 0;
    out.push_back({Action::Close, static_cast<uint16_t>(p.next == DisconnectPolicy::ReconnectNow ? 1000 : 1000)});
    reset_link();
    if (pending_code) {
        Action a{Action::Complete, 503, 0,
                 R"({"success":false,"error":"the link ended before a pairing code was issued","code":"not_connected"})"};
        a.command_id = pending_code;
        out.push_back(std::move(a));
    }
    switch (p.next) {
    case DisconnectPolicy::ReconnectNow:
        // 515 "restart required" (after pairing, or when the server asks): dial again at once.
        phase_ = Phase::Dialing;
        if (!pairing_restart) status_.retry_count++;
        set_state(State::Connecting, unix_s, out);
        out.push_back({Action::Connect});
        return;
    case DisconnectPolicy::Backoff:
        schedule_retry(now_ms, unix_s, p.last_error, 0, out);
        return;
    case DisconnectPolicy::RetryAt:
        schedule_retry(now_ms, unix_s, p.last_error, static_cast<uint64_t>(p.retry_after_s) * 1000, out);
        return;
    case DisconnectPolicy::LoggedOut: {
        phase_ = Phase::Idle;
        creds_.reset();
        std::string err;
        if (store_) store_->forget_credentials(org_, &err);
        status_.wanted = false;
        status_.linked = false;
        status_.phone.clear();
        status_.last_error = p.last_error;
        set_state(State::LoggedOut, unix_s, out);
        persist_org();
        return;
    }
    case DisconnectPolicy::Conflict:
        phase_ = Phase::Idle;
        status_.last_error = p.last_error;
        set_state(State::Conflict, unix_s, out);
        persist_org();
        return;
    case DisconnectPolicy::Stop:
        phase_ = Phase::Idle;
        status_.wanted = p.keep_wanted;
        status_.last_error = p.last_error;
        set_state(State::Disconnected, unix_s, out);
        persist_org();
        return;
    }
}

}  // namespace wa
