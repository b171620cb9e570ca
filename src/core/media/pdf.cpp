#include "wa/media/pdf.hpp"

#include <cstring>

namespace wa::media {

namespace {

constexpr size_t kTail = 64;  // longer than any token looked for, with room for whitespace between its parts

bool pdf_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\0'; }
bool pdf_delimiter(char c) { return pdf_space(c) || std::strchr("()<>[]{}/%", c) != nullptr; }

}  // namespace

// Only matches that end in the new bytes count (`new_from` is where they start in `buf`): the tail was scanned
// with the previous piece. A match still open at the end of `buf` is found again with the next piece.
void PdfPageCounter::scan(std::string_view buf, size_t new_from) {
    for (size_t at = buf.find('/'); at != std::string_view::npos; at = buf.find('/', at + 1)) {
        std::string_view rest = buf.substr(at);
        if (rest.substr(0, 7) == "/ObjStm" && at + 7 > new_from) unsure_ = true;
        if (rest.substr(0, 5) != "/Type") continue;
        size_t k = at + 5;
        while (k < buf.size() && pdf_space(buf[k])) k++;
        if (buf.substr(k, 5) != "/Page" || k + 5 >= buf.size()) continue;  // (at the very end: next piece decides)
        if (pdf_delimiter(buf[k + 5]) && k + 5 >= new_from) pages_++;
    }
    for (size_t at = buf.find("%%EOF"); at != std::string_view::npos; at = buf.find("%%EOF", at + 1))
        if (at + 5 > new_from) eofs_++;
}

void PdfPageCounter::feed(std::string_view bytes) {
    if (bytes.empty()) return;
    std::string buf;
    buf.reserve(tail_.size() + bytes.size());
    buf.append(tail_).append(bytes);
    scan(buf, tail_.size());
    tail_ = buf.substr(buf.size() > kTail ? buf.size() - kTail : 0);
}

}  // namespace wa::media
