// See include/wa/media/thumbnail.hpp. libjpeg reports errors through error_exit, which must not return: it longjmps
// back here (nothing with a destructor lives between setjmp and the calls that may jump).
#include "wa/media/thumbnail.hpp"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

extern "C" {
#include <jpeglib.h>
}

namespace wa::media {

namespace {

struct ErrorMgr {
    jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
    auto* e = reinterpret_cast<ErrorMgr*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}
void on_message(j_common_ptr, int) {}  // warnings (corrupt data recovered) are not printed

// Decodes the header and the scaled rows, box-averaging them into `sums`. All state the longjmp may skip over is
// plain memory owned by the caller.
struct Decode {
    jpeg_decompress_struct cinfo;
    ErrorMgr err;
    uint32_t tw = 0, th = 0;
    std::vector<uint64_t>* sums = nullptr;
    std::vector<uint32_t>* counts = nullptr;
    std::vector<unsigned char>* row = nullptr;
};

template <typename Setup>
bool run_decode(Decode& d, Setup& setup, uint32_t max_side, uint32_t& width, uint32_t& height, std::string& why) {
    d.cinfo.err = jpeg_std_error(&d.err.pub);
    d.err.pub.error_exit = on_error;
    d.err.pub.emit_message = on_message;
    if (setjmp(d.err.jump)) {
        why = d.err.message;
        return false;
    }
    jpeg_create_decompress(&d.cinfo);
    setup(d.cinfo);
    jpeg_read_header(&d.cinfo, TRUE);
    width = d.cinfo.image_width;
    height = d.cinfo.image_height;
    if (width == 0 || height == 0 || width > 65535 || height > 65535) {
        why = "image dimensions out of range";
        return false;
    }
    // The largest DCT scaling that still leaves at least max_side pixels on the longer side.
    uint32_t longer = width > height ? width : height;
    unsigned denom = 1;
    while (denom < 8 && longer / (denom * 2) >= max_side) denom *= 2;
    d.cinfo.scale_num = 1;
    d.cinfo.scale_denom = denom;
    d.cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&d.cinfo);
    uint32_t ow = d.cinfo.output_width, oh = d.cinfo.output_height;
    if (d.cinfo.output_components != 3 || ow == 0 || oh == 0) {
        why = "not an RGB image";
        return false;
    }
    uint32_t olonger = ow > oh ? ow : oh;
    uint32_t side = olonger < max_side ? olonger : max_side;
    d.tw = ow >= oh ? side : (ow * side + oh / 2) / oh;
    d.th = oh >= ow ? side : (oh * side + ow / 2) / ow;
    if (d.tw == 0) d.tw = 1;
    if (d.th == 0) d.th = 1;
    d.sums->assign(static_cast<size_t>(d.tw) * d.th * 3, 0);
    d.counts->assign(static_cast<size_t>(d.tw) * d.th, 0);
    d.row->resize(static_cast<size_t>(ow) * 3);
    while (d.cinfo.output_scanline < oh) {
        uint32_t y = d.cinfo.output_scanline;
        JSAMPROW rows[1] = {d.row->data()};
        if (jpeg_read_scanlines(&d.cinfo, rows, 1) != 1) break;
        uint32_t ty = static_cast<uint32_t>(static_cast<uint64_t>(y) * d.th / oh);
        for (uint32_t x = 0; x < ow; x++) {
            uint32_t tx = static_cast<uint32_t>(static_cast<uint64_t>(x) * d.tw / ow);
            size_t i = static_cast<size_t>(ty) * d.tw + tx;
            for (int c = 0; c < 3; c++) (*d.sums)[i * 3 + c] += (*d.row)[x * 3 + c];
            (*d.counts)[i]++;
        }
    }
    jpeg_finish_decompress(&d.cinfo);
    return true;
}

struct Encode {
    jpeg_compress_struct cinfo;
    ErrorMgr err;
    unsigned char* buf = nullptr;
    unsigned long size = 0;
};

bool run_encode(Encode& e, const unsigned char* rgb, uint32_t w, uint32_t h, int quality, std::string& why) {
    e.cinfo.err = jpeg_std_error(&e.err.pub);
    e.err.pub.error_exit = on_error;
    e.err.pub.emit_message = on_message;
    if (setjmp(e.err.jump)) {
        why = e.err.message;
        return false;
    }
    jpeg_create_compress(&e.cinfo);
    jpeg_mem_dest(&e.cinfo, &e.buf, &e.size);
    e.cinfo.image_width = w;
    e.cinfo.image_height = h;
    e.cinfo.input_components = 3;
    e.cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&e.cinfo);
    jpeg_set_quality(&e.cinfo, quality, TRUE);
    jpeg_start_compress(&e.cinfo, TRUE);
    while (e.cinfo.next_scanline < h) {
        JSAMPROW rows[1] = {const_cast<unsigned char*>(rgb + static_cast<size_t>(e.cinfo.next_scanline) * w * 3)};
        jpeg_write_scanlines(&e.cinfo, rows, 1);
    }
    jpeg_finish_compress(&e.cinfo);
    return true;
}

bool encode(const unsigned char* rgb, uint32_t w, uint32_t h, int quality, std::string& out, std::string* err) {
    Encode e{};
    std::string why;
    bool ok = run_encode(e, rgb, w, h, quality, why);
    jpeg_destroy_compress(&e.cinfo);
    if (ok) out.assign(reinterpret_cast<const char*>(e.buf), e.size);
    free(e.buf);
    if (!ok && err) *err = why;
    return ok;
}

// `setup` attaches the source to d.cinfo.
template <typename Setup>
bool thumbnail(Setup setup, uint32_t max_side, ImageInfo& out, std::string* err) {
    if (max_side == 0 || max_side > 1024) return false;
    std::vector<uint64_t> sums;
    std::vector<uint32_t> counts;
    std::vector<unsigned char> row;
    Decode d{};
    d.sums = &sums;
    d.counts = &counts;
    d.row = &row;
    std::string why;
    uint32_t w = 0, h = 0;
    bool ok = run_decode(d, setup, max_side, w, h, why);
    jpeg_destroy_decompress(&d.cinfo);
    out.width = w;
    out.height = h;
    if (!ok) {
        if (err) *err = why;
        return false;
    }
    std::string rgb(static_cast<size_t>(d.tw) * d.th * 3, '\0');
    for (size_t i = 0; i < counts.size(); i++)
        for (int c = 0; c < 3; c++)
            rgb[i * 3 + c] = static_cast<char>(counts[i] ? sums[i * 3 + c] / counts[i] : 0);
    return encode(reinterpret_cast<const unsigned char*>(rgb.data()), d.tw, d.th, 50, out.jpeg_thumbnail, err);
}

}  // namespace

bool jpeg_thumbnail(std::string_view jpeg, uint32_t max_side, ImageInfo& out, std::string* err) {
    if (jpeg.empty()) return false;
    return thumbnail([&](jpeg_decompress_struct& c) {
        jpeg_mem_src(&c, reinterpret_cast<const unsigned char*>(jpeg.data()), static_cast<unsigned long>(jpeg.size()));
    }, max_side, out, err);
}

bool jpeg_thumbnail_file(const std::string& path, uint32_t max_side, ImageInfo& out, std::string* err) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return false;
    FILE* f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return false;
    }
    bool ok = thumbnail([&](jpeg_decompress_struct& c) { jpeg_stdio_src(&c, f); }, max_side, out, err);
    fclose(f);
    return ok;
}

bool jpeg_encode_rgb(const std::string& rgb, uint32_t width, uint32_t height, int quality, std::string& out) {
    if (width == 0 || height == 0 || rgb.size() != static_cast<size_t>(width) * height * 3) return false;
    return encode(reinterpret_cast<const unsigned char*>(rgb.data()), width, height, quality, out, nullptr);
}

}  // namespace wa::media
