#include "wa/api/qr.hpp"

#include "wa/codec/base64.hpp"

#include <qrencode.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <memory>

namespace wa {

namespace {

struct QrFree {
    void operator()(QRcode* q) const { QRcode_free(q); }
};

void put_u32(std::string& out, uint32_t v) {
    out.push_back(static_cast<char>(v >> 24));
    out.push_back(static_cast<char>(v >> 16));
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v));
}

// A PNG chunk is length, type, data, then CRC-32 over type and data.
void put_chunk(std::string& out, const char type[4], const std::string& data) {
    put_u32(out, static_cast<uint32_t>(data.size()));
    size_t crc_start = out.size();
    out.append(type, 4);
    out.append(data);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + crc_start), static_cast<uInt>(out.size() - crc_start));
    put_u32(out, static_cast<uint32_t>(crc));
}

}  // namespace

std::string qr_png(std::string_view text, int pixels_per_module, int quiet_zone_modules) {
    if (text.empty() || pixels_per_module < 1 || pixels_per_module > 64 || quiet_zone_modules < 0 ||
        quiet_zone_modules > 16)
        return std::string();
    try {
        // QRcode_encodeData takes a length, so embedded NULs are safe; it always
        // uses 8-bit mode, which is what a scanner returns byte for byte.
        std::unique_ptr<QRcode, QrFree> qr(QRcode_encodeData(static_cast<int>(text.size()),
                                                             reinterpret_cast<const unsigned char*>(text.data()),
                                                             0, QR_ECLEVEL_M));
        if (!qr || qr->width <= 0) return std::string();

        const size_t modules = static_cast<size_t>(qr->width);
        const size_t ppm = static_cast<size_t>(pixels_per_module);
        const size_t qz = static_cast<size_t>(quiet_zone_modules);
        const size_t side_modules = modules + 2 * qz;
        const size_t side = side_modules * ppm;
        const size_t row_bytes = (side + 7) / 8;

        // One module row rendered once, then repeated ppm times. Filter byte 0
        // (None) per scanline; in 1-bit grayscale a set bit is white.
        std::string raw;
        raw.reserve((row_bytes + 1) * side);
        std::string line(row_bytes, '\0');
        for (size_t my = 0; my < side_modules; my++) {
            std::fill(line.begin(), line.end(), '\0');
            for (size_t mx = 0; mx < side_modules; mx++) {
                bool dark = false;
                if (my >= qz && my < qz + modules && mx >= qz && mx < qz + modules)
                    dark = (qr->data[(my - qz) * modules + (mx - qz)] & 1) != 0;
                if (dark) continue;
                for (size_t px = mx * ppm; px < (mx + 1) * ppm; px++)
                    line[px / 8] = static_cast<char>(line[px / 8] | (0x80 >> (px % 8)));
            }
            // Padding bits past the image edge stay 0; decoders ignore them.
            for (size_t k = 0; k < ppm; k++) {
                raw.push_back('\0');
                raw.append(line);
            }
        }

        uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
        std::string z(zlen, '\0');
        if (compress2(reinterpret_cast<Bytef*>(&z[0]), &zlen, reinterpret_cast<const Bytef*>(raw.data()),
                      static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION) != Z_OK)
            return std::string();
        z.resize(zlen);

        std::string ihdr;
        put_u32(ihdr, static_cast<uint32_t>(side));
        put_u32(ihdr, static_cast<uint32_t>(side));
        ihdr.push_back(1);  // bit depth
        ihdr.push_back(0);  // colour type: grayscale
        ihdr.push_back(0);  // compression: deflate
        ihdr.push_back(0);  // filter method 0
        ihdr.push_back(0);  // no interlace

        std::string png("\x89PNG\r\n\x1a\n", 8);
        put_chunk(png, "IHDR", ihdr);
        put_chunk(png, "IDAT", z);
        put_chunk(png, "IEND", std::string());
        return png;
    } catch (const std::exception&) {
        return std::string();
    }
}

std::string qr_png_data_url(std::string_view text) {
    std::string png = qr_png(text);
    if (png.empty()) return std::string();
    std::string b64 = base64_encode(png);
    if (b64.empty()) return std::string();
    try {
        return "data:image/png;base64," + b64;
    } catch (const std::exception&) {
        return std::string();
    }
}

}  // namespace wa
