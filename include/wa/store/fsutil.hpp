// Durable, symlink-safe file operations for the state directory. All functions
// return false and fill *err (if err is non-null) on failure; none throw.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace wa {

// Replaces `path` atomically: readers see either the old or the new content,
// and after a crash at any point the file is one or the other. The data goes
// to `path.tmp.<pid>.<random>` (created exclusively, never through a symlink),
// is fsynced, renamed over `path`, and the directory is fsynced so the rename
// itself is durable. The file gets exactly `mode` regardless of the umask.
bool write_file_atomic(const std::string& path, std::string_view data, unsigned mode, std::string* err);

// Reads a whole regular file; refuses files larger than max_bytes so a
// corrupted or hostile state file cannot exhaust memory.
bool read_file(const std::string& path, std::string& out, size_t max_bytes, std::string* err);

// Creates `path` (and missing parents) with `mode`, each new directory made
// durable (fsync of its parent); succeeds only if it ends up a real directory,
// not a symlink to one.
bool ensure_dir(const std::string& path, unsigned mode, std::string* err);

// Renames directory `dir` to trash_dir/<name_prefix>.<YYYYmmddTHHMMSSZ>.<4 hex>
// (UTC), creating trash_dir (0700) if needed; never replaces an existing entry.
// A missing `dir` is not an error: returns true with *moved_to empty.
bool move_aside(const std::string& dir, const std::string& trash_dir, const std::string& name_prefix,
                std::string* moved_to, std::string* err);

// Deletes `path` recursively. Symlinks are removed, never followed, so a link
// inside the tree cannot make this delete anything outside it. A missing path
// is not an error.
bool remove_tree(const std::string& path, std::string* err);

}  // namespace wa
