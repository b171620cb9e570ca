// One organization's WhatsApp session, sans-IO: bytes, time and commands in; actions out.
// The nginx helper owns the sockets, timers and files and carries out the actions; unit tests drive the
// same object with a fake clock.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace wa {

// The states of the HTTP contract (../shared/spec/http-api.md, "Session states").
enum class State : uint8_t { Disconnected = 0, Connecting, QrReady, Connected, Reconnecting, LoggedOut, Conflict };
const char* state_name(State s);
bool parse_state(std::string_view name, State& out);

// Exponential backoff 2 s → 30 s with ±20% jitter, so that many sessions that lost the link together do
// not reconnect in lockstep. `unit_random` is in [0, 1); attempt 1 is the first retry.
struct Backoff {
    uint64_t base_ms = 2000;
    uint64_t cap_ms = 30000;
    double jitter = 0.2;
    uint64_t delay_ms(uint32_t attempt, double unit_random) const;
};

struct SessionConfig {
    std::string server_url;              // for messages only; the transport is the helper's
    uint64_t handshake_timeout_ms = 20000;  // B and W both wait 20 s for the server's handshake
    Backoff backoff;
    std::function<double()> random;      // [0,1) for jitter; tests inject a fixed one
};

// What the session asks its host to do. Each call returns the actions in order.
struct Action {
    enum Kind : uint8_t {
        Connect,         // open TCP → TLS → WebSocket to the server
        Close,           // close the transport (WebSocket close code in `code`)
        Write,           // send `bytes` as one binary WebSocket message
        SetTimer,        // (re)arm the session's single timer at `at_ms` (monotonic ms)
        CancelTimer,
        Publish,         // the status changed: copy status() to shared memory
        Persist,         // write the session file (desired state, last status)
        DeleteState,     // logout: delete the stored credentials
        MoveStateAside,  // clear-session: keep the stored state for inspection, never load it again
    } kind;
    uint16_t code = 0;
    uint64_t at_ms = 0;
    std::string bytes;

    Action(Kind k, uint16_t c = 0, uint64_t at = 0, std::string b = {})
        : kind(k), code(c), at_ms(at), bytes(std::move(b)) {}
};
using Actions = std::vector<Action>;

struct SessionStatus {
    State state = State::Disconnected;
    std::string phone;       // E.164 digits, once linked
    std::string qr_text;     // the pairing string while qr_ready
    std::string last_error;  // empty = null
    uint32_t retry_count = 0;
    int64_t connected_at = 0;   // unix seconds, 0 = never
    int64_t state_since = 0;    // unix seconds of the last state change
    int64_t next_retry_at = 0;  // unix seconds, while reconnecting
    bool wanted = false;        // start-session was asked for and not undone (restored after restarts)
};

class Session {
public:
    explicit Session(SessionConfig cfg) : cfg_(std::move(cfg)) {}

    // Commands (from the HTTP API through the helper). now_ms is monotonic, unix_s wall clock.
    Actions start(uint64_t now_ms, int64_t unix_s);
    Actions logout(uint64_t now_ms, int64_t unix_s);
    Actions clear(uint64_t now_ms, int64_t unix_s);
    Actions shutdown(uint64_t now_ms, int64_t unix_s);  // helper quitting: close, keep `wanted`

    // Transport events.
    Actions on_transport_open(uint64_t now_ms, int64_t unix_s);  // WebSocket upgraded
    Actions on_message(uint64_t now_ms, int64_t unix_s, std::string_view payload);
    Actions on_transport_error(uint64_t now_ms, int64_t unix_s, std::string_view error);
    Actions on_timer(uint64_t now_ms, int64_t unix_s);

    const SessionStatus& status() const { return status_; }
    void restore(const SessionStatus& persisted) { status_ = persisted; }

private:
    enum class Phase : uint8_t { Idle, Dialing, AwaitingHandshake, BackingOff };
    void set_state(State s, int64_t unix_s, Actions& out);
    Actions stop_and_forget(int64_t unix_s, State final_state, Action::Kind state_action);
    void schedule_retry(uint64_t now_ms, int64_t unix_s, std::string_view why, Actions& out);
    double random();

    SessionConfig cfg_;
    SessionStatus status_;
    Phase phase_ = Phase::Idle;
};

}  // namespace wa
