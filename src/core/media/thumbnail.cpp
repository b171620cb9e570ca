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
#include <png.h>

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

// Box-averages the RGB rows of an ow x oh image, one at a time, into a thumbnail whose longer side is at most
// max_side: a large image never sits in memory whole.
struct Shrink {
    uint32_t ow = 0, oh = 0, tw = 0, th = 0;
    std::vector<uint64_t> sums;
    std::vector<uint32_t> counts;

    void start(uint32_t w, uint32_t h, uint32_t max_side) {
        ow = w;
        oh = h;
        uint32_t longer = ow > oh ? ow : oh;
        uint32_t side = longer < max_side ? longer : max_side;
        tw = ow >= oh ? side : (ow * side + oh / 2) / oh;
        th = oh >= ow ? side : (oh * side + ow / 2) / ow;
        if (tw == 0) tw = 1;
        if (th == 0) th = 1;
        sums.assign(static_cast<size_t>(tw) * th * 3, 0);
        counts.assign(static_cast<size_t>(tw) * th, 0);
    }
    void add_row(uint32_t y, const unsigned char* rgb) {
        uint32_t ty = static_cast<uint32_t>(static_cast<uint64_t>(y) * th / oh);
        for (uint32_t x = 0; x < ow; x++) {
            uint32_t tx = static_cast<uint32_t>(static_cast<uint64_t>(x) * tw / ow);
            size_t i = static_cast<size_t>(ty) * tw + tx;
            for (int c = 0; c < 3; c++) sums[i * 3 + c] += rgb[x * 3 + c];
            counts[i]++;
        }
    }
    std::string rgb() const {
        std::string out(static_cast<size_t>(tw) * th * 3, '\0');
        for (size_t i = 0; i < counts.size(); i++)
            for (int c = 0; c < 3; c++) out[i * 3 + c] = static_cast<char>(counts[i] ? sums[i * 3 + c] / counts[i] : 0);
        return out;
    }
};

// Decodes the header and the scaled rows into the shrink. All state the longjmp may skip over is plain memory
// owned by the caller.
struct Decode {
    jpeg_decompress_struct cinfo;
    ErrorMgr err;
    Shrink* shrink = nullptr;
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
    d.shrink->start(ow, oh, max_side);
    d.row->resize(static_cast<size_t>(ow) * 3);
    while (d.cinfo.output_scanline < oh) {
        uint32_t y = d.cinfo.output_scanline;
        JSAMPROW rows[1] = {d.row->data()};
        if (jpeg_read_scanlines(&d.cinfo, rows, 1) != 1) break;
        d.shrink->add_row(y, d.row->data());
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
    Shrink shrink;
    std::vector<unsigned char> row;
    Decode d{};
    d.shrink = &shrink;
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
    std::string rgb = shrink.rgb();
    return encode(reinterpret_cast<const unsigned char*>(rgb.data()), shrink.tw, shrink.th, 50, out.jpeg_thumbnail, err);
}

// PNG, row by row with libpng's transformations to 8-bit RGB (palette and grey expanded, 16-bit stripped, alpha
// composited on white, as a phone shows a transparent screenshot). Interlaced PNGs are refused: their rows only
// come whole after the last pass, which would need the image in memory.
struct PngDecode {
    png_structp png = nullptr;
    png_infop info = nullptr;
    Shrink* shrink = nullptr;
    std::vector<unsigned char>* row = nullptr;
    char message[200] = {0};
};

void png_on_error(png_structp png, png_const_charp msg) {
    auto* d = static_cast<PngDecode*>(png_get_error_ptr(png));
    snprintf(d->message, sizeof d->message, "%s", msg);
    png_longjmp(png, 1);
}
void png_on_warning(png_structp, png_const_charp) {}

bool run_png(PngDecode& d, FILE* f, uint32_t max_side, uint32_t& width, uint32_t& height, std::string& why) {
    if (setjmp(png_jmpbuf(d.png))) {
        why = d.message[0] ? d.message : "libpng failed";
        return false;
    }
    png_init_io(d.png, f);
    png_set_user_limits(d.png, 65535, 65535);
    png_read_info(d.png, d.info);
    width = png_get_image_width(d.png, d.info);
    height = png_get_image_height(d.png, d.info);
    if (png_get_interlace_type(d.png, d.info) != PNG_INTERLACE_NONE) {
        why = "interlaced PNG";
        return false;
    }
    png_set_expand(d.png);      // palette -> RGB, grey < 8 bits -> 8 bits, tRNS -> alpha
    png_set_strip_16(d.png);
    png_set_gray_to_rgb(d.png);
    png_color_16 white = {0, 255, 255, 255, 255};
    png_set_background(d.png, &white, PNG_BACKGROUND_GAMMA_SCREEN, 0, 1.0);  // alpha composited away
    png_read_update_info(d.png, d.info);
    if (png_get_channels(d.png, d.info) != 3 || png_get_bit_depth(d.png, d.info) != 8) {
        why = "PNG colour type not supported";
        return false;
    }
    d.shrink->start(width, height, max_side);
    d.row->resize(png_get_rowbytes(d.png, d.info));
    for (uint32_t y = 0; y < height; y++) {
        png_read_row(d.png, d.row->data(), nullptr);
        d.shrink->add_row(y, d.row->data());
    }
    return true;
}

}  // namespace

bool png_thumbnail_file(const std::string& path, uint32_t max_side, ImageInfo& out, std::string* err) {
    if (max_side == 0 || max_side > 1024) return false;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return false;
    FILE* f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return false;
    }
    Shrink shrink;
    std::vector<unsigned char> row;
    PngDecode d;
    d.shrink = &shrink;
    d.row = &row;
    std::string why = "out of memory";
    uint32_t w = 0, h = 0;
    d.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d, png_on_error, png_on_warning);
    d.info = d.png ? png_create_info_struct(d.png) : nullptr;
    bool ok = d.info && run_png(d, f, max_side, w, h, why);
    png_destroy_read_struct(d.png ? &d.png : nullptr, d.info ? &d.info : nullptr, nullptr);
    fclose(f);
    out.width = w;
    out.height = h;
    if (!ok) {
        if (err) *err = why;
        return false;
    }
    std::string rgb = shrink.rgb();
    return encode(reinterpret_cast<const unsigned char*>(rgb.data()), shrink.tw, shrink.th, 50, out.jpeg_thumbnail, err);
}

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
