// The helper's outbound link to the WhatsApp server on nginx's event loop:
// resolve → TCP connect → TLS (certificate chain and host verified, SNI) → WebSocket upgrade → binary messages.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "dialer.hpp"
#include "wa/session/disconnect.hpp"
#include "wa/link/websocket.hpp"
#include "wa_module.hpp"

class WaTransport : private WaDialer::Owner {
public:
    static constexpr size_t kMaxQueuedOutput = 4u << 20;  // bytes waiting for the socket, then the link fails

    struct Listener {
        virtual void on_transport_open() = 0;
        virtual void on_transport_message(std::string_view payload) = 0;
        // The transport is closed when this is called; the listener may delete it from inside.
        virtual void on_transport_error(const wa::Disconnect& why) = 0;
        virtual ~Listener() = default;
    };

    WaTransport(wa_main_conf_t* conf, ngx_log_t* log, Listener* listener);
    ~WaTransport() override;
    WaTransport(const WaTransport&) = delete;
    WaTransport& operator=(const WaTransport&) = delete;

    void connect();
    bool send_binary(std::string_view payload);
    // Sends a WebSocket close frame if the link is up, then closes at once. No callback follows.
    void close(uint16_t code);
    // The upgrade request went out and no answer was read yet: closing now ends the connection without a close
    // frame (none may precede the 101), though the server may already count it as a WebSocket.
    bool upgrading() const { return phase_ == Phase::Upgrading; }

    uint64_t messages_in() const { return messages_in_; }
    // The local TCP port, 0 when not connected: lets logs be matched with the server's view of a connection.
    in_port_t local_port() const;

private:
    enum class Phase { Idle, Dialing, Tls, Upgrading, Open, Closed };
    static void event_handler(ngx_event_t* ev);
    static void ssl_handshake_handler(ngx_connection_t* c);
    void on_dialed(ngx_connection_t* c, const std::string& why, bool timed_out) override;
    void on_connected();
    void on_tls_done();
    void on_write();
    void on_read();
    bool flush();
    // Closes, then tells the listener; `this` may be gone after.
    void fail(const std::string& why, wa::Disconnect::Kind kind = wa::Disconnect::Transport, uint32_t code = 0);
    void teardown();
    std::string peer_name() const;

    wa_main_conf_t* conf_;
    ngx_log_t* log_;
    Listener* listener_;
    Phase phase_ = Phase::Idle;
    WaDialer dialer_;
    ngx_connection_t* c_ = nullptr;
    std::string key_;
    std::string out_;
    std::string in_;
    wa::ws::FrameDecoder decoder_;
    uint64_t messages_in_ = 0;
};
