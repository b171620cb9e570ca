// Prekey bundles as WhatsApp serves them (docs/wa-protocol.md §7 "Prekey bundles"; whatsmeow prekeys.go).
// No nginx types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wa/codec/binary.hpp"
#include "wa/codec/jid.hpp"

namespace wa::signal {

// One device's keys. Keys are raw 32-byte Curve25519 public keys, without libsignal's 0x05 type byte.
struct PreKeyBundle {
    uint32_t registration_id = 0;
    std::string identity;            // 32 bytes
    uint32_t signed_prekey_id = 0;   // 24 bits on the wire
    std::string signed_prekey;       // 32 bytes
    std::string signed_prekey_sig;   // 64 bytes: XEdDSA by `identity` over 0x05 ‖ signed_prekey
    bool has_prekey = false;         // the one-time prekey is optional (the server may have run out)
    uint32_t prekey_id = 0;
    std::string prekey;              // 32 bytes
};

// One <user> of the answer: its bundle, or why there is none.
struct UserBundle {
    std::string jid_text;   // the jid attribute as written (the server echoes the requested JID)
    Jid jid;                // parsed (the device the bundle belongs to)
    bool ok = false;
    PreKeyBundle bundle;    // when ok
    std::string error;      // when !ok: the <error code text> the server sent, or what was malformed
};

// <iq xmlns="encrypt" type="get" to=@s.whatsapp.net><key><user jid=… reason="identity"/>…</key></iq>
// (whatsmeow prekeys.go fetchPreKeys: one <user> per device, always reason="identity"). The caller adds the
// iq id. Device JIDs are written with wa::Jid::to_string().
Node prekey_request(const std::vector<Jid>& devices);

// The answer: <iq type="result"><list><user jid><registration>[u32]</registration><type>[05]</type>
// <identity>[32]</identity><skey><id>[u24]</id><value>[32]</value><signature>[64]</signature></skey>
// <key><id>[u24]</id><value>[32]</value></key>?</user>…</list></iq>. Following whatsmeow prekeys.go
// (nodeToPreKeyBundle), not Baileys:
//  - a <user> with an <error> child, or a malformed one, gets ok = false and only that user is skipped
//    (Baileys throws for the whole batch);
//  - the keys may also sit in a <keys> wrapper inside <user> (Baileys does not accept one);
//  - registration must be exactly 4 bytes, ids exactly 3, keys 32 and the signature 64; <type> is not checked;
//  - children of <list> other than <user> are ignored; a <user> whose jid does not parse is reported !ok.
// Returns false (with *err) only when the iq as a whole is unusable: type="error" or no <list>.
bool parse_prekey_bundles(const Node& iq, std::vector<UserBundle>& out, std::string* err = nullptr);

}  // namespace wa::signal
