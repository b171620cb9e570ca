// JPEG thumbnails for ImageMessage.jpegThumbnail (Baileys messages-media.ts extractImageThumb: 32 px wide, JPEG
// quality 50; whatsmeow leaves it to the caller). Debian's libjpeg-turbo decodes at 1/2, 1/4 or 1/8 scale straight
// from the DCT coefficients, one scanline at a time, so a large photo never sits in memory; the scaled rows are then
// averaged into the thumbnail and encoded again.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace wa::media {

struct ImageInfo {
    uint32_t width = 0, height = 0;  // of the original image
    std::string jpeg_thumbnail;       // empty when none could be made
};

// From a JPEG file (read as it decodes). False (with `err`) for anything libjpeg refuses (not a JPEG, CMYK, broken).
bool jpeg_thumbnail_file(const std::string& path, uint32_t max_side, ImageInfo& out, std::string* err);
// The same from bytes in memory (tests).
bool jpeg_thumbnail(std::string_view jpeg, uint32_t max_side, ImageInfo& out, std::string* err);
// Encodes width × height RGB pixels as a JPEG (tests make their images with it).
bool jpeg_encode_rgb(const std::string& rgb, uint32_t width, uint32_t height, int quality, std::string& out);

}  // namespace wa::media
