// Line-oriented driver of wa::signal for t/signal/crosscheck.mjs (hex for bytes). One command per line,
// one answer line per command; every command runs in its own store transaction (begin ... commit), as one
// pass of the helper's event loop would.
//   open DIR ORG                  -> ok REGID | err MESSAGE   (SQLite store in DIR; on first use creates
//                                                             credentials and one-time prekeys 1..5)
//   bundle PREKEY_ID|-            -> bundle REGID IDENTITY SPK_ID SPK SIG PK_ID|- PK|-   (ours)
//   bundlenode IQ_HEX             -> users JID=ok|JID=err:REASON,...   (wa::decode + parse_prekey_bundles;
//                                    a session is built for every ok user, at address_of(jid))
//   encrypt JID TEXT_HEX [DEST]   -> enc pkmsg|msg CT_HEX | err RESULT   (text_message, deviceSentMessage to
//                                    DEST when given, encode_message (padding), Account::encrypt)
//   decrypt JID TYPE CT_HEX       -> text TEXT_HEX DEVICE_SENT(0|1) DEST|- PREKEY_USED IDENTITY_CHANGED(0|1)
//                                    | err RESULT   (Account::decrypt, decode_message; TEXT is conversation or
//                                    extendedTextMessage.text)
//   hasprekey ID                  -> 1 | 0
//   hassession JID                -> 1 | 0
//   address JID                   -> addr NAME.DEVICE
//   stats                         -> stats LOADS STORE_READS WRITES
//   close                         -> ok
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "wa/codec/binary.hpp"
#include "wa/crypto/keys.hpp"
#include "wa/signal/account.hpp"
#include "wa/signal/plaintext.hpp"
#include "wa/store/store.hpp"

namespace {

std::string hex(std::string_view b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s.empty() ? "-" : s;
}

bool unhex(const std::string& h, std::string& out) {
    out.clear();
    if (h == "-") return true;
    if (h.size() % 2) return false;
    auto v = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    };
    for (size_t i = 0; i < h.size(); i += 2) {
        int a = v(h[i]), b = v(h[i + 1]);
        if (a < 0 || b < 0) return false;
        out.push_back(static_cast<char>(a * 16 + b));
    }
    return true;
}

std::unique_ptr<wa::store::Store> store;
std::unique_ptr<wa::signal::Account> account;
std::string org;

// First use of a directory: what the link layer would have made (session.cpp ensure_credentials, login.cpp).
bool make_credentials(std::string& err) {
    wa::store::Credentials c;
    wa::crypto::KeyPair noise, identity, spk;
    if (!wa::crypto::generate_keypair(noise) || !wa::crypto::generate_keypair(identity) ||
        !wa::crypto::generate_keypair(spk)) {
        err = "keygen";
        return false;
    }
    c.noise_priv = noise.priv;
    c.noise_pub = noise.pub;
    c.identity_priv = identity.priv;
    c.identity_pub = identity.pub;
    uint16_t reg = 0;
    wa::crypto::random_bytes(&reg, sizeof reg);
    c.registration_id = (reg & 16383) ? (reg & 16383) : 1;
    c.signed_prekey_id = 1;
    c.signed_prekey_priv = spk.priv;
    c.signed_prekey_pub = spk.pub;
    c.signed_prekey_sig = wa::crypto::xeddsa_sign(identity.priv, std::string(1, '\x05') + spk.pub);
    c.adv_secret = wa::crypto::random_string(32);
    c.me_jid = "573001111111:4@s.whatsapp.net";
    std::vector<wa::store::PreKey> keys;
    for (uint32_t id = 1; id <= 5; id++) {
        wa::crypto::KeyPair kp;
        if (!wa::crypto::generate_keypair(kp)) return false;
        keys.push_back(wa::store::PreKey{id, kp.priv, kp.pub, true});
    }
    c.next_prekey_id = 6;
    return store->put_credentials(org, c, &err) && store->put_prekeys(org, keys, &err);
}

std::string result(wa::signal::Result r) {
    return std::string("err ") + wa::signal::result_name(r) + (account ? " " + account->last_error() : "");
}

std::string run(const std::string& line) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    std::string err;
    if (cmd == "open") {
        std::string dir;
        in >> dir >> org;
        account.reset();
        if (store) store->commit(&err);
        store = wa::store::open_sqlite_store(dir, false, &err);
        if (!store) return "err " + err;
        wa::store::Credentials c;
        bool found = false;
        if (!store->load_credentials(org, c, found, &err)) return "err " + err;
        if (!found && !make_credentials(err)) return "err " + err;
        account = wa::signal::Account::open(*store, org, &err);
        if (!account) return "err " + err;
        return "ok " + std::to_string(account->own_bundle().registration_id);
    }
    if (cmd == "close") {
        account.reset();
        if (store) store->commit(&err);
        store.reset();
        return "ok";
    }
    if (!account) return "err not open";
    if (cmd == "bundle") {
        std::string id;
        in >> id;
        wa::store::PreKey k;
        bool found = false;
        if (id != "-" && (!store->load_prekey(org, static_cast<uint32_t>(std::stoul(id)), k, found, &err) || !found))
            return "err no prekey " + id;
        wa::signal::PreKeyBundle b = account->own_bundle(found ? &k : nullptr);
        std::ostringstream o;
        o << "bundle " << b.registration_id << " " << hex(b.identity) << " " << b.signed_prekey_id << " "
          << hex(b.signed_prekey) << " " << hex(b.signed_prekey_sig) << " "
          << (b.has_prekey ? std::to_string(b.prekey_id) : "-") << " " << (b.has_prekey ? hex(b.prekey) : "-");
        return o.str();
    }
    if (cmd == "bundlenode") {
        std::string h, bytes;
        in >> h;
        wa::Node iq;
        if (!unhex(h, bytes) || !wa::decode(bytes, iq, &err)) return "err decode " + err;
        std::vector<wa::signal::UserBundle> users;
        if (!wa::signal::parse_prekey_bundles(iq, users, &err)) return "err " + err;
        std::string out = "users ";
        for (size_t i = 0; i < users.size(); i++) {
            const wa::signal::UserBundle& u = users[i];
            if (i) out += ",";
            out += u.jid_text + "=";
            if (!u.ok) {
                out += "err:" + u.error;
                continue;
            }
            wa::signal::Result r = account->build_session(wa::signal::address_of(u.jid), u.bundle);
            out += r == wa::signal::Result::Ok ? "ok" : std::string("err:") + wa::signal::result_name(r);
        }
        for (char& c : out)
            if (c == ' ' && &c != &out[5]) c = '_';
        return out;
    }
    if (cmd == "encrypt") {
        std::string jid, th, text, dest;
        in >> jid >> th >> dest;
        wa::signal::Address a;
        if (!wa::signal::address_of(jid, a) || !unhex(th, text)) return "err args";
        waproto::Message m = wa::signal::text_message(text);
        if (!dest.empty()) m = wa::signal::device_sent_message(m, dest);
        std::string padded;
        if (!wa::signal::encode_message(m, padded)) return "err encode";
        wa::signal::Encrypted e;
        wa::signal::Result r = account->encrypt(a, padded, e);
        if (r != wa::signal::Result::Ok) return result(r);
        return std::string("enc ") + wa::signal::enc_type_name(e.type) + " " + hex(e.ciphertext);
    }
    if (cmd == "decrypt") {
        std::string jid, type, ch, ct;
        in >> jid >> type >> ch;
        wa::signal::Address a;
        wa::signal::EncType t;
        if (!wa::signal::address_of(jid, a) || !wa::signal::parse_enc_type(type, t) || !unhex(ch, ct)) return "err args";
        wa::signal::Decrypted d;
        wa::signal::Result r = account->decrypt(a, t, ct, d);
        if (r != wa::signal::Result::Ok) return result(r);
        wa::signal::ReceivedMessage m;
        if (!wa::signal::decode_message(d.plaintext, m, &err)) return "err decode " + err;
        const std::string& text =
            m.message.has_conversation() ? m.message.conversation() : m.message.extendedtextmessage().text();
        std::ostringstream o;
        o << "text " << hex(text) << " " << (m.device_sent ? 1 : 0) << " "
          << (m.destination_jid.empty() ? "-" : m.destination_jid) << " " << d.prekey_used << " "
          << (d.identity_changed ? 1 : 0);
        return o.str();
    }
    if (cmd == "hasprekey") {
        uint32_t id = 0;
        in >> id;
        wa::store::PreKey k;
        bool found = false;
        if (!store->load_prekey(org, id, k, found, &err)) return "err " + err;
        return found ? "1" : "0";
    }
    if (cmd == "hassession") {
        std::string jid;
        in >> jid;
        wa::signal::Address a;
        if (!wa::signal::address_of(jid, a)) return "err args";
        return account->has_session(a) ? "1" : "0";
    }
    if (cmd == "address") {
        std::string jid;
        in >> jid;
        wa::signal::Address a;
        if (!wa::signal::address_of(jid, a)) return "err args";
        return "addr " + a.to_string();
    }
    if (cmd == "stats") {
        const auto& s = account->stats();
        return "stats " + std::to_string(s.session_loads) + " " + std::to_string(s.store_reads) + " " +
               std::to_string(s.session_writes);
    }
    return "err unknown command";
}

}  // namespace

int main() {
    std::string line;
    while (std::getline(std::cin, line)) {
        std::string err, out;
        bool tx = store != nullptr;
        if (tx && !store->begin(&err)) {
            std::cout << "err begin " << err << std::endl;
            continue;
        }
        try {
            out = run(line);
        } catch (const std::exception& e) {
            out = std::string("err exception ") + e.what();
        }
        if (tx && store && !store->commit(&err)) out = "err commit " + err;
        std::cout << out << std::endl;
    }
    return 0;
}
