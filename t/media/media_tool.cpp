// The streaming media crypto of src/core/media, file to file, for t/media/crosscheck.mjs (make mediatest).
//   media_tool enc <document|image> <mediakey hex> <in> <out>  → "ok <fileSha256 hex> <fileEncSha256 hex> <length>"
//   media_tool dec <document|image> <mediakey hex> <in> <out> [encSha256 hex]
//                                                             → "ok <fileSha256 hex> <length>" | "error <code>"
// Reads and writes in 64 KiB chunks (the same bound as the helper).
#include <cstdio>
#include <string>

#include "wa/media/crypto.hpp"

namespace {
std::string hex(const std::string& b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) s += d[c >> 4], s += d[c & 15];
    return s;
}
std::string unhex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 6) return 2;
    std::string op = argv[1];
    wa::media::Type t;
    if (!wa::media::parse_type(argv[2], t)) return 2;
    std::string key = unhex(argv[3]);
    FILE* in = fopen(argv[4], "rb");
    FILE* out = fopen(argv[5], "wb");
    if (!in || !out) return 2;
    std::string buf(65536, '\0'), o;
    if (op == "enc") {
        wa::media::Encryptor e;
        if (!e.init(key, t)) return puts("error init"), 1;
        size_t n;
        while ((n = fread(buf.data(), 1, buf.size(), in)) > 0) {
            o.clear();
            if (!e.update(std::string_view(buf.data(), n), o)) return puts("error update"), 1;
            fwrite(o.data(), 1, o.size(), out);
        }
        o.clear();
        if (!e.final(o)) return puts("error final"), 1;
        fwrite(o.data(), 1, o.size(), out);
        printf("ok %s %s %llu\n", hex(e.file_sha256()).c_str(), hex(e.file_enc_sha256()).c_str(),
               static_cast<unsigned long long>(e.plain_length()));
    } else if (op == "dec") {
        wa::media::Decryptor d;
        if (!d.init(key, t)) return puts("error init"), 1;
        size_t n;
        while ((n = fread(buf.data(), 1, buf.size(), in)) > 0) {
            o.clear();
            if (!d.update(std::string_view(buf.data(), n), o)) return puts("error update"), 1;
            fwrite(o.data(), 1, o.size(), out);
        }
        o.clear();
        if (!d.final(o, argc > 6 ? unhex(argv[6]) : std::string())) {
            static const char* names[] = {"none", "too_short", "bad_mac", "bad_padding", "bad_enc_sha256", "crypto"};
            printf("error %s\n", names[static_cast<int>(d.error())]);
            return 1;
        }
        fwrite(o.data(), 1, o.size(), out);
        printf("ok %s %llu\n", hex(d.file_sha256()).c_str(), static_cast<unsigned long long>(d.plain_length()));
    } else {
        return 2;
    }
    return fclose(out) == 0 ? 0 : 1;
}
