// wa::signal::Account: libsignal-protocol-c's store callbacks on wa::store::Store, with an LRU cache of
// serialized session records, and the session builder / cipher calls of 1:1 messaging.
//
// libsignal-c hands records to its stores serialized and reads them back serialized, so the cache keeps the
// bytes libsignal gave us: a load is one copy into a signal_buffer (no SQLite), a store one copy out and one
// UPSERT (write-through, inside the caller's transaction). Nothing is re-serialized on our side.
//
// Store layout (wa::store::Store): sessions and identities keyed by "name.device"; identities as the raw
// 32-byte key (whatsmeow keeps 32 bytes too, store/signal.go SaveIdentity); the one-time prekeys are the
// link layer's rows (load_prekey / remove_prekey); identity, registration id and signed prekey come from
// the Credentials (whatsmeow store/signal.go: LoadSignedPreKey only knows the current signed prekey).
#include "wa/signal/account.hpp"

#include <signal/curve.h>
#include <signal/key_helper.h>
#include <signal/protocol.h>
#include <signal/session_builder.h>
#include <signal/session_cipher.h>
#include <signal/session_pre_key.h>
#include <signal/signal_protocol.h>

#include <openssl/crypto.h>

#include <cstring>
#include <list>
#include <new>
#include <unordered_map>
#include <vector>

#include "wa/crypto/keys.hpp"

namespace wa::signal {

const char* result_name(Result r) {
    switch (r) {
    case Result::Ok: return "ok";
    case Result::NoSession: return "no_session";
    case Result::BadMac: return "bad_mac";
    case Result::InvalidMessage: return "invalid_message";
    case Result::Duplicate: return "duplicate";
    case Result::UntrustedIdentity: return "untrusted_identity";
    case Result::InvalidPreKeyId: return "invalid_prekey_id";
    case Result::InvalidBundle: return "invalid_bundle";
    case Result::StoreFailed: return "store_failed";
    case Result::Internal: return "internal";
    }
    return "internal";
}

const char* enc_type_name(EncType t) { return t == EncType::PkMsg ? "pkmsg" : "msg"; }

bool parse_enc_type(std::string_view s, EncType& out) {
    if (s == "msg") {
        out = EncType::Msg;
        return true;
    }
    if (s == "pkmsg") {
        out = EncType::PkMsg;
        return true;
    }
    return false;
}

namespace {

// RAII for libsignal's reference-counted objects and buffers.
template <class T>
struct Ref {
    T* p = nullptr;
    Ref() = default;
    Ref(const Ref&) = delete;
    Ref& operator=(const Ref&) = delete;
    ~Ref() {
        if (p) SIGNAL_UNREF(p);
    }
    T** out() { return &p; }
    T* get() const { return p; }
};

struct Buffer {
    signal_buffer* p = nullptr;
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { signal_buffer_bzero_free(p); }
};

const uint8_t* u8(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

std::string with_type_byte(std::string_view raw32) {
    std::string s(1, '\x05');
    s.append(raw32.data(), raw32.size());
    return s;
}

int decode_public(std::string_view raw32, ec_public_key** out) {
    if (raw32.size() != 32) return SG_ERR_INVALID_KEY;
    std::string k = with_type_byte(raw32);
    return curve_decode_point(out, u8(k), k.size(), crypto::signal_ctx());
}

std::string key_of(const signal_protocol_address* a) {
    std::string s(a->name, a->name_len);
    s += '.';
    s += std::to_string(a->device_id);
    return s;
}

// A session_pre_key record (libsignal's PreKeyRecordStructure) for one of the link layer's prekeys.
int serialize_prekey(uint32_t id, const std::string& pub, const std::string& priv, signal_buffer** out) {
    Ref<ec_public_key> pk;
    Ref<ec_private_key> sk;
    Ref<ec_key_pair> kp;
    Ref<session_pre_key> rec;
    int rc = decode_public(pub, pk.out());
    if (rc < 0) return rc;
    if (priv.size() != 32) return SG_ERR_INVALID_KEY;
    rc = curve_decode_private_point(sk.out(), u8(priv), priv.size(), crypto::signal_ctx());
    if (rc < 0) return rc;
    rc = ec_key_pair_create(kp.out(), pk.get(), sk.get());
    if (rc < 0) return rc;
    rc = session_pre_key_create(rec.out(), id, kp.get());
    if (rc < 0) return rc;
    return session_pre_key_serialize(out, rec.get());
}

}  // namespace

struct Account::Impl {
    store::Store& store;
    std::string org;
    AccountOptions opts;
    signal_protocol_store_context* sctx = nullptr;

    std::string identity_pub;  // 32 raw
    std::string identity_priv;
    uint32_t registration_id = 0;
    uint32_t signed_prekey_id = 0;
    std::string signed_prekey_pub, signed_prekey_sig;
    std::string signed_prekey_record;  // serialized session_signed_pre_key, made once

    // LRU of session records by "name.device". found = false caches "no session" too.
    struct Entry {
        bool found = false;
        std::string record;
        std::list<std::string>::iterator lru;
    };
    std::unordered_map<std::string, Entry> cache;
    std::list<std::string> lru;  // most recently used first

    // Auto-trust retry: the one address whose changed identity is accepted during the retry.
    std::string trust_override;
    bool store_failed = false;
    uint32_t removed_prekey = 0;
    std::string last_error;
    Stats stats;

    Impl(store::Store& s, std::string o, AccountOptions op) : store(s), org(std::move(o)), opts(op) {
        if (opts.max_cached_sessions == 0) opts.max_cached_sessions = 1;  // the record in use stays cached
    }
    ~Impl() {
        if (sctx) signal_protocol_store_context_destroy(sctx);
        if (!identity_priv.empty()) OPENSSL_cleanse(&identity_priv[0], identity_priv.size());
        if (!signed_prekey_record.empty()) OPENSSL_cleanse(&signed_prekey_record[0], signed_prekey_record.size());
    }

    void fail_store(const std::string& what, const std::string& err) {
        store_failed = true;
        try {
            last_error = what + ": " + err;
        } catch (...) {
        }
    }

    // ---- session cache ----
    Entry* lookup(const std::string& key) {
        auto it = cache.find(key);
        if (it == cache.end()) return nullptr;
        lru.splice(lru.begin(), lru, it->second.lru);
        return &it->second;
    }

    void remember(const std::string& key, bool found, const uint8_t* data, size_t len) {
        Entry& e = slot(key);
        e.found = found;
        if (found)
            e.record.assign(reinterpret_cast<const char*>(data), len);
        else
            e.record.clear();
        trim();
    }
    void remember(const std::string& key, std::string&& record) {
        Entry& e = slot(key);
        e.found = true;
        e.record = std::move(record);
        trim();
    }
    // The entry for `key`, created if needed, made the most recently used.
    Entry& slot(const std::string& key) {
        auto it = cache.find(key);
        if (it == cache.end()) {
            lru.push_front(key);
            try {
                it = cache.emplace(key, Entry{}).first;
            } catch (...) {
                lru.pop_front();
                throw;
            }
            it->second.lru = lru.begin();
        } else {
            lru.splice(lru.begin(), lru, it->second.lru);
        }
        return it->second;
    }
    void trim() {
        while (cache.size() > opts.max_cached_sessions && !lru.empty()) {
            cache.erase(lru.back());
            lru.pop_back();
        }
    }

    void forget(const std::string& key) {
        auto it = cache.find(key);
        if (it == cache.end()) return;
        lru.erase(it->second.lru);
        cache.erase(it);
    }

    // Loads into the cache (from the Store on a miss). nullptr on a store error.
    Entry* fetch(const std::string& key) {
        if (Entry* e = lookup(key)) return e;
        std::string rec, err;
        bool found = false;
        stats.store_reads++;
        if (!store.load_session(org, key, rec, found, &err)) {
            fail_store("load_session " + key, err);
            return nullptr;
        }
        if (found)
            remember(key, std::move(rec));
        else
            remember(key, false, nullptr, 0);
        return lookup(key);
    }

    Result map(int rc, bool bundle) {
        if (store_failed) return Result::StoreFailed;
        if (rc >= 0) return Result::Ok;
        if (last_error.empty()) last_error = "libsignal error " + std::to_string(rc);
        switch (rc) {
        case SG_ERR_NO_SESSION: return Result::NoSession;
        case SG_ERR_INVALID_MESSAGE:
        case SG_ERR_INVALID_MAC: return Result::BadMac;
        case SG_ERR_INVALID_PROTO_BUF:
        case SG_ERR_INVALID_VERSION:
        case SG_ERR_LEGACY_MESSAGE: return Result::InvalidMessage;
        case SG_ERR_INVALID_KEY: return bundle ? Result::InvalidBundle : Result::InvalidMessage;
        case SG_ERR_DUPLICATE_MESSAGE: return Result::Duplicate;
        case SG_ERR_UNTRUSTED_IDENTITY: return Result::UntrustedIdentity;
        case SG_ERR_INVALID_KEY_ID: return Result::InvalidPreKeyId;
        default: return Result::Internal;
        }
    }

    void begin_op() {
        store_failed = false;
        removed_prekey = 0;
        last_error.clear();
    }
};

// ---- libsignal store callbacks (user_data = Impl*) ---------------------------------------------------

namespace {

using Impl = Account::Impl;
Impl* I(void* u) { return static_cast<Impl*>(u); }

// Every callback catches: libsignal is C, nothing may unwind through it.
template <class F>
int guarded(Impl* impl, F&& f) noexcept {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return SG_ERR_NOMEM;
    } catch (...) {
        impl->last_error = "exception in a store callback";
        return SG_ERR_UNKNOWN;
    }
}

int load_session(signal_buffer** record, signal_buffer** user_record, const signal_protocol_address* a, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        *user_record = nullptr;
        impl->stats.session_loads++;
        Impl::Entry* e = impl->fetch(key_of(a));
        if (!e) return SG_ERR_UNKNOWN;
        if (!e->found) return 0;
        *record = signal_buffer_create(u8(e->record), e->record.size());
        return *record ? 1 : SG_ERR_NOMEM;
    });
}

int sub_device_sessions(signal_int_list** sessions, const char* name, size_t name_len, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        std::vector<uint32_t> devices;
        std::string err;
        if (!impl->store.session_devices(impl->org, std::string(name, name_len), devices, &err)) {
            impl->fail_store("session_devices", err);
            return SG_ERR_UNKNOWN;
        }
        signal_int_list* list = signal_int_list_alloc();
        if (!list) return SG_ERR_NOMEM;
        for (uint32_t d : devices) {
            if (signal_int_list_push_back(list, static_cast<int>(d)) < 0) {
                signal_int_list_free(list);
                return SG_ERR_NOMEM;
            }
        }
        *sessions = list;
        return static_cast<int>(devices.size());
    });
}

int store_session(const signal_protocol_address* a, uint8_t* record, size_t len, uint8_t*, size_t, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        std::string key = key_of(a);
        std::string err, rec(reinterpret_cast<const char*>(record), len);
        impl->stats.session_writes++;
        if (!impl->store.put_session(impl->org, key, rec, &err)) {
            impl->forget(key);  // the next load re-reads whatever the database has
            impl->fail_store("put_session " + key, err);
            return SG_ERR_UNKNOWN;
        }
        impl->remember(key, std::move(rec));  // the one copy of libsignal's bytes moves into the cache
        return 0;
    });
}

int contains_session(const signal_protocol_address* a, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        Impl::Entry* e = impl->fetch(key_of(a));
        if (!e) return SG_ERR_UNKNOWN;
        return e->found ? 1 : 0;
    });
}

int delete_session_cb(const signal_protocol_address* a, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        std::string key = key_of(a), err;
        impl->forget(key);
        if (!impl->store.delete_session(impl->org, key, &err)) {
            impl->fail_store("delete_session " + key, err);
            return SG_ERR_UNKNOWN;
        }
        impl->remember(key, false, nullptr, 0);
        return 1;
    });
}

int delete_all_sessions(const char* name, size_t name_len, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        std::string n(name, name_len), err;
        std::vector<uint32_t> devices;
        if (!impl->store.session_devices(impl->org, n, devices, &err)) {
            impl->fail_store("session_devices", err);
            return SG_ERR_UNKNOWN;
        }
        for (uint32_t d : devices) {
            std::string key = n + "." + std::to_string(d);
            impl->forget(key);
            if (!impl->store.delete_session(impl->org, key, &err)) {
                impl->fail_store("delete_session " + key, err);
                return SG_ERR_UNKNOWN;
            }
        }
        return static_cast<int>(devices.size());
    });
}

int load_pre_key(signal_buffer** record, uint32_t id, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        store::PreKey k;
        bool found = false;
        std::string err;
        if (!impl->store.load_prekey(impl->org, id, k, found, &err)) {
            impl->fail_store("load_prekey", err);
            return SG_ERR_UNKNOWN;
        }
        if (!found) {
            impl->last_error = "no prekey " + std::to_string(id);
            return SG_ERR_INVALID_KEY_ID;
        }
        int rc = serialize_prekey(k.id, k.pub, k.priv, record);
        OPENSSL_cleanse(&k.priv[0], k.priv.size());
        return rc < 0 ? rc : SG_SUCCESS;
    });
}

// Prekeys are generated and stored by the link layer (login.cpp), never by libsignal.
int store_pre_key(uint32_t, uint8_t*, size_t, void*) { return SG_ERR_UNKNOWN; }

int contains_pre_key(uint32_t id, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        store::PreKey k;
        bool found = false;
        std::string err;
        if (!impl->store.load_prekey(impl->org, id, k, found, &err)) {
            impl->fail_store("load_prekey", err);
            return SG_ERR_UNKNOWN;
        }
        if (!k.priv.empty()) OPENSSL_cleanse(&k.priv[0], k.priv.size());
        return found ? 1 : 0;
    });
}

int remove_pre_key(uint32_t id, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        std::string err;
        if (!impl->store.remove_prekey(impl->org, id, &err)) {
            impl->fail_store("remove_prekey", err);
            return SG_ERR_UNKNOWN;
        }
        impl->removed_prekey = id;
        return 0;
    });
}

// whatsmeow store/signal.go LoadSignedPreKey: only the device's current signed prekey exists.
int load_signed_pre_key(signal_buffer** record, uint32_t id, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        if (id != impl->signed_prekey_id) {
            impl->last_error = "no signed prekey " + std::to_string(id);
            return SG_ERR_INVALID_KEY_ID;
        }
        *record = signal_buffer_create(u8(impl->signed_prekey_record), impl->signed_prekey_record.size());
        return *record ? SG_SUCCESS : SG_ERR_NOMEM;
    });
}

int store_signed_pre_key(uint32_t, uint8_t*, size_t, void*) { return SG_ERR_UNKNOWN; }
int contains_signed_pre_key(uint32_t id, void* u) { return id == I(u)->signed_prekey_id ? 1 : 0; }
int remove_signed_pre_key(uint32_t, void*) { return SG_ERR_UNKNOWN; }

int get_identity_key_pair(signal_buffer** pub, signal_buffer** priv, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        std::string p = with_type_byte(impl->identity_pub);
        *pub = signal_buffer_create(u8(p), p.size());
        *priv = signal_buffer_create(u8(impl->identity_priv), impl->identity_priv.size());
        if (!*pub || !*priv) {
            signal_buffer_free(*pub);
            signal_buffer_bzero_free(*priv);
            *pub = *priv = nullptr;
            return SG_ERR_NOMEM;
        }
        return 0;
    });
}

int get_local_registration_id(void* u, uint32_t* id) {
    *id = I(u)->registration_id;
    return 0;
}

// The peer's identity as 32 raw bytes (libsignal hands over the 33-byte serialized key).
bool raw_identity(const uint8_t* data, size_t len, std::string& out) {
    if (len == 33 && data[0] == 0x05) {
        out.assign(reinterpret_cast<const char*>(data) + 1, 32);
        return true;
    }
    if (len == 32) {
        out.assign(reinterpret_cast<const char*>(data), 32);
        return true;
    }
    return false;
}

int save_identity(const signal_protocol_address* a, uint8_t* key, size_t len, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        if (!key) return 0;  // "forget": the Store keeps identities until logout
        std::string raw, old, err, addr = key_of(a);
        if (!raw_identity(key, len, raw)) return SG_ERR_INVALID_KEY;
        bool found = false;
        if (!impl->store.load_identity(impl->org, addr, old, found, &err)) {
            impl->fail_store("load_identity", err);
            return SG_ERR_UNKNOWN;
        }
        if (found && old == raw) return 0;
        if (!impl->store.put_identity(impl->org, addr, raw, &err)) {
            impl->fail_store("put_identity", err);
            return SG_ERR_UNKNOWN;
        }
        return 0;
    });
}

// whatsmeow store/sqlstore/store.go IsTrustedIdentity: trusted when unknown or equal to the saved key.
int is_trusted_identity(const signal_protocol_address* a, uint8_t* key, size_t len, void* u) {
    Impl* impl = I(u);
    return guarded(impl, [&] {
        std::string raw, old, err, addr = key_of(a);
        if (!raw_identity(key, len, raw)) return 0;
        if (!impl->trust_override.empty() && impl->trust_override == addr) return 1;
        bool found = false;
        if (!impl->store.load_identity(impl->org, addr, old, found, &err)) {
            impl->fail_store("load_identity", err);
            return SG_ERR_UNKNOWN;
        }
        return !found || old.size() != 32 || crypto::constant_time_equal(old, raw) ? 1 : 0;
    });
}

// Sender keys (groups) have no table in wa::store::Store yet: loads find nothing and stores fail, so a
// group message fails loudly instead of keeping keys that would not survive a restart.
int store_sender_key(const signal_protocol_sender_key_name*, uint8_t*, size_t, uint8_t*, size_t, void* u) {
    I(u)->last_error = "sender keys are not supported by the store";
    return SG_ERR_UNKNOWN;
}
int load_sender_key(signal_buffer** record, signal_buffer** user_record, const signal_protocol_sender_key_name*,
                    void*) {
    *record = nullptr;
    *user_record = nullptr;
    return 0;
}

// The signal_protocol_address libsignal wants (it keeps the pointer only for the call).
struct CAddress {
    signal_protocol_address a;
    explicit CAddress(const Address& ad) {
        a.name = ad.name.c_str();
        a.name_len = ad.name.size();
        a.device_id = static_cast<int32_t>(ad.device);
    }
};

}  // namespace

// ---- Account ---------------------------------------------------------------------------------------------

Account::Account(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Account::~Account() = default;

std::unique_ptr<Account> Account::open(store::Store& store, std::string org, std::string* err, AccountOptions opts) {
    try {
        store::Credentials c;
        bool found = false;
        std::string e;
        if (!store.load_credentials(org, c, found, &e)) {
            if (err) *err = e;
            return nullptr;
        }
        if (!found) {
            if (err) *err = "no credentials for " + org;
            return nullptr;
        }
        return create(store, std::move(org), c, err, opts);
    } catch (const std::bad_alloc&) {
        if (err) *err = "out of memory";
        return nullptr;
    }
}

std::unique_ptr<Account> Account::create(store::Store& store, std::string org, const store::Credentials& creds,
                                         std::string* err, AccountOptions opts) {
    try {
        auto fail = [&](const std::string& why) {
            if (err) *err = why;
            return std::unique_ptr<Account>();
        };
        if (creds.identity_pub.size() != 32 || creds.identity_priv.size() != 32)
            return fail("credentials: identity key is not 32 bytes");
        if (creds.signed_prekey_pub.size() != 32 || creds.signed_prekey_priv.size() != 32 ||
            creds.signed_prekey_sig.size() != 64)
            return fail("credentials: malformed signed prekey");
        signal_context* ctx = crypto::signal_ctx();
        if (!ctx) return fail("libsignal context unavailable");

        auto impl = std::make_unique<Impl>(store, std::move(org), opts);
        impl->identity_pub = creds.identity_pub;
        impl->identity_priv = creds.identity_priv;
        impl->registration_id = creds.registration_id;
        impl->signed_prekey_id = creds.signed_prekey_id;
        impl->signed_prekey_pub = creds.signed_prekey_pub;
        impl->signed_prekey_sig = creds.signed_prekey_sig;

        {  // the signed prekey record, serialized once
            Ref<ec_public_key> pk;
            Ref<ec_private_key> sk;
            Ref<ec_key_pair> kp;
            Ref<session_signed_pre_key> rec;
            Buffer buf;
            if (decode_public(creds.signed_prekey_pub, pk.out()) < 0 ||
                curve_decode_private_point(sk.out(), u8(creds.signed_prekey_priv), 32, ctx) < 0 ||
                ec_key_pair_create(kp.out(), pk.get(), sk.get()) < 0 ||
                session_signed_pre_key_create(rec.out(), creds.signed_prekey_id, 0, kp.get(),
                                              u8(creds.signed_prekey_sig), 64) < 0 ||
                session_signed_pre_key_serialize(&buf.p, rec.get()) < 0)
                return fail("credentials: unusable signed prekey");
            impl->signed_prekey_record.assign(reinterpret_cast<const char*>(signal_buffer_data(buf.p)),
                                              signal_buffer_len(buf.p));
        }

        if (signal_protocol_store_context_create(&impl->sctx, ctx) != 0) return fail("out of memory");
        void* u = impl.get();
        signal_protocol_session_store ss{};
        ss.load_session_func = load_session;
        ss.get_sub_device_sessions_func = sub_device_sessions;
        ss.store_session_func = store_session;
        ss.contains_session_func = contains_session;
        ss.delete_session_func = delete_session_cb;
        ss.delete_all_sessions_func = delete_all_sessions;
        ss.user_data = u;
        signal_protocol_pre_key_store ps{};
        ps.load_pre_key = load_pre_key;
        ps.store_pre_key = store_pre_key;
        ps.contains_pre_key = contains_pre_key;
        ps.remove_pre_key = remove_pre_key;
        ps.user_data = u;
        signal_protocol_signed_pre_key_store sps{};
        sps.load_signed_pre_key = load_signed_pre_key;
        sps.store_signed_pre_key = store_signed_pre_key;
        sps.contains_signed_pre_key = contains_signed_pre_key;
        sps.remove_signed_pre_key = remove_signed_pre_key;
        sps.user_data = u;
        signal_protocol_identity_key_store is{};
        is.get_identity_key_pair = get_identity_key_pair;
        is.get_local_registration_id = get_local_registration_id;
        is.save_identity = save_identity;
        is.is_trusted_identity = is_trusted_identity;
        is.user_data = u;
        signal_protocol_sender_key_store sks{};
        sks.store_sender_key = store_sender_key;
        sks.load_sender_key = load_sender_key;
        sks.user_data = u;
        if (signal_protocol_store_context_set_session_store(impl->sctx, &ss) != 0 ||
            signal_protocol_store_context_set_pre_key_store(impl->sctx, &ps) != 0 ||
            signal_protocol_store_context_set_signed_pre_key_store(impl->sctx, &sps) != 0 ||
            signal_protocol_store_context_set_identity_key_store(impl->sctx, &is) != 0 ||
            signal_protocol_store_context_set_sender_key_store(impl->sctx, &sks) != 0)
            return fail("libsignal store context");
        return std::unique_ptr<Account>(new Account(std::move(impl)));
    } catch (const std::bad_alloc&) {
        if (err) *err = "out of memory";
        return nullptr;
    }
}

// whatsmeow's AutoTrustIdentity (message.go decryptDM, send.go encryptMessageForDevice): on an untrusted
// identity, clearUntrustedIdentity (delete the stored identity and the session) and try once more.
// Here the identity row is not deleted but overwritten by the retry (save_identity), which libsignal does
// right after trusting it; the session row is deleted as whatsmeow does.
template <class Op>
static int with_auto_trust(Account::Impl& m, const Address& a, bool* changed, Op&& op) {
    int rc = op();
    if (rc != SG_ERR_UNTRUSTED_IDENTITY || !m.opts.auto_trust || m.store_failed) return rc;
    std::string key = a.to_string(), err;
    m.forget(key);
    if (!m.store.delete_session(m.org, key, &err)) {
        m.fail_store("delete_session " + key, err);
        return SG_ERR_UNKNOWN;
    }
    m.trust_override = key;
    rc = op();
    m.trust_override.clear();
    if (rc >= 0 && changed) *changed = true;
    return rc;
}

Result Account::build_session(const Address& to, const PreKeyBundle& b, bool* identity_changed) {
    Impl& m = *impl_;
    if (identity_changed) *identity_changed = false;
    try {
        m.begin_op();
        signal_context* ctx = crypto::signal_ctx();
        Ref<ec_public_key> identity, spk, pk;
        Ref<session_pre_key_bundle> bundle;
        if (b.signed_prekey_sig.size() != 64 || decode_public(b.identity, identity.out()) < 0 ||
            decode_public(b.signed_prekey, spk.out()) < 0 || (b.has_prekey && decode_public(b.prekey, pk.out()) < 0)) {
            m.last_error = "malformed bundle key";
            return Result::InvalidBundle;
        }
        int rc = session_pre_key_bundle_create(bundle.out(), b.registration_id, static_cast<int>(to.device),
                                               b.has_prekey ? b.prekey_id : 0, pk.get(), b.signed_prekey_id,
                                               spk.get(), u8(b.signed_prekey_sig), 64, identity.get());
        if (rc < 0) return m.map(rc, true);
        CAddress addr(to);
        session_builder* builder = nullptr;
        rc = session_builder_create(&builder, m.sctx, &addr.a, ctx);
        if (rc < 0) return m.map(rc, true);
        rc = with_auto_trust(m, to, identity_changed,
                             [&] { return session_builder_process_pre_key_bundle(builder, bundle.get()); });
        session_builder_free(builder);
        if (rc == SG_ERR_INVALID_KEY) m.last_error = "bad signed prekey signature or key";
        return m.map(rc, true);
    } catch (const std::bad_alloc&) {
        return Result::Internal;
    }
}

Result Account::encrypt(const Address& to, std::string_view plaintext, Encrypted& out) {
    Impl& m = *impl_;
    try {
        m.begin_op();
        // whatsmeow send.go encryptMessageForDevice: without a bundle, a missing session is ErrNoSession.
        // (libsignal-c would otherwise fail on the empty record with a generic error.)
        Impl::Entry* e = m.fetch(to.to_string());
        if (!e) return Result::StoreFailed;
        if (!e->found) return Result::NoSession;
        CAddress addr(to);
        session_cipher* cipher = nullptr;
        int rc = session_cipher_create(&cipher, m.sctx, &addr.a, crypto::signal_ctx());
        if (rc < 0) return m.map(rc, false);
        ciphertext_message* msg = nullptr;
        rc = session_cipher_encrypt(cipher, u8(plaintext), plaintext.size(), &msg);
        session_cipher_free(cipher);
        if (rc < 0) return m.map(rc, false);
        signal_buffer* ser = ciphertext_message_get_serialized(msg);  // owned by msg
        out.type = ciphertext_message_get_type(msg) == CIPHERTEXT_PREKEY_TYPE ? EncType::PkMsg : EncType::Msg;
        try {
            out.ciphertext.assign(reinterpret_cast<const char*>(signal_buffer_data(ser)), signal_buffer_len(ser));
        } catch (...) {
            SIGNAL_UNREF(msg);
            throw;
        }
        SIGNAL_UNREF(msg);
        return m.map(0, false);
    } catch (const std::bad_alloc&) {
        return Result::Internal;
    }
}

Result Account::decrypt(const Address& from, EncType type, std::string_view ct, Decrypted& out) {
    Impl& m = *impl_;
    out.plaintext.clear();
    out.identity_changed = false;
    out.prekey_used = 0;
    try {
        m.begin_op();
        signal_context* ctx = crypto::signal_ctx();
        CAddress addr(from);
        session_cipher* cipher = nullptr;
        int rc = session_cipher_create(&cipher, m.sctx, &addr.a, ctx);
        if (rc < 0) return m.map(rc, false);
        signal_buffer* plain = nullptr;
        if (type == EncType::PkMsg) {
            Ref<pre_key_signal_message> msg;
            rc = pre_key_signal_message_deserialize(msg.out(), u8(ct), ct.size(), ctx);
            if (rc < 0) {
                session_cipher_free(cipher);
                m.last_error = "not a PreKeySignalMessage (" + std::to_string(rc) + ")";
                return Result::InvalidMessage;
            }
            rc = with_auto_trust(m, from, &out.identity_changed, [&] {
                return session_cipher_decrypt_pre_key_signal_message(cipher, msg.get(), nullptr, &plain);
            });
        } else {
            Ref<signal_message> msg;
            rc = signal_message_deserialize(msg.out(), u8(ct), ct.size(), ctx);
            if (rc < 0) {
                session_cipher_free(cipher);
                m.last_error = "not a SignalMessage (" + std::to_string(rc) + ")";
                return Result::InvalidMessage;
            }
            rc = session_cipher_decrypt_signal_message(cipher, msg.get(), nullptr, &plain);
        }
        session_cipher_free(cipher);
        Result r = m.map(rc, false);
        if (r != Result::Ok) {
            signal_buffer_bzero_free(plain);
            return r;
        }
        try {
            out.plaintext.assign(reinterpret_cast<const char*>(signal_buffer_data(plain)), signal_buffer_len(plain));
        } catch (...) {
            signal_buffer_bzero_free(plain);
            throw;
        }
        signal_buffer_bzero_free(plain);
        out.prekey_used = m.removed_prekey;
        return Result::Ok;
    } catch (const std::bad_alloc&) {
        return Result::Internal;
    }
}

bool Account::has_session(const Address& a) {
    try {
        impl_->begin_op();
        Impl::Entry* e = impl_->fetch(a.to_string());
        return e && e->found;
    } catch (const std::bad_alloc&) {
        return false;
    }
}

Result Account::delete_session(const Address& a) {
    try {
        impl_->begin_op();
        CAddress addr(a);
        return impl_->map(delete_session_cb(&addr.a, impl_.get()), false);
    } catch (const std::bad_alloc&) {
        return Result::Internal;
    }
}

PreKeyBundle Account::own_bundle(const store::PreKey* prekey) const {
    PreKeyBundle b;
    try {
        b.registration_id = impl_->registration_id;
        b.identity = impl_->identity_pub;
        b.signed_prekey_id = impl_->signed_prekey_id;
        b.signed_prekey = impl_->signed_prekey_pub;
        b.signed_prekey_sig = impl_->signed_prekey_sig;
        if (prekey) {
            b.has_prekey = true;
            b.prekey_id = prekey->id;
            b.prekey = prekey->pub;
        }
    } catch (const std::bad_alloc&) {
        b = PreKeyBundle{};
    }
    return b;
}

void Account::drop_cache() {
    impl_->cache.clear();
    impl_->lru.clear();
}

const std::string& Account::last_error() const { return impl_->last_error; }
const Account::Stats& Account::stats() const { return impl_->stats; }
size_t Account::cached_sessions() const { return impl_->cache.size(); }

}  // namespace wa::signal
