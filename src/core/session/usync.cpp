#include "wa/session/usync.hpp"

namespace wa::usync {

Node query(const std::vector<Jid>& users, const std::string& sid, bool with_lid, const std::string& context) {
    std::vector<Node> list;
    for (const Jid& u : users) list.push_back(Node("user", {{"jid", u.to_non_ad().to_string()}}));
    std::vector<Node> q;
    q.push_back(Node("devices", {{"version", "2"}}));
    if (with_lid) q.push_back(Node("lid"));
    Node usync("usync", {{"sid", sid}, {"mode", "query"}, {"last", "true"}, {"index", "0"}, {"context", context}},
               {Node("query", {}, std::move(q)), Node("list", {}, std::move(list))});
    return Node("iq", {{"xmlns", "usync"}, {"type", "get"}, {"to", "@s.whatsapp.net"}}, {std::move(usync)});
}

namespace {

void parse_devices(const Node* devices, UserInfo& info) {
    const Node* list = devices ? devices->child("device-list") : nullptr;
    if (!list) return;
    for (const Node* d : list->children_by_tag("device")) {
        uint32_t id = 0;
        if (!parse_jid_number(d->attr_or("id"), 65535, id)) continue;
        info.devices.push_back(static_cast<uint16_t>(id));
        info.hosted.push_back(d->attr_or("is_hosted") == "true");
    }
    info.on_whatsapp = !info.devices.empty();
}

}  // namespace

bool parse(const Node& iq, std::vector<UserInfo>& out, std::string* err) {
    const Node* us = iq.child("usync");
    const Node* list = us ? us->child("list") : nullptr;
    if (iq.attr_or("type") != "result" || !list) {
        if (err) *err = "usync answer without a list";
        return false;
    }
    for (const Node* u : list->children_by_tag("user")) {
        UserInfo info;
        if (!Jid::parse(u->attr_or("jid"), info.jid)) continue;
        parse_devices(u->child("devices"), info);
        if (const Node* c = u->child("contact")) info.on_whatsapp = info.on_whatsapp || c->attr_or("type") == "in";
        if (const Node* l = u->child("lid")) Jid::parse(l->attr_or("val"), info.lid);
        out.push_back(std::move(info));
    }
    return true;
}

std::vector<Jid> device_jids(const Jid& user, const UserInfo& info) {
    std::vector<Jid> out;
    for (size_t i = 0; i < info.devices.size(); i++) {
        Jid j = user.to_non_ad();
        if (info.hosted[i]) j.server = std::string(j.is_lid() ? jid_server::kHostedLid : jid_server::kHosted);
        j.device = info.devices[i];
        j.has_device = j.device != 0;
        out.push_back(std::move(j));
    }
    return out;
}

}  // namespace wa::usync
