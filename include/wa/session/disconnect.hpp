// Why a link ended, as a kind and a code (never a string to parse), and what a careful client does next.
// The table follows whatsmeow's connectionevents.go (handleStreamError, handleConnectFailure) and
// types/events/events.go (ConnectFailureReason.IsLoggedOut), commit 33cfac5.
#pragma once

#include <cstdint>
#include <string>

namespace wa {

struct Disconnect {
    enum Kind : uint8_t {
        Transport,      // resolve/connect/TLS/read/write failure, or the TCP connection closed
        Timeout,        // connect, handshake, login or keep-alive deadline
        UpgradeRefused, // the WebSocket upgrade got another HTTP status (code)
        WsClose,        // the server closed the WebSocket (code = close code)
        Noise,          // the Noise handshake or a transport frame failed (bad certificate, bad MAC)
        StreamError,    // <stream:error code=…> (code; `child` = conflict type when present)
        StreamEnd,      // <xmlstreamend/>
        LoginFailure,   // <failure reason=…> (code = reason; `expire` seconds for 402)
        QrTimeout,      // every QR ref expired without a scan
        PasskeyRequired,// the account asked for a passkey while linking (wa-protocol-2026.md)
        Protocol,       // a server node we cannot work with (pairing failed, bad node)
    } kind = Transport;
    uint32_t code = 0;
    std::string child;   // stream:error conflict type ("replaced", "device_removed")
    int64_t expire = 0;  // seconds (temporary ban)
    std::string text;    // human detail for last_error (no secrets)
};

struct DisconnectPolicy {
    enum Next : uint8_t {
        ReconnectNow,   // 515 after pairing; restart required
        Backoff,        // transient: retry with exponential backoff while credentials exist
        RetryAt,        // temporary ban: retry at `retry_after_s` from now, not before
        LoggedOut,      // credentials are void: delete them, no retry
        Conflict,       // another client took over this device: no automatic retry
        Stop,           // needs an operator (client outdated, QR timeout, passkey): stays wanted or not
    } next = Backoff;
    bool delete_credentials = false;
    bool keep_wanted = true;      // Stop: a reload (new version) reconnects it
    int64_t retry_after_s = 0;
    std::string last_error;       // what /api/status shows
};

DisconnectPolicy decide(const Disconnect& d, bool linked);

// "stream error 503", "login failure 405", ... for logs and last_error.
std::string describe(const Disconnect& d);

// The kinds as metric labels: "transport", "timeout", "stream_error", ...
constexpr size_t kDisconnectKinds = static_cast<size_t>(Disconnect::Protocol) + 1;
const char* kind_name(Disconnect::Kind k);

}  // namespace wa
