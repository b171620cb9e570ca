// Ready-made linked organizations for scale tests and benchmarks, instead of one QR scan each:
//   wa_import gen STATE_DIR PREFIX COUNT PHONE_BASE  > import.json   credentials into STATE_DIR/whatsapp.db;
//                                                                     prints the simulator's /accounts/import body
//   wa_import finish STATE_DIR RESULTS.json                           device JIDs, LIDs and account identities from
//                                                                     the simulator's answer; the orgs become wanted
// The simulator's POST /accounts/import creates the matching linked devices (t/wa-sim/README.md).
#include <jansson.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>
#include <string>

#include "WAProto.pb.h"
#include "wa/codec/base64.hpp"
#include "wa/crypto/keys.hpp"
#include "wa/store/store.hpp"

namespace {

int fail(const std::string& why) {
    std::fprintf(stderr, "wa_import: %s\n", why.c_str());
    return 1;
}

bool fresh_credentials(wa::store::Credentials& c) {
    wa::crypto::KeyPair noise, identity, spk;
    if (!wa::crypto::generate_keypair(noise) || !wa::crypto::generate_keypair(identity) ||
        !wa::crypto::generate_keypair(spk))
        return false;
    c.noise_priv = noise.priv;
    c.noise_pub = noise.pub;
    c.identity_priv = identity.priv;
    c.identity_pub = identity.pub;
    c.registration_id = 1 + static_cast<uint32_t>(std::rand() % 16000);
    c.signed_prekey_id = 1;
    c.signed_prekey_priv = spk.priv;
    c.signed_prekey_pub = spk.pub;
    c.signed_prekey_sig = wa::crypto::xeddsa_sign(identity.priv, std::string(1, '\x05') + spk.pub);
    c.adv_secret = wa::crypto::random_string(32);
    return c.signed_prekey_sig.size() == 64;
}

json_t* import_body(const std::string& phone, const wa::store::Credentials& c) {
    json_t* skey = json_pack("{s:i, s:s, s:s}", "id", 1, "value", wa::base64_encode(c.signed_prekey_pub).c_str(),
                             "signature", wa::base64_encode(c.signed_prekey_sig).c_str());
    return json_pack("{s:s, s:i, s:s, s:s, s:i, s:o}", "phone", phone.c_str(), "device", 1, "noise_pub",
                     wa::base64_encode(c.noise_pub).c_str(), "identity_pub", wa::base64_encode(c.identity_pub).c_str(),
                     "registration_id", static_cast<int>(c.registration_id), "skey", skey);
}

int gen(wa::store::Store& store, const std::string& prefix, int count, long long phone_base) {
    json_t* out = json_array();
    std::string err;
    if (!store.begin(&err)) return fail(err);
    for (int i = 1; i <= count; i++) {
        std::string org = prefix + std::to_string(i), phone = std::to_string(phone_base + i);
        wa::store::Credentials c;
        if (!fresh_credentials(c)) return fail("key generation failed");
        wa::store::OrgRecord r;
        r.org = org;
        r.phone = phone;  // finish() finds the organization by it
        if (!store.put_org(r, &err) || !store.put_credentials(org, c, &err)) return fail(err);
        json_array_append_new(out, import_body(phone, c));
    }
    if (!store.commit(&err)) return fail(err);
    json_dumpf(out, stdout, JSON_COMPACT);
    std::printf("\n");
    json_decref(out);
    return 0;
}

// The account identity the phone signed, plus our device signature (what pairing would have stored).
bool account_identity(const std::string& signed_b64, const wa::store::Credentials& c, std::string& out) {
    std::string raw;
    waproto::ADVSignedDeviceIdentity id;
    if (!wa::base64_decode(signed_b64, raw) || !id.ParseFromString(raw)) return false;
    id.set_devicesignature(wa::crypto::xeddsa_sign(
        c.identity_priv, std::string("\x06\x01", 2) + id.details() + c.identity_pub + id.accountsignaturekey()));
    out = id.SerializeAsString();
    return id.devicesignature().size() == 64;
}

int finish(wa::store::Store& store, const char* results_file) {
    json_error_t je;
    json_t* res = json_load_file(results_file, 0, &je);
    if (!json_is_array(res)) return fail(std::string("results: ") + je.text);
    std::vector<wa::store::OrgRecord> orgs;
    std::vector<std::pair<std::string, std::string>> corrupt;
    std::string err;
    if (!store.load_orgs(orgs, corrupt, &err)) return fail(err);
    std::map<std::string, wa::store::OrgRecord> by_phone;
    for (auto& o : orgs) by_phone[o.phone] = o;
    if (!store.begin(&err)) return fail(err);
    size_t i;
    json_t* r;
    json_array_foreach(res, i, r) {
        const char* phone = json_string_value(json_object_get(r, "phone"));
        const char* jid = json_string_value(json_object_get(r, "device_jid"));
        const char* lid = json_string_value(json_object_get(r, "lid"));
        const char* adv = json_string_value(json_object_get(r, "adv_signed_device_identity"));
        if (!phone || !jid || !adv || !by_phone.count(phone)) return fail("bad result entry " + std::to_string(i));
        wa::store::OrgRecord rec = by_phone[phone];
        wa::store::Credentials c;
        bool found = false;
        if (!store.load_credentials(rec.org, c, found, &err) || !found) return fail("no credentials for " + rec.org);
        c.me_jid = jid;
        c.me_lid = lid ? lid : "";
        c.platform = "android";
        if (!account_identity(adv, c, c.account)) return fail("bad adv_signed_device_identity");
        rec.wanted = true;
        if (!store.put_credentials(rec.org, c, &err) || !store.put_org(rec, &err)) return fail(err);
    }
    json_decref(res);
    return store.commit(&err) ? 0 : fail(err);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return fail("usage: wa_import gen STATE_DIR PREFIX COUNT PHONE_BASE | finish STATE_DIR RESULTS.json");
    std::string cmd = argv[1], err;
    auto store = wa::store::open_sqlite_store(argv[2], false, &err);
    if (!store) return fail(err);
    if (cmd == "gen" && argc == 6) return gen(*store, argv[3], std::atoi(argv[4]), std::atoll(argv[5]));
    if (cmd == "finish" && argc == 4) return finish(*store, argv[3]);
    return fail("bad arguments");
}
