// Cross-check driver for the binary node codec (used by t/codec/crosscheck.mjs).
// Reads commands on stdin, one per line, and answers each with exactly one line:
//   D <hex frame>   decode (flags byte first), re-encode  ->  "OK <hex re-encoding> <node json>" | "ERR <message>"
//   E <node json>   encode                                ->  "OK <hex frame>" | "ERR <message>"
// Node JSON: {"tag": H, "attrs": [[H, H], ...], "content": null | {"b": H} | {"s": H} | [node, ...]}
// where every H is a hex string (byte-exact; "b" = binary content, "s" = string content).
#include <jansson.h>

#include <iostream>
#include <string>

#include "wa/codec/binary.hpp"

namespace {

std::string to_hex(const std::string& s) {
    static const char d[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size() * 2);
    for (unsigned char c : s) {
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}

bool from_hex(const char* h, std::string& out) {
    out.clear();
    if (!h) return false;
    std::string s(h);
    if (s.size() % 2) return false;
    for (size_t i = 0; i < s.size(); i += 2) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[i + size_t(k)];
            int x = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
            if (x < 0) return false;
            v = v * 16 + x;
        }
        out.push_back(char(v));
    }
    return true;
}

json_t* node_json(const wa::Node& n) {
    json_t* o = json_object();
    json_object_set_new(o, "tag", json_string(to_hex(n.tag).c_str()));
    json_t* attrs = json_array();
    for (const auto& kv : n.attrs) {
        json_t* pair = json_array();
        json_array_append_new(pair, json_string(to_hex(kv.first).c_str()));
        json_array_append_new(pair, json_string(to_hex(kv.second).c_str()));
        json_array_append_new(attrs, pair);
    }
    json_object_set_new(o, "attrs", attrs);
    switch (n.kind) {
    case wa::Node::Content::None: json_object_set_new(o, "content", json_null()); break;
    case wa::Node::Content::Bytes: {
        json_t* c = json_object();
        json_object_set_new(c, n.bytes_is_string ? "s" : "b", json_string(to_hex(n.bytes).c_str()));
        json_object_set_new(o, "content", c);
        break;
    }
    case wa::Node::Content::Children: {
        json_t* c = json_array();
        for (const wa::Node& ch : n.children) json_array_append_new(c, node_json(ch));
        json_object_set_new(o, "content", c);
        break;
    }
    }
    return o;
}

bool json_node(json_t* o, wa::Node& n, std::string& err, int depth = 0) {
    if (depth > 100 || !json_is_object(o)) return err = "node is not an object", false;
    if (!from_hex(json_string_value(json_object_get(o, "tag")), n.tag)) return err = "bad tag", false;
    json_t* attrs = json_object_get(o, "attrs");
    if (attrs && !json_is_array(attrs)) return err = "bad attrs", false;
    size_t i;
    json_t* v;
    if (attrs) json_array_foreach(attrs, i, v) {
            std::string k, val;
            if (!json_is_array(v) || !from_hex(json_string_value(json_array_get(v, 0)), k) ||
                !from_hex(json_string_value(json_array_get(v, 1)), val))
                return err = "bad attr", false;
            n.attrs.emplace_back(k, val);
        }
    json_t* c = json_object_get(o, "content");
    if (!c || json_is_null(c)) {
        n.kind = wa::Node::Content::None;
    } else if (json_is_array(c)) {
        n.kind = wa::Node::Content::Children;
        json_array_foreach(c, i, v) {
            n.children.emplace_back();
            if (!json_node(v, n.children.back(), err, depth + 1)) return false;
        }
    } else if (json_is_object(c)) {
        n.kind = wa::Node::Content::Bytes;
        json_t* b = json_object_get(c, "b");
        json_t* s = json_object_get(c, "s");
        n.bytes_is_string = s != nullptr;
        if (!from_hex(json_string_value(b ? b : s), n.bytes)) return err = "bad content", false;
    } else {
        return err = "bad content", false;
    }
    return true;
}

}  // namespace

int main() {
    std::ios::sync_with_stdio(false);
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.size() < 2 || line[1] != ' ') {
            std::cout << "ERR bad command\n";
            continue;
        }
        std::string arg = line.substr(2), err;
        if (line[0] == 'D') {
            std::string frame;
            wa::Node n;
            if (!from_hex(arg.c_str(), frame)) {
                std::cout << "ERR bad hex\n";
            } else if (!wa::decode(frame, n, &err)) {
                std::cout << "ERR " << err << "\n";
            } else {
                std::string again;
                if (!wa::encode(n, again, &err)) {
                    std::cout << "ERR re-encode: " << err << "\n";
                } else {
                    json_t* j = node_json(n);
                    char* s = json_dumps(j, JSON_COMPACT);
                    std::cout << "OK " << to_hex(again) << " " << s << "\n";
                    free(s);
                    json_decref(j);
                }
            }
        } else if (line[0] == 'E') {
            json_error_t jerr;
            json_t* j = json_loads(arg.c_str(), 0, &jerr);
            wa::Node n;
            std::string out;
            if (!j) {
                std::cout << "ERR bad json: " << jerr.text << "\n";
            } else if (!json_node(j, n, err)) {
                std::cout << "ERR " << err << "\n";
            } else if (!wa::encode(n, out, &err)) {
                std::cout << "ERR " << err << "\n";
            } else {
                std::cout << "OK " << to_hex(out) << "\n";
            }
            json_decref(j);
        } else {
            std::cout << "ERR bad command\n";
        }
    }
    return 0;
}
