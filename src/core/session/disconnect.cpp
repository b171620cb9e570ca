#include "wa/session/disconnect.hpp"

namespace wa {

namespace {

DisconnectPolicy make(DisconnectPolicy::Next next, std::string why) {
    DisconnectPolicy p;
    p.next = next;
    p.last_error = std::move(why);
    return p;
}

DisconnectPolicy logged_out(std::string why) {
    DisconnectPolicy p = make(DisconnectPolicy::LoggedOut, std::move(why));
    p.delete_credentials = true;
    p.keep_wanted = false;
    return p;
}

DisconnectPolicy stop(std::string why, bool keep_wanted) {
    DisconnectPolicy p = make(DisconnectPolicy::Stop, std::move(why));
    p.keep_wanted = keep_wanted;
    return p;
}

// <failure reason=N> at login (whatsmeow connectionevents.go handleConnectFailure).
DisconnectPolicy on_login_failure(const Disconnect& d) {
    switch (d.code) {
    case 401: return logged_out("logged_out: the phone removed this device (login failure 401)");
    case 403: return logged_out("account locked (login failure 403)");
    case 406: return logged_out("account banned (login failure 406)");
    case 402: {
        DisconnectPolicy p = make(DisconnectPolicy::RetryAt, "temporarily banned (login failure 402)");
        p.retry_after_s = d.expire > 0 ? d.expire : 3600;
        return p;
    }
    case 405: return stop("client_outdated", true);
    case 409: return stop("client_outdated: bad user agent (login failure 409)", true);
    case 411: return stop("client_outdated: multi-device mismatch (failure 411)", true);
    case 500:
    case 503: return make(DisconnectPolicy::Backoff, describe(d));
    default: return make(DisconnectPolicy::Backoff, describe(d));
    }
}

// <stream:error> (whatsmeow handleStreamError; Baileys maps <conflict type=replaced> to 440).
DisconnectPolicy on_stream_error(const Disconnect& d) {
    if (d.code == 515) return make(DisconnectPolicy::ReconnectNow, "");
    if (d.child == "device_removed" || d.code == 401)
        return logged_out("logged_out: the phone removed this device (stream error 401 device_removed)");
    if (d.child == "replaced" || d.code == 440)
        return make(DisconnectPolicy::Conflict, "conflict: another client connected as this device");
    return make(DisconnectPolicy::Backoff, describe(d));
}

}  // namespace

std::string describe(const Disconnect& d) {
    std::string s;
    switch (d.kind) {
    case Disconnect::Transport: s = "connection lost"; break;
    case Disconnect::Timeout: s = "timed out"; break;
    case Disconnect::UpgradeRefused: s = "WebSocket upgrade refused (HTTP " + std::to_string(d.code) + ")"; break;
    case Disconnect::WsClose: s = "WebSocket closed by the server (code " + std::to_string(d.code) + ")"; break;
    case Disconnect::Noise: s = "Noise handshake failed"; break;
    case Disconnect::StreamError:
        s = "stream error " + (d.code ? std::to_string(d.code) : std::string("without code"));
        if (!d.child.empty()) s += " (" + d.child + ")";
        break;
    case Disconnect::StreamEnd: s = "stream ended by the server (xmlstreamend)"; break;
    case Disconnect::LoginFailure: s = "login failure " + std::to_string(d.code); break;
    case Disconnect::QrTimeout: s = "qr_timeout"; break;
    case Disconnect::PasskeyRequired: s = "passkey_required"; break;
    case Disconnect::Protocol: s = "protocol error"; break;
    }
    if (!d.text.empty()) s += ": " + d.text;
    return s;
}

const char* kind_name(Disconnect::Kind k) {
    static const char* const names[kDisconnectKinds] = {"transport", "timeout", "upgrade_refused", "ws_close",
                                                        "noise", "stream_error", "stream_end", "login_failure",
                                                        "qr_timeout", "passkey_required", "protocol"};
    return static_cast<size_t>(k) < kDisconnectKinds ? names[k] : "unknown";
}

DisconnectPolicy decide(const Disconnect& d, bool linked) {
    switch (d.kind) {
    case Disconnect::LoginFailure: return on_login_failure(d);
    case Disconnect::StreamError: return on_stream_error(d);
    case Disconnect::QrTimeout: return stop("qr_timeout", false);
    case Disconnect::PasskeyRequired: return stop("passkey_required", false);
    case Disconnect::UpgradeRefused:
        // A refused upgrade with a client error says the request itself is wrong (outdated endpoint).
        if (d.code == 405 || d.code == 426) return stop("client_outdated: " + describe(d), true);
        return make(DisconnectPolicy::Backoff, describe(d));
    case Disconnect::Protocol:
        // Pairing that fails its checks gets a fresh registration (new QR) after a backoff.
        return make(DisconnectPolicy::Backoff, describe(d));
    default:
        (void)linked;
        return make(DisconnectPolicy::Backoff, describe(d));
    }
}

}  // namespace wa
