// jansson values owned by a unique_ptr, and their compact text: the one shape every JSON writer of the core uses.
#pragma once

#include <jansson.h>

#include <cstdlib>
#include <memory>
#include <string>

namespace wa::json {

struct Deleter {
    void operator()(json_t* j) const { json_decref(j); }
};
using Ptr = std::unique_ptr<json_t, Deleter>;

// Compact, keys in insertion order; "{}" if jansson runs out of memory.
inline std::string dump(json_t* j) {
    char* s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    std::string out = s ? s : "{}";
    free(s);
    return out;
}

}  // namespace wa::json
