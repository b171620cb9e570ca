// Protecting the number: trusted-contact privacy tokens (whatsmeow tctoken.go, notification.go
// handlePrivacyTokenNotification) and the reach-out timelock WhatsApp announces for a restricted number
// (whatsmeow notification.go handleMexNotification, NotificationUserReachoutTimelockUpdate).
#include <jansson.h>

#include "ctx.hpp"

namespace wa {

namespace {

constexpr int64_t kBucket = 604800;  // tcTokenBucketDuration: 7 days
constexpr int64_t kBuckets = 4;      // tcTokenNumBuckets: ~28 days of validity

int64_t token_cutoff(int64_t now) { return (now / kBucket - (kBuckets - 1)) * kBucket; }

}  // namespace

// Where a contact's token is kept: its LID when the mapping is known, else its PN (resolveTCTokenStorageLID).
std::string Session::token_storage_jid(const Jid& user) {
    Jid u = user.to_non_ad();
    std::string lid, err;
    bool found = false;
    if (u.is_pn() && store_ && store_->lid_for_pn(org_, u.user, lid, found, &err) && found)
        return Jid{lid, std::string(jid_server::kLid)}.to_string();
    return u.to_string();
}

void Session::on_privacy_tokens(int64_t unix_s, const Node& n) {
    (void)unix_s;
    const Node* tokens = n.child("tokens");
    Jid from, sender_lid;
    if (!tokens || !store_ || !Jid::parse(n.attr_or("from"), from)) return;
    std::string storage = Jid::parse(n.attr_or("sender_lid"), sender_lid) ? sender_lid.to_non_ad().to_string()
                                                                           : token_storage_jid(from);
    if (from.is_pn() && !sender_lid.user.empty()) {
        std::string err;
        store_->put_lid_mapping(org_, from.user, sender_lid.user, &err);
    }
    for (const Node* t : tokens->children_by_tag("token")) {
        uint32_t ts = 0;
        if (t->attr_or("type") != "trusted_contact" || t->kind != Node::Content::Bytes ||
            !parse_jid_number(t->attr_or("t"), 0xFFFFFFFFu, ts))
            continue;
        std::string err;
        store_->put_privacy_token(org_, storage, t->bytes, ts, &err);
    }
}

// The contact's token, when we hold a fresh one (ensureTCToken): attached to messages as <tctoken>.
std::string Session::privacy_token_for(const Jid& dest, int64_t unix_s) {
    if (!store_) return {};
    store::PrivacyToken tok;
    bool found = false;
    std::string err;
    if (!store_->load_privacy_token(org_, token_storage_jid(dest), tok, found, &err) || !found) return {};
    return !tok.token.empty() && tok.t >= token_cutoff(unix_s) ? tok.token : std::string();
}

// After a message to a contact: issue our own token when a new 7-day bucket started since the last one
// (shouldSendNewTCToken, issuePrivacyToken).
void Session::maybe_issue_token(uint64_t now_ms, int64_t unix_s, const Jid& dest, Actions& out) {
    if (!store_ || !ctx_ || !(dest.is_pn() || dest.is_lid())) return;
    std::string storage = token_storage_jid(dest);
    store::PrivacyToken tok;
    bool found = false;
    std::string err;
    store_->load_privacy_token(org_, storage, tok, found, &err);
    if (found && tok.sender_t && unix_s / kBucket <= tok.sender_t / kBucket) return;
    Node iq("iq", {{"xmlns", "privacy"}, {"type", "set"}, {"to", "@s.whatsapp.net"}},
            {Node("tokens", {}, {Node("token", {{"jid", storage}, {"t", std::to_string(unix_s)}, {"type", "trusted_contact"}})})});
    ctx_->send_iq(std::move(iq), IqKind::Other, now_ms, out);
    store_->put_privacy_token_sender_t(org_, storage, unix_s, &err);
}

// <notification type="mex"><update op_name="NotificationUserReachoutTimelockUpdate">{json}</update>: the number
// may not start new chats until time_enforcement_ends; sends answer 429 account_restricted until then.
void Session::on_mex(int64_t unix_s, const Node& n, Actions& out) {
    const Node* u = n.child("update");
    if (!u || u->attr_or("op_name") != "NotificationUserReachoutTimelockUpdate" || u->kind != Node::Content::Bytes) return;
    json_error_t je;
    json_t* root = json_loadb(u->bytes.data(), u->bytes.size(), 0, &je);
    json_t* tl = json_object_get(json_object_get(root, "data"), "xwa2_notify_account_reachout_timelock");
    if (json_is_object(tl)) {
        bool active = json_is_true(json_object_get(tl, "is_active"));
        const char* ends = json_string_value(json_object_get(tl, "time_enforcement_ends"));
        int64_t until = ends ? std::strtoll(ends, nullptr, 10) : 0;
        status_.restricted_until = active ? (until > unix_s ? until : unix_s + 24 * 3600) : 0;
        persist_org();  // a restart must not forget it
        out.push_back({Action::Publish});
        if (active) emit(webhook::kAccountRestricted, webhook::restricted_data(status_.restricted_until, "reachout_timelock", 0), unix_s);
    }
    json_decref(root);
}

}  // namespace wa
