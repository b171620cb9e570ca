// One organization's Signal protocol state: libsignal-protocol-c's stores bridged onto wa::store::Store,
// sessions from prekey bundles, and 1:1 encryption and decryption (pkmsg / msg). No nginx types; no
// exception leaves a public function. Only the helper's thread may use an Account (libsignal calls its
// stores synchronously, and wa::crypto::signal_ctx() has no locking).
//
// Durability: every write goes straight to the Store (write-through), inside whatever transaction the
// caller has open (the helper's group commit). Session records are also kept in memory, per address, so
// that repeated encryptions do not read SQLite again. If the caller's transaction is rolled back (a
// failed commit), call drop_cache(): the cache may hold states the database no longer has. For the same
// reason, session rows of the organization must not be written behind the Account's back (another
// writer, a PN → LID migration done on the Store directly) without a drop_cache() afterwards; "no session"
// is cached too.
//
// Identity trust follows whatsmeow: trust on first use; a changed identity is not trusted by the store
// (store/sqlstore/store.go IsTrustedIdentity compares with the saved key), but the client, with
// AutoTrustIdentity on (its default, client.go), clears the stored identity and the session and retries
// (message.go decryptDM / send.go encryptMessageForDevice → clearUntrustedIdentity). The result is a silent
// replacement of the identity, reported here as identity_changed = true. With auto_trust off the
// operation fails with Result::UntrustedIdentity instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "wa/signal/address.hpp"
#include "wa/signal/bundle.hpp"
#include "wa/store/store.hpp"

namespace wa::signal {

// What went wrong, so that the messages layer can decide between a retry receipt, a nack and a log line.
enum class Result : uint8_t {
    Ok = 0,
    NoSession,          // no session with that address (a msg before any pkmsg, an encrypt before a bundle)
    BadMac,             // a well-formed message that no session state authenticates ("Bad MAC", "No valid
                        // sessions", a counter too far ahead): WhatsApp answers with a retry receipt
    InvalidMessage,     // not a Signal message of the given type (protobuf, version or key malformed)
    Duplicate,          // the message key was used already: a replay, or a message decrypted before
    UntrustedIdentity,  // the peer's identity changed and auto_trust is off
    InvalidPreKeyId,    // a pkmsg names a one-time or signed prekey we do not have (used already, never made)
    InvalidBundle,      // a bundle with a malformed key or a bad signed-prekey signature
    StoreFailed,        // wa::store::Store failed (see last_error()); not the peer's fault
    Internal,           // anything else (out of memory, libsignal internal error)
};
const char* result_name(Result r);  // "ok", "no_session", "bad_mac", ...

// The <enc type> of a 1:1 message.
enum class EncType : uint8_t { Msg, PkMsg };
const char* enc_type_name(EncType t);  // "msg" | "pkmsg"
bool parse_enc_type(std::string_view s, EncType& out);

struct Encrypted {
    EncType type = EncType::Msg;  // pkmsg while the peer has not answered yet (a PreKeySignalMessage)
    std::string ciphertext;       // the serialized CiphertextMessage, the <enc> content
};

struct Decrypted {
    std::string plaintext;          // still padded (see wa/signal/plaintext.hpp unpad_message)
    bool identity_changed = false;  // the sender's identity was replaced (auto_trust)
    uint32_t prekey_used = 0;       // the one-time prekey this pkmsg consumed (removed from the store), 0 if none
};

struct AccountOptions {
    bool auto_trust = true;             // whatsmeow's AutoTrustIdentity default
    size_t max_cached_sessions = 4096;  // least recently used session records beyond this are dropped
};

class Account {
public:
    // From the organization's stored credentials (identity, registration id, signed prekey). nullptr with
    // *err when there are none or they are unusable.
    static std::unique_ptr<Account> open(store::Store& store, std::string org, std::string* err = nullptr,
                                         AccountOptions opts = {});
    // From credentials the caller already holds (the session has them in memory).
    static std::unique_ptr<Account> create(store::Store& store, std::string org, const store::Credentials& creds,
                                           std::string* err = nullptr, AccountOptions opts = {});
    ~Account();
    Account(const Account&) = delete;
    Account& operator=(const Account&) = delete;

    // X3DH from a peer's bundle (session_pre_key_bundle_create + session_builder_process_pre_key_bundle):
    // the next encrypt to `to` gives a pkmsg. An existing session with `to` is archived, as libsignal does.
    Result build_session(const Address& to, const PreKeyBundle& bundle, bool* identity_changed = nullptr);

    // Encrypts `plaintext` (already padded, see plaintext.hpp) for `to`. NoSession when there is none.
    Result encrypt(const Address& to, std::string_view plaintext, Encrypted& out);

    // Decrypts an <enc> from `from`. A pkmsg builds (or re-finds) the session and consumes the one-time
    // prekey it names (removed from the store); a msg needs an existing session.
    Result decrypt(const Address& from, EncType type, std::string_view ciphertext, Decrypted& out);

    bool has_session(const Address& a);
    Result delete_session(const Address& a);

    // Our own bundle, with `prekey` as the one-time prekey if given (for <keys> in retry receipts, tests).
    PreKeyBundle own_bundle(const store::PreKey* prekey = nullptr) const;

    // Forget the in-memory session records (after the caller's transaction was rolled back).
    void drop_cache();

    // The text of the last failure (store error, libsignal code), for logs.
    const std::string& last_error() const;

    struct Stats {
        uint64_t session_loads = 0;   // libsignal asked for a session record
        uint64_t store_reads = 0;     // ... of which were read from the Store (cache misses)
        uint64_t session_writes = 0;  // records written through to the Store
    };
    const Stats& stats() const;
    size_t cached_sessions() const;

    struct Impl;

private:
    explicit Account(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace wa::signal
