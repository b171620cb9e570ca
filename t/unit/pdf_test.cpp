// wa::media::PdfPageCounter: the page count of a PDF from its bytes in pieces, or 0 when not certain.
#include <gtest/gtest.h>

#include <string>

#include "wa/media/pdf.hpp"

namespace {

using wa::media::PdfPageCounter;

// A small PDF as ReportLab or a browser writes it: a page tree, `pages` leaf pages, one xref, one %%EOF.
std::string pdf(int pages, const std::string& page_type = "/Type /Page", const std::string& extra = "") {
    std::string s = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n";
    s += "2 0 obj\n<< /Type /Pages /Kids [";
    for (int i = 0; i < pages; i++) s += std::to_string(3 + i) + " 0 R ";
    s += "] /Count " + std::to_string(pages) + " >>\nendobj\n";
    for (int i = 0; i < pages; i++)
        s += std::to_string(3 + i) + " 0 obj\n<<" + page_type + " /Parent 2 0 R /MediaBox [0 0 612 792]>>\nendobj\n";
    s += extra;
    s += "xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n9\n%%EOF\n";
    return s;
}

uint32_t count(const std::string& file, size_t piece) {
    PdfPageCounter c;
    for (size_t i = 0; i < file.size(); i += piece) c.feed(std::string_view(file).substr(i, piece));
    return c.pages();
}

TEST(PdfPages, CountsLeafPagesInPiecesOfAnySize) {
    for (int pages : {1, 3, 40}) {
        std::string f = pdf(pages);
        for (size_t piece = 1; piece <= 80; piece++) ASSERT_EQ(count(f, piece), static_cast<uint32_t>(pages)) << pages << " pages, pieces of " << piece;
        EXPECT_EQ(count(f, 65536), static_cast<uint32_t>(pages));
    }
    // Written without spaces, or with a line break between the name and its value.
    EXPECT_EQ(count(pdf(2, "/Type/Page"), 7), 2u);
    EXPECT_EQ(count(pdf(2, "/Type\r\n/Page"), 3), 2u);
    EXPECT_EQ(count(pdf(2, "/Type /Page/Parent"), 5), 2u);  // a delimiter right after: still a page
}

TEST(PdfPages, UnknownWhenNotCertain) {
    EXPECT_EQ(count(pdf(0), 64), 0u);
    // Page objects may sit in compressed object streams.
    EXPECT_EQ(count(pdf(2, "/Type /Page", "9 0 obj\n<< /Type /ObjStm /N 4 /First 20 /Length 0 >>\nstream\nendstream\nendobj\n"), 11), 0u);
    // An incremental update (a second %%EOF) may replace or remove pages.
    EXPECT_EQ(count(pdf(2) + "3 0 obj\n<< /Type /Page >>\nendobj\nstartxref\n99\n%%EOF\n", 13), 0u);
    // No %%EOF at all: a truncated file.
    std::string cut = pdf(2);
    EXPECT_EQ(count(cut.substr(0, cut.find("%%EOF")), 9), 0u);
    // Names that only start like /Page are not pages.
    EXPECT_EQ(count(pdf(2, "/Type /PageLabel"), 6), 0u);
}

}  // namespace
