// Line-oriented driver of wa::noise for t/noise/crosscheck.mjs (hex everywhere).
// Commands on stdin, one per line; every command gets exactly one answer line, except that `server` first
// reports each XEdDSA check of the certificate chain, made here by wa::xeddsa_verify (libsignal-protocol-c):
// the script cross-checks the verdicts but cannot change them.
//   init NOISE_PRIV EPH_PRIV|- ROOT_PUB NOW   -> ok
//   hello                                      -> out FRAME_HEX        (intro + len3 + ClientHello)
//   server HANDSHAKE_MESSAGE_HEX               -> (verified PUB MSG SIG 1|0)*
//                                                 then ok SERVER_STATIC_HEX | err MESSAGE
//   finish CLIENT_PAYLOAD_HEX                  -> out FRAME_HEX | err
//   split                                      -> ok | err
//   send PLAINTEXT_HEX                         -> out FRAME_HEX | err
//   recv BYTES_HEX                             -> frames HEX,HEX,... ("frames -" if none) | err MESSAGE
//   keys                                       -> keys EPH_PUB NOISE_PUB
#include "wa/link/noise.hpp"
#include "wa/crypto/xeddsa.hpp"

#include <iostream>
#include <memory>
#include <sstream>
#include <string>

namespace {

std::string hex(std::string_view b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s;
}

bool unhex(const std::string& h, std::string& out) {
    out.clear();
    if (h == "-") return true;
    if (h.size() % 2) return false;
    auto v = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
    for (size_t i = 0; i < h.size(); i += 2) {
        int a = v(h[i]), b = v(h[i + 1]);
        if (a < 0 || b < 0) return false;
        out.push_back(static_cast<char>(a * 16 + b));
    }
    return true;
}

}  // namespace

int main() {
    std::unique_ptr<wa::noise::Handshake> hs;
    wa::noise::Transport tr;
    std::string line;
    auto say = [](const std::string& s) { std::cout << s << "\n" << std::flush; };
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd, a, b, c, d;
        in >> cmd >> a >> b >> c >> d;
        std::string x;
        if (cmd == "init") {
            wa::noise::Handshake::Keys k;
            std::string root;
            if (!unhex(a, k.noise_priv) || !unhex(b, k.eph_priv) || !unhex(c, root)) { say("err bad hex"); continue; }
            int64_t now = std::stoll(d);
            auto verify = [&say](std::string_view pub, std::string_view msg, std::string_view sig) {
                bool ok = wa::xeddsa_verify(pub, msg, sig);
                say("verified " + hex(pub) + " " + hex(msg) + " " + hex(sig) + (ok ? " 1" : " 0"));
                return ok;
            };
            hs = std::make_unique<wa::noise::Handshake>(k, root, verify, [now] { return now; });
            say("ok");
        } else if (!hs) {
            say("err no init");
        } else if (cmd == "hello") {
            std::string f = hs->client_hello_frame();
            say(f.empty() ? "err hello" : "out " + hex(f));
        } else if (cmd == "keys") {
            say("keys " + hex(hs->ephemeral_public()) + " " + hex(hs->noise_public()));
        } else if (cmd == "server") {
            std::string err;
            if (!unhex(a, x)) { say("err bad hex"); continue; }
            if (hs->on_server_hello(x, &err)) say("ok " + hex(hs->server_static()));
            else say("err " + err);
        } else if (cmd == "finish") {
            if (!unhex(a, x)) { say("err bad hex"); continue; }
            std::string f = hs->client_finish_frame(x);
            say(f.empty() ? "err finish" : "out " + hex(f));
        } else if (cmd == "split") {
            tr = hs->split();
            say(tr.valid() ? "ok" : "err split");
        } else if (cmd == "send") {
            if (!unhex(a, x)) { say("err bad hex"); continue; }
            std::string f = tr.encrypt_frame(x);
            say(f.empty() ? "err send" : "out " + hex(f));
        } else if (cmd == "recv") {
            if (!unhex(a, x)) { say("err bad hex"); continue; }
            tr.feed(x);
            std::string frames, pt, err;
            wa::noise::Transport::Result r;
            while ((r = tr.next(pt, &err)) == wa::noise::Transport::Frame) frames += (frames.empty() ? "" : ",") + hex(pt);
            if (r == wa::noise::Transport::Error) say("err " + err);
            else say("frames " + (frames.empty() ? std::string("-") : frames));
        } else {
            say("err unknown command");
        }
    }
    return 0;
}
