#include "wa/session/deadlines.hpp"

namespace wa {

void Deadlines::set(Kind kind, uint64_t at_ms, const std::string& key) {
    cancel(kind, key);
    items_.insert(Item{at_ms, kind, key});
}

void Deadlines::cancel(Kind kind, const std::string& key) {
    for (auto it = items_.begin(); it != items_.end(); ++it) {
        if (it->kind == kind && it->key == key) {
            items_.erase(it);
            return;
        }
    }
}

void Deadlines::cancel_all(Kind kind) {
    for (auto it = items_.begin(); it != items_.end();) it = it->kind == kind ? items_.erase(it) : std::next(it);
}

bool Deadlines::has(Kind kind, const std::string& key) const {
    for (const Item& i : items_)
        if (i.kind == kind && i.key == key) return true;
    return false;
}

uint64_t Deadlines::earliest() const { return items_.empty() ? 0 : items_.begin()->at; }

std::vector<Deadlines::Due> Deadlines::take_due(uint64_t now_ms) {
    std::vector<Due> due;
    while (!items_.empty() && items_.begin()->at <= now_ms) {
        due.push_back(Due{items_.begin()->kind, items_.begin()->key});
        items_.erase(items_.begin());
    }
    return due;
}

}  // namespace wa
