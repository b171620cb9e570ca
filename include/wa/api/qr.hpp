// QR code rendering for the pairing page (libqrencode + a minimal PNG writer).
#pragma once

#include <string>
#include <string_view>

namespace wa {

// PNG (1-bit grayscale) of `text` at error-correction level M, with each module
// drawn as pixels_per_module^2 pixels and a quiet zone of quiet_zone_modules on
// every side, so the image is (modules + 2 * quiet_zone) * pixels_per_module
// pixels square. Returns "" on failure (text too long for a QR code, bad
// sizes: pixels_per_module must be 1..64 and quiet_zone_modules 0..16).
std::string qr_png(std::string_view text, int pixels_per_module = 8, int quiet_zone_modules = 4);

// "data:image/png;base64,..." of qr_png(text) with default sizes, or "" on failure.
std::string qr_png_data_url(std::string_view text);

}  // namespace wa
