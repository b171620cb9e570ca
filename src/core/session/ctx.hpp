// Per-connection protocol state of a Session, shared by the per-concern files in src/core/session/.
// Lives exactly as long as one WebSocket: a new connection starts from a fresh Ctx.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "wa/binary.hpp"
#include "wa/crypto/keys.hpp"
#include "wa/noise.hpp"
#include "wa/jid.hpp"
#include "wa/session.hpp"
#include "wa/xeddsa.hpp"

namespace wa {

// What an outstanding iq is for, so its result reaches the right handler.
enum class IqKind : uint8_t {
    Ping, PrekeyCount, PrekeyUpload, Passive, Unlink, LinkCodeHello, LinkCodeFinish, Usync, PreKeys, ContactUsync, MediaConn, Other
};

struct Session::Ctx {
    explicit Ctx(Session& session) : s(session) {}
    Session& s;

    // ---- link: Noise handshake, then the transport ----
    std::unique_ptr<noise::Handshake> handshake;
    noise::FrameReader reader;
    noise::Transport transport;
    bool transport_ready = false;
    int64_t unix_now = 0;

    // ---- iq table ----
    struct PendingIq {
        IqKind kind = IqKind::Other;
        uint32_t first = 0, last = 0;  // prekey ids of an upload
        std::string job;               // the send job (usync, prekeys) or "#cmd" of a contact lookup
        uint64_t command_id = 0;
    };
    std::map<std::string, PendingIq> iqs;
    uint32_t iq_counter = 0;
    std::string iq_prefix;

    // ---- pairing ----
    std::vector<std::string> refs;  // QR refs from pair-device, shown in turn
    size_t ref_index = 0;
    bool paired = false;            // pair-success handled: a 515 restart follows
    struct LinkCode {
        std::string phone, code;
        crypto::KeyPair ephemeral;
        std::string ref;
        uint64_t command_id = 0;
        bool requested = false;     // companion_hello sent
    };
    std::unique_ptr<LinkCode> link_code;

    // ---- login ----
    uint32_t server_prekeys = 0;
    uint32_t prekeys_wanted = 0;    // keys the running upload still needs generated
    bool ping_outstanding = false;
    uint64_t unlink_command = 0;
    bool unlinking = false;

    // ---- helpers (ctx.cpp) ----
    std::string next_iq_id();
    bool write_node(const Node& n, Actions& out, bool durable = false);
    std::string send_iq(Node iq, IqKind kind, uint64_t now_ms, Actions& out, bool durable = false);
};

// One outgoing message until the server's ack (send.cpp), or a resend to one device (receive.cpp).
struct Session::SendJob {
    std::string id;
    std::string text;
    std::string phone;                // E.164 digits of the recipient ("" when sent to a JID as given)
    Jid dest;                         // the recipient user as asked (PN, or a JID as given)
    Jid addressed;                    // what goes into `to`: the LID when known
    std::vector<uint64_t> commands;   // requests waiting for the ack (a retried idempotent request joins)
    enum Stage : uint8_t { Waiting, Resolving, Fetching, Sent } stage = Waiting;
    std::vector<Jid> devices;         // every device the message goes to (recipient's and our other ones)
    std::vector<Jid> fetching;        // devices whose bundles were asked for
    uint64_t created_ms = 0;
    int64_t unix_s = 0;               // when it was asked for (privacy token freshness)
    uint32_t retry_count = 0;         // a resend after a retry receipt: <enc count=N> to one device
    bool resend = false;
    // send-media: the spooled file until it is uploaded, then the message that carries it.
    SendRequest::Media media;
    enum MediaStage : uint8_t { NoMedia, NeedUpload, Uploading, Uploaded } media_stage = NoMedia;
    std::string media_key;
    std::string media_message;        // the serialized waproto::Message once uploaded
};

// ---- per-concern entry points (one file each) ----
namespace link {
bool start_handshake(Session::Ctx& c, const store::Credentials& creds, const SessionConfig& cfg, Actions& out,
                     std::string* err);
// Handles handshake bytes; `done` once ClientFinish went out and the transport is ready.
bool on_handshake_bytes(Session::Ctx& c, std::string_view payload, const store::Credentials& creds,
                        const SessionConfig& cfg, int64_t unix_s, Actions& out, std::string* err);
std::string client_payload(const store::Credentials& creds, const ClientProfile& profile);
int qr_platform_code(const ClientProfile& p);  // CompanionWebClientType digit in the QR string
}  // namespace link

namespace pair {
void on_pair_device(Session::Ctx& c, const Node& iq, uint64_t now_ms, Actions& out);
std::string qr_text(const store::Credentials& creds, const std::string& ref, const ClientProfile& profile);
// Returns false with *err when the pair-success fails its checks (an error iq has been written).
bool on_pair_success(Session::Ctx& c, const Node& iq, store::Credentials& creds, Actions& out, std::string* err);
bool request_code(Session::Ctx& c, const store::Credentials& creds, const ClientProfile& profile, uint64_t now_ms,
                  Actions& out, std::string* err);
bool on_code_notification(Session::Ctx& c, const Node& n, store::Credentials& creds, uint64_t now_ms, Actions& out,
                          std::string* err);
std::string make_code();  // 8 characters of the Crockford-like alphabet
}  // namespace pair

namespace login {
bool generate_prekeys(store::Credentials& creds, uint32_t count, std::vector<store::PreKey>& out);
Node prekey_upload_iq(const store::Credentials& creds, const std::vector<store::PreKey>& keys);
}  // namespace login

std::string be_bytes(uint32_t v, size_t n);  // big-endian, n bytes
uint32_t be_value(std::string_view b);        // big-endian, up to 4 bytes

}  // namespace wa
