#include "wa/session.hpp"

#include <algorithm>
#include <cmath>
#include <random>

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

double Session::random() {
    if (cfg_.random) return cfg_.random();
    static thread_local std::mt19937_64 gen{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

void Session::set_state(State s, int64_t unix_s, Actions& out) {
    if (status_.state != s) {
        status_.state = s;
        status_.state_since = unix_s;
    }
    if (s != State::Reconnecting) status_.next_retry_at = 0;
    out.push_back({Action::Publish});
}

void Session::schedule_retry(uint64_t now_ms, int64_t unix_s, std::string_view why, Actions& out) {
    status_.retry_count++;
    status_.last_error.assign(why);
    uint64_t delay = cfg_.backoff.delay_ms(status_.retry_count, random());
    phase_ = Phase::BackingOff;
    status_.next_retry_at = unix_s + static_cast<int64_t>((delay + 999) / 1000);
    State keep = status_.state;
    (void)keep;
    status_.state = State::Reconnecting;
    if (keep != State::Reconnecting) status_.state_since = unix_s;
    out.push_back({Action::SetTimer, 0, now_ms + delay, {}});
    out.push_back({Action::Publish});
    out.push_back({Action::Persist});
}

Actions Session::start(uint64_t now_ms, int64_t unix_s) {
    Actions out;
    bool was_wanted = status_.wanted;
    status_.wanted = true;
    switch (phase_) {
    case Phase::Dialing:
    case Phase::AwaitingHandshake:
        // Idempotent: a session on its way up (or up) stays as it is.
        if (!was_wanted) out.push_back({Action::Persist});
        return out;
    case Phase::BackingOff:
        // An operator asking again does not wait out the backoff; the retry count keeps growing.
        out.push_back({Action::CancelTimer});
        break;
    case Phase::Idle:
        break;
    }
    (void)now_ms;
    phase_ = Phase::Dialing;
    set_state(State::Connecting, unix_s, out);
    out.push_back({Action::Persist});
    out.push_back({Action::Connect});
    return out;
}

// Logout and clear both end the session for good (until the next start) and forget its status; they differ
// in what happens to the stored state: deleted, or moved aside for inspection.
Actions Session::stop_and_forget(int64_t unix_s, State final_state, Action::Kind state_action) {
    Actions out;
    if (phase_ == Phase::Dialing || phase_ == Phase::AwaitingHandshake) out.push_back({Action::Close, 1000});
    out.push_back({Action::CancelTimer});
    phase_ = Phase::Idle;
    status_ = SessionStatus{};
    status_.state_since = unix_s;
    status_.state = final_state;
    out.push_back({state_action});
    out.push_back({Action::Publish});
    return out;
}

Actions Session::logout(uint64_t, int64_t unix_s) {
    return stop_and_forget(unix_s, State::LoggedOut, Action::DeleteState);
}

Actions Session::clear(uint64_t, int64_t unix_s) {
    return stop_and_forget(unix_s, State::Disconnected, Action::MoveStateAside);
}

Actions Session::shutdown(uint64_t, int64_t) {
    Actions out;
    // 1001 "going away": the next helper generation picks the session up again.
    if (phase_ == Phase::Dialing || phase_ == Phase::AwaitingHandshake) out.push_back({Action::Close, 1001});
    out.push_back({Action::CancelTimer});
    // Only a session that runs has anything to save; a logged-out or cleared one must leave no file behind.
    if (status_.wanted) out.push_back({Action::Persist});
    phase_ = Phase::Idle;
    return out;
}

Actions Session::on_transport_open(uint64_t now_ms, int64_t) {
    Actions out;
    if (phase_ != Phase::Dialing) return out;
    // The WebSocket is up. The WhatsApp layer (Noise XX, login) is not part of this build yet, so no
    // handshake can complete: hold the link for the handshake timeout, as a real client waits for the
    // server's hello, then report honestly and back off.
    phase_ = Phase::AwaitingHandshake;
    out.push_back({Action::SetTimer, 0, now_ms + cfg_.handshake_timeout_ms, {}});
    return out;
}

Actions Session::on_message(uint64_t, int64_t, std::string_view) {
    // No protocol layer consumes server frames yet; they are counted by the transport and dropped.
    return {};
}

Actions Session::on_transport_error(uint64_t now_ms, int64_t unix_s, std::string_view error) {
    Actions out;
    if (phase_ != Phase::Dialing && phase_ != Phase::AwaitingHandshake) return out;
    schedule_retry(now_ms, unix_s, error, out);
    return out;
}

Actions Session::on_timer(uint64_t now_ms, int64_t unix_s) {
    Actions out;
    switch (phase_) {
    case Phase::AwaitingHandshake: {
        out.push_back({Action::Close, 1000});
        std::string why = "WebSocket to " + cfg_.server_url + " is open but no WhatsApp handshake completed within " +
                          std::to_string(cfg_.handshake_timeout_ms / 1000) +
                          " s: this build has no Noise/login layer yet";
        schedule_retry(now_ms, unix_s, why, out);
        break;
    }
    case Phase::BackingOff:
        phase_ = Phase::Dialing;
        status_.next_retry_at = 0;
        out.push_back({Action::Publish});
        out.push_back({Action::Connect});
        break;
    default:
        break;
    }
    return out;
}

}  // namespace wa
