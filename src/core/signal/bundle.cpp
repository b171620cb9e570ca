// Prekey bundle requests and answers, after whatsmeow prekeys.go (fetchPreKeys, nodeToPreKeyBundle,
// nodeToPreKey). docs/wa-protocol.md §7 "Prekey bundles".
#include "wa/signal/bundle.hpp"

#include <new>

namespace wa::signal {

namespace {

uint32_t be(const std::string& b) {
    uint32_t v = 0;
    for (unsigned char c : b) v = (v << 8) | c;
    return v;
}

// The byte content of child `tag` of `n` when it has exactly `len` bytes.
bool child_bytes(const Node& n, const char* tag, size_t len, std::string& out, std::string& why) {
    const Node* c = n.child(tag);
    if (!c) {
        why = std::string("no <") + tag + ">";
        return false;
    }
    if (c->kind != Node::Content::Bytes || c->bytes.size() != len) {
        why = std::string("<") + tag + "> is not " + std::to_string(len) + " bytes";
        return false;
    }
    out = c->bytes;
    return true;
}

// whatsmeow nodeToPreKey: <id>[3]</id><value>[32]</value>(<signature>[64]</signature> for skey).
bool parse_key(const Node& n, bool signed_key, uint32_t& id, std::string& value, std::string* sig, std::string& why) {
    std::string idb;
    if (!child_bytes(n, "id", 3, idb, why) || !child_bytes(n, "value", 32, value, why)) {
        why = "<" + n.tag + ">: " + why;
        return false;
    }
    id = be(idb);
    if (signed_key && !child_bytes(n, "signature", 64, *sig, why)) {
        why = "<" + n.tag + ">: " + why;
        return false;
    }
    return true;
}

void parse_user(const Node& user, UserBundle& ub) {
    ub.jid_text = std::string(user.attr_or("jid"));
    if (!Jid::parse(ub.jid_text, ub.jid)) {
        ub.error = "jid does not parse";
        return;
    }
    // whatsmeow: an <error> child makes only this user fail.
    if (const Node* e = user.child("error")) {
        ub.error = "error";
        if (e->has_attr("code")) ub.error += " " + std::string(e->attr_or("code"));
        if (e->has_attr("text")) ub.error += " " + std::string(e->attr_or("text"));
        return;
    }
    PreKeyBundle& b = ub.bundle;
    std::string reg, why;
    if (!child_bytes(user, "registration", 4, reg, why)) {
        ub.error = "invalid registration id: " + why;
        return;
    }
    b.registration_id = be(reg);
    // whatsmeow accepts the keys inside a <keys> wrapper too.
    const Node* keys = user.child("keys");
    if (!keys) keys = &user;
    if (!child_bytes(*keys, "identity", 32, b.identity, why)) {
        ub.error = "invalid identity key: " + why;
        return;
    }
    if (const Node* k = keys->child("key")) {
        if (!parse_key(*k, false, b.prekey_id, b.prekey, nullptr, why)) {
            ub.error = "invalid prekey: " + why;
            return;
        }
        b.has_prekey = true;
    }
    const Node* skey = keys->child("skey");
    if (!skey) {
        ub.error = "invalid signed prekey: no <skey>";
        return;
    }
    if (!parse_key(*skey, true, b.signed_prekey_id, b.signed_prekey, &b.signed_prekey_sig, why)) {
        ub.error = "invalid signed prekey: " + why;
        return;
    }
    ub.ok = true;
}

}  // namespace

Node prekey_request(const std::vector<Jid>& devices) {
    std::vector<Node> users;
    users.reserve(devices.size());
    for (const Jid& j : devices) users.push_back(Node("user", {{"jid", j.to_string()}, {"reason", "identity"}}));
    return Node("iq", {{"xmlns", "encrypt"}, {"type", "get"}, {"to", "@s.whatsapp.net"}},
                {Node("key", {}, std::move(users))});
}

bool parse_prekey_bundles(const Node& iq, std::vector<UserBundle>& out, std::string* err) {
    try {
        out.clear();
        if (iq.attr_or("type") == "error") {
            if (err) {
                const Node* e = iq.child("error");
                *err = "prekey request failed";
                if (e) *err += ": " + std::string(e->attr_or("code")) + " " + std::string(e->attr_or("text"));
            }
            return false;
        }
        const Node* list = iq.child("list");
        if (!list) {
            if (err) *err = "no <list> in the prekey answer";
            return false;
        }
        for (const Node& user : list->children) {
            if (user.tag != "user") continue;
            UserBundle ub;
            parse_user(user, ub);
            if (!ub.ok) ub.bundle = PreKeyBundle{};
            out.push_back(std::move(ub));
        }
        return true;
    } catch (const std::bad_alloc&) {
        if (err) *err = "out of memory";
        return false;
    }
}

}  // namespace wa::signal
