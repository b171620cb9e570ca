// usync queries (whatsmeow user.go usync/GetUserDevices/parseDeviceList): who is on WhatsApp, their devices and
// their LID. One query asks for devices and the LID of phone-number users at once (as Baileys does), so a send
// to a new number costs one round trip before the prekey fetch.
#pragma once

#include <string>
#include <vector>

#include "wa/codec/binary.hpp"
#include "wa/codec/jid.hpp"

namespace wa::usync {

struct UserInfo {
    Jid jid;                        // as the server answered (the PN user we asked about)
    bool on_whatsapp = false;       // a device list (or contact type "in") came back
    std::vector<uint16_t> devices;  // device ids; 0 is the phone
    std::vector<bool> hosted;       // is_hosted per device
    Jid lid;                        // the user's LID, when the server said
};

// <iq xmlns="usync" type="get" to=@s.whatsapp.net><usync sid mode="query" last="true" index="0" context>
//   <query><devices version="2"/><lid/></query><list><user jid/>…</list></usync></iq>
Node query(const std::vector<Jid>& users, const std::string& sid, bool with_lid = true,
           const std::string& context = "message");

// Parses the result's <usync><list>; false when the answer has no list (an error iq).
bool parse(const Node& iq, std::vector<UserInfo>& out, std::string* err = nullptr);

// The device JIDs of a user: user[:device]@server for each device id (hosted devices on hosted servers).
std::vector<Jid> device_jids(const Jid& user, const UserInfo& info);

}  // namespace wa::usync
