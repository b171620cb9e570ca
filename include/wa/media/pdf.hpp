// The page count of a PDF document message (DocumentMessage.pageCount: "3 pages" under the file name on the
// phone), told from the bytes as they stream by, when that is cheap and certain. whatsmeow leaves it to the caller
// (its DocumentMessage has no count unless the application sets one); WhatsApp's own apps fill it in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace wa::media {

// Counts the leaf page objects ("/Type /Page", not "/Pages") of a PDF fed in pieces of any size. Certain only for
// a file written once without compressed object streams: a "/ObjStm" (PDF 1.5 object streams may hold the page
// objects) or a second "%%EOF" (an incremental update may replace pages; a linearized file repeats some) makes
// the answer 0, unknown, and the message goes without a count.
class PdfPageCounter {
public:
    void feed(std::string_view bytes);
    uint32_t pages() const { return unsure_ || eofs_ != 1 ? 0 : pages_; }

private:
    void scan(std::string_view buf, size_t new_from);
    std::string tail_;  // the end of the previous piece: a token may straddle two pieces
    uint32_t pages_ = 0;
    uint32_t eofs_ = 0;
    bool unsure_ = false;
};

}  // namespace wa::media
