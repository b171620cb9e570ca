// One organization's WhatsApp session, sans-IO: bytes, time and commands in; actions out.
// The nginx helper owns the sockets, the single timer and the store's transaction and carries out the
// actions; unit tests drive the same object with a fake clock.
//
// The session is a small router (whatsmeow client.go's shape): WebSocket payloads → Noise → binary nodes
// → a dispatch on tag into one file per concern: link (handshake, ClientPayload), pair (QR, pairing code,
// pair-success), login (success/failure, prekeys, passive), keepalive, iq (ids and deadlines).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wa/codec/binary.hpp"
#include "wa/codec/jid.hpp"
#include "wa/link/noise.hpp"
#include "wa/session/deadlines.hpp"
#include "wa/session/disconnect.hpp"
#include "wa/store/store.hpp"
#include "wa/webhook/events.hpp"

namespace waproto {
class Message;
}

namespace wa {

namespace signal {
class Account;
}

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

// What the phone's "Linked devices" list and the server see of us (directives whatsapp_client_version,
// whatsapp_browser), so an outdated version is fixed with a reload, not a rebuild.
struct ClientProfile {
    uint32_t version[3] = {2, 3000, 1047769893};
    std::string browser = "Chrome";   // DeviceProps.platformType and the QR's platform digit
    std::string os = "Mac OS";        // DeviceProps.os
};

struct SessionConfig {
    std::string server_url;                 // for messages only; the transport is the helper's
    std::string root_pub;                   // Noise certificate root (32 bytes); empty = WhatsApp's
    ClientProfile profile;
    uint64_t handshake_timeout_ms = 20000;  // B and W both wait 20 s for the server's hello
    uint64_t login_timeout_ms = 20000;      // ClientFinish → <success>/<failure>/pair-device
    uint64_t iq_timeout_ms = 30000;
    uint64_t keepalive_min_ms = 20000;      // whatsmeow keepalive.go: a ping every 20–30 s,
    uint64_t keepalive_max_ms = 30000;
    uint64_t ping_timeout_ms = 10000;       // answered within 10 s (a dead link is noticed within 40 s)
    uint64_t qr_first_ms = 60000;           // whatsmeow qrchan.go: the first of 6 refs is shown 60 s,
    uint64_t qr_next_ms = 20000;            // every later one 20 s (whatsapp_qr_refresh)
    uint32_t initial_prekeys = 812;         // whatsmeow prekeys.go: 812 on the first upload,
    uint32_t prekey_batch = 50;             // 50 per top-up,
    uint32_t min_prekeys = 5;               // when the server holds fewer than 5
    uint32_t prekeys_per_slice = 100;       // generated per event-loop turn (≈4 ms), never stalling the loop
    // How many of `want` keys this event-loop turn still allows, across every session of the process (the host
    // resets it each turn), so 100 organizations linking at once do not stall the others. Empty: no limit.
    std::function<uint32_t(uint32_t want)> work_budget;
    Backoff backoff;
    std::function<double()> random;         // [0,1) for jitter; tests inject a fixed one
    noise::Verify verify;                   // XEdDSA verify (wa::xeddsa_verify); tests may inject
    webhook::Router webhooks;               // empty: no webhook events are stored
};

// What the session asks its host to do. Each call returns the actions in order.
struct Action {
    enum Kind : uint8_t {
        Connect,         // open TCP → TLS → WebSocket to the server
        Close,           // close the transport (WebSocket close code in `code`)
        Write,           // send `bytes` as one binary WebSocket message; `durable`: commit the store first
        SetTimer,        // (re)arm the session's single timer at `at_ms` (monotonic ms)
        CancelTimer,
        Publish,         // the status changed: copy status() to shared memory
        Complete,        // finish command `command_id` with HTTP `code` and JSON `bytes`
        Partial,         // what is known of command `command_id` before it completes (`bytes`: a message id)
        Upload,          // encrypt the spool file of `upload` and POST it to the media host; answer with
                         // Session::on_upload_done (send-media, issue 13)
        Download,        // fetch, verify and store the document or image of a received message (`download`)
    } kind;
    uint16_t code = 0;
    uint64_t at_ms = 0;
    std::string bytes;
    bool durable = false;
    uint64_t command_id = 0;
    uint32_t retry_after_s = 0;  // Complete: the Retry-After header (429)
    struct UploadSpec {
        std::string job_id;       // give back to on_upload_done
        std::string spool;        // the spool file's name (the helper's spool directory)
        std::string host;         // media host from media_conn ("mmg.whatsapp.net", "127.0.0.1:PORT")
        std::string auth;         // media_conn auth (a secret: never logged)
        std::string mms_type;     // "document", "image"
        std::string media_key;    // 32 random bytes (a secret: never logged)
        uint8_t media_type = 0;   // wa::media::Type
        uint64_t size = 0;        // the plaintext's length as the worker spooled it
    };
    std::shared_ptr<const UploadSpec> upload;
    struct DownloadSpec {
        std::string message_id;
        std::string host;         // media host from media_conn (never the sender's url: whatsmeow download.go)
        std::string direct_path;  // starts with '/'
        std::string media_key, file_enc_sha256, file_sha256;  // 32 bytes each (secrets: never logged)
        uint64_t file_length = 0;
        uint8_t media_type = 0;   // wa::media::Type
        std::string mimetype, filename;
    };
    std::shared_ptr<const DownloadSpec> download;

    Action(Kind k, uint16_t c = 0, uint64_t at = 0, std::string b = {})
        : kind(k), code(c), at_ms(at), bytes(std::move(b)) {}
};
using Actions = std::vector<Action>;

// A send-message command, validated by the worker (../shared/spec/http-api.md).
struct SendRequest {
    std::string phone;            // E.164 digits, or empty when `jid` is given
    std::string jid;              // send to this JID as given (a sender known only by its LID)
    std::string text;             // the text; for media, the caption
    std::string idempotency_key;  // optional
    std::string body_hash;        // SHA-256 of the request's meaning (to, text): a reused key must match it
    // POST /api/send-media: a file the worker spooled (empty `spool`: a text message).
    struct Media {
        std::string spool;        // file name in the spool directory
        uint8_t type = 0;         // wa::media::Type (Document or Image)
        std::string filename, mimetype;
        uint64_t size = 0;
    } media;
};

// What the helper reports after an upload (Action::Upload).
struct UploadResult {
    bool ok = false;
    std::string code, error;      // when !ok: "upload_failed", "upload_timeout", ... and why (no secrets)
    std::string url, direct_path;
    std::string file_sha256, file_enc_sha256;  // raw 32 bytes each
    uint64_t file_length = 0;
    uint32_t width = 0, height = 0;            // images, when the header says
    std::string jpeg_thumbnail;                // images: a small JPEG (wa/media/thumbnail.hpp), may be empty
    uint32_t page_count = 0;                   // PDFs, when certain (wa/media/pdf.hpp); 0 = not given
};

struct SessionStatus {
    State state = State::Disconnected;
    std::string phone;       // E.164 digits, once linked
    std::string qr_text;     // the pairing string while qr_ready
    uint64_t qr_expires_ms = 0;  // monotonic deadline of the current QR ref
    std::string last_error;  // empty = null
    uint32_t retry_count = 0;
    int64_t connected_at = 0;   // unix seconds, 0 = never
    int64_t state_since = 0;    // unix seconds of the last state change
    int64_t next_retry_at = 0;  // unix seconds, while reconnecting
    bool wanted = false;        // start-session was asked for and not undone (restored after restarts)
    bool linked = false;        // credentials with a device JID exist
    int64_t restricted_until = 0;  // unix seconds: WhatsApp restricts new sends (463, reach-out timelock)
};

class Session {
public:
    // `store` may be null (unit tests of the state machine alone): then nothing is kept.
    Session(SessionConfig cfg, std::string org = {}, store::Store* store = nullptr);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Commands (from the HTTP API through the helper). now_ms is monotonic, unix_s wall clock.
    Actions start(uint64_t now_ms, int64_t unix_s);
    // Unlinks on the server when online (remove-companion-device), then forgets the credentials. The
    // answer comes as Action::Complete for `command_id` (0: nobody waits).
    Actions logout(uint64_t now_ms, int64_t unix_s, uint64_t command_id = 0);
    Actions clear(uint64_t now_ms, int64_t unix_s);
    Actions shutdown(uint64_t now_ms, int64_t unix_s);  // helper quitting: close, keep `wanted`
    // Link by code instead of QR (link_code_companion_reg): answered with Complete {"code":"ABCD-1234"}.
    Actions pairing_code(uint64_t now_ms, int64_t unix_s, std::string phone_digits, uint64_t command_id);

    // POST /api/send-message: answered (Complete) once WhatsApp's server acknowledged the message, or failed.
    Actions send(uint64_t now_ms, int64_t unix_s, const SendRequest& req, uint64_t command_id);
    // The helper finished (or failed) the upload of Action::Upload for `job_id`.
    Actions on_upload_done(uint64_t now_ms, int64_t unix_s, const std::string& job_id, const UploadResult& r);
    // GET /api/messages/:org/:id, GET /api/messages/:org, GET /api/contacts/:org/:phone.
    Actions message_status(uint64_t now_ms, const std::string& id, uint64_t command_id);
    Actions list_messages(uint64_t now_ms, const std::string& direction, size_t limit, const std::string& cursor,
                          uint64_t command_id);
    Actions contact_info(uint64_t now_ms, int64_t unix_s, const std::string& phone, uint64_t command_id);

    // Transport events.
    Actions on_transport_open(uint64_t now_ms, int64_t unix_s);  // WebSocket upgraded
    Actions on_message(uint64_t now_ms, int64_t unix_s, std::string_view payload);
    Actions on_transport_error(uint64_t now_ms, int64_t unix_s, const Disconnect& why);
    Actions on_timer(uint64_t now_ms, int64_t unix_s);

    const SessionStatus& status() const { return status_; }
    // After a restart: the stored org row (wanted, phone) and credentials if any.
    void restore(const store::OrgRecord& rec);
    bool busy() const { return phase_ != Phase::Idle && phase_ != Phase::BackingOff; }
    // Writes the organization's row now, changed or not: a start-session's answer says the session is stored,
    // and an earlier one whose commit failed (507) must not make a later one skip the write.
    void save() { persist_org(); }

    // Test seams.
    const store::Credentials* credentials() const { return creds_.get(); }
    struct Stats {
        uint64_t frames_in = 0, frames_out = 0, pings = 0, prekeys_uploaded = 0;
        uint64_t messages_sent = 0, messages_received = 0, receipts_in = 0, retry_receipts_sent = 0;
        // For the metrics (issue 10); the helper copies the deltas into shared memory.
        uint64_t messages_delivered = 0, messages_read = 0;          // receipts that advanced a message
        std::map<std::string, uint64_t> messages_failed;             // by error code ("463") or failure code
        std::array<uint64_t, kDisconnectKinds> reconnects{};         // links ended and retried, by kind
    };
    const Stats& stats() const { return stats_; }

    // Internal: the per-concern files (src/core/session/*.cpp) share this context.
    struct Ctx;

private:
    enum class Phase : uint8_t { Idle, Dialing, Handshaking, Registering, LoggingIn, Online, BackingOff };
    friend struct Ctx;
    Actions finish(Actions out, uint64_t now_ms);  // arms the timer at the earliest deadline
    void set_state(State s, int64_t unix_s, Actions& out);
    void persist_org();
    void emit(std::string_view type, const std::string& data, int64_t unix_s);  // a webhook event
    void end_link(uint64_t now_ms, int64_t unix_s, const Disconnect& why, Actions& out);
    void schedule_retry(uint64_t now_ms, int64_t unix_s, std::string_view why, uint64_t delay_ms, Actions& out);
    void reset_link();
    double random();
    bool ensure_credentials(std::string* err);
    void dispatch(uint64_t now_ms, int64_t unix_s, const Node& node, Actions& out);
    void on_deadline(uint64_t now_ms, int64_t unix_s, Deadlines::Kind kind, const std::string& key, Actions& out);
    void on_iq_result(uint64_t now_ms, int64_t unix_s, const Node& iq, Actions& out);
    void on_notification(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out);
    // pair.cpp
    void on_qr_refs(uint64_t now_ms, int64_t unix_s, Actions& out);
    void on_pair_success(uint64_t now_ms, int64_t unix_s, const Node& iq, Actions& out);
    void issue_pairing_code(uint64_t now_ms, int64_t unix_s, Actions& out);
    // login.cpp
    void on_login_success(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out);
    void begin_prekey_upload(uint64_t now_ms, uint32_t count, Actions& out);
    void continue_prekey_upload(uint64_t now_ms, Actions& out);
    void send_ping(uint64_t now_ms, Actions& out);
    void schedule_keepalive(uint64_t now_ms);
    void finish_unlink(uint64_t now_ms, int64_t unix_s, bool on_server, Actions& out);
    // send.cpp
    struct SendJob;
    void open_signal();
    void start_job(uint64_t now_ms, SendJob& job, Actions& out);
    void on_usync(uint64_t now_ms, int64_t unix_s, const std::string& job_id, const Node& iq, Actions& out);
    void on_prekeys(uint64_t now_ms, int64_t unix_s, const std::string& job_id, const Node& iq, Actions& out);
    void encrypt_and_send(uint64_t now_ms, SendJob& job, Actions& out);
    void on_message_ack(uint64_t now_ms, int64_t unix_s, const Node& ack, Actions& out);
    void fail_job(const std::string& id, int http, const std::string& code, const std::string& why, int error_code,
                  Actions& out);
    void resume_jobs(uint64_t now_ms, Actions& out);
    void complete(uint64_t command_id, int http, std::string body, Actions& out);
    void on_contact_usync(uint64_t command_id, const Node& iq, Actions& out);
    // media.cpp
    void start_media_job(uint64_t now_ms, SendJob& job, Actions& out);
    void emit_upload(SendJob& job, Actions& out);
    void queue_download(uint64_t now_ms, const std::string& id, const waproto::Message& m, Actions& out);
    void fail_media_waiting(const std::string& code, const std::string& why, Actions& out);
    Actions resume_media(uint64_t now_ms, int64_t unix_s, const SendRequest& req, uint64_t command_id,
                         const store::MessageRecord& m, Actions out);
    static std::string media_record_type(uint8_t type);
    static std::string_view media_enc_type(uint8_t type);
    void on_media_conn(uint64_t now_ms, const Node& iq, bool ok, Actions& out);
    // receive.cpp
    void on_receipt(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out);
    void on_retry_receipt(uint64_t now_ms, const Node& n, Actions& out);
    void on_incoming_message(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out);
    bool alternate_address(const Jid& from, Jid& out);
    // privacy.cpp
    std::string token_storage_jid(const Jid& user);
    void on_privacy_tokens(int64_t unix_s, const Node& n);
    std::string privacy_token_for(const Jid& dest, int64_t unix_s);
    void maybe_issue_token(uint64_t now_ms, int64_t unix_s, const Jid& dest, Actions& out);
    void on_mex(int64_t unix_s, const Node& n, Actions& out);

    SessionConfig cfg_;
    std::string org_;
    store::Store* store_;
    SessionStatus status_;
    Phase phase_ = Phase::Idle;
    Deadlines deadlines_;
    uint64_t armed_at_ = 0;
    std::unique_ptr<store::Credentials> creds_;
    std::unique_ptr<Ctx> ctx_;  // per-connection protocol state (handshake, transport, iq table, QR refs)
    std::unique_ptr<signal::Account> signal_;  // the organization's Signal sessions, opened at login
    std::map<std::string, std::unique_ptr<SendJob>> jobs_;  // outgoing messages until the server's ack
    std::map<std::string, std::unique_ptr<SendJob>> retry_jobs_;  // resends to one device (retry receipts)
    std::map<std::string, uint32_t> retries_sent_;          // incoming message id -> retry receipts sent
    std::map<std::string, uint32_t> resends_;               // "msgid/device" -> resends after retry receipts
    // media_conn (whatsmeow mediaconn.go): cached until its ttl; jobs wait for the one iq in flight.
    struct MediaConn {
        std::string auth, host;
        uint64_t expires_ms = 0;
        std::string asking;                // the id of the iq in flight
        std::vector<std::string> waiting;  // job ids
        std::vector<std::shared_ptr<Action::DownloadSpec>> downloads;  // received media waiting for a host
    } media_conn_;
    // A pairing-code request waiting for the registration's pair-device (phone digits, command id).
    std::string code_phone_;
    uint64_t code_command_ = 0;
    Stats stats_;
};

}  // namespace wa
