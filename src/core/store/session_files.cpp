// One-time move of the foundation's <state_dir>/<org>/session.json files into the store (see
// migrate_session_files in store.hpp). Every path below the state directory is reached with openat and
// O_NOFOLLOW from an open directory, so neither a symlinked organization directory nor a symlinked or FIFO
// session.json is ever followed or waited on; organization ids are checked with wa::valid_org_id first.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <set>

#include "wa/store/state_file.hpp"
#include "wa/store/store.hpp"
#include "wa/api/validate.hpp"

namespace wa::store {

namespace {

constexpr size_t kMaxSessionFile = 1 << 20;  // the foundation's own limit
const char* const kSessionFile = "session.json";

// Closes a descriptor on every path out.
class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }
    bool ok() const { return fd_ >= 0; }

private:
    int fd_;
};

enum class Found { Yes, No, Refused };

struct SessionFile {
    std::string org;
    OrgRecord record;
};

std::string why_errno(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
}

// The organization ids among the state directory's entries (".trash", "owner.lock" and the like are not).
bool list_org_ids(int state_fd, std::vector<std::string>& ids, std::string& err) {
    int fd = dup(state_fd);
    DIR* d = fd >= 0 ? fdopendir(fd) : nullptr;
    if (!d) {
        err = why_errno("cannot list the state directory");
        if (fd >= 0) close(fd);
        return false;
    }
    while (struct dirent* e = readdir(d)) {
        if (wa::valid_org_id(e->d_name)) ids.emplace_back(e->d_name);
    }
    closedir(d);
    std::sort(ids.begin(), ids.end());
    return true;
}

// Opens <org>/ below the state directory; a symlink is refused, anything but a directory is not ours.
Found open_org_dir(int state_fd, const std::string& org, int& dir_fd, std::string& why) {
    struct stat st;
    if (fstatat(state_fd, org.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Found::No;
    if (S_ISLNK(st.st_mode)) {
        why = "the organization directory is a symbolic link";
        return Found::Refused;
    }
    if (!S_ISDIR(st.st_mode)) return Found::No;
    dir_fd = openat(state_fd, org.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd >= 0) return Found::Yes;
    why = why_errno("cannot open the organization directory");
    return Found::Refused;
}

bool read_all(int fd, size_t size, std::string& text) {
    text.resize(size);
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, &text[done], size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += static_cast<size_t>(n);
    }
    return true;
}

// session.json as a regular file of sane size, never through a symlink, never blocking on a FIFO.
Found read_session_json(int dir_fd, std::string& text, std::string& why) {
    Fd fd(openat(dir_fd, kSessionFile, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd.ok() && errno == ENOENT) return Found::No;
    if (!fd.ok()) {
        why = errno == ELOOP ? "session.json is a symbolic link" : why_errno("cannot open session.json");
        return Found::Refused;
    }
    struct stat st;
    if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        why = "session.json is not a regular file";
        return Found::Refused;
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxSessionFile) {
        why = "session.json is larger than 1 MiB";
        return Found::Refused;
    }
    if (!read_all(fd.get(), static_cast<size_t>(st.st_size), text)) {
        why = "cannot read session.json";
        return Found::Refused;
    }
    return Found::Yes;
}

// The foundation wrote session.json as session.json.tmp.<pid>.<hex>, then renamed it into place: a kill -9 in
// between left the temporary file. It never was state; it is deleted, and the organization's directory with it
// when nothing else is left (each removal made durable).
void remove_foundation_temps(int state_fd, const std::vector<std::string>& ids, MigrationReport& report) {
    static const char kPrefix[] = "session.json.tmp.";
    for (const std::string& org : ids) {
        int raw_dir_fd = -1;
        std::string why;
        if (open_org_dir(state_fd, org, raw_dir_fd, why) != Found::Yes) continue;
        Fd dir_fd(raw_dir_fd);
        int list_fd = dup(dir_fd.get());
        DIR* d = list_fd >= 0 ? fdopendir(list_fd) : nullptr;
        if (!d) {
            if (list_fd >= 0) close(list_fd);
            continue;
        }
        std::vector<std::string> temps;
        bool others = false;
        while (struct dirent* e = readdir(d)) {
            if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
            if (std::strncmp(e->d_name, kPrefix, sizeof(kPrefix) - 1) == 0) temps.emplace_back(e->d_name);
            else others = true;
        }
        closedir(d);
        size_t removed = 0;
        for (const std::string& name : temps) {
            struct stat st;
            // never a directory (unlinkat without AT_REMOVEDIR refuses one anyway); a symlink is only unlinked
            if (fstatat(dir_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
                unlinkat(dir_fd.get(), name.c_str(), 0) == 0)
                removed++;
        }
        if (!removed) continue;
        report.temps_removed += removed;
        fsync(dir_fd.get());
        if (!others && removed == temps.size() && unlinkat(state_fd, org.c_str(), AT_REMOVEDIR) == 0) fsync(state_fd);
    }
}

OrgRecord record_of(const std::string& org, const wa::SessionStatus& s) {
    OrgRecord r;
    r.org = org;
    r.wanted = s.wanted;
    r.state = static_cast<uint8_t>(s.state);
    r.phone = s.phone;
    r.last_error = s.last_error;
    r.state_since = s.state_since;
    r.connected_at = s.connected_at;
    return r;
}

// Reads and parses every organization's file; what cannot be used lands in report.corrupt.
void collect_files(int state_fd, const std::vector<std::string>& ids, std::vector<SessionFile>& files,
                   MigrationReport& report) {
    for (const std::string& org : ids) {
        int raw_dir_fd = -1;
        std::string text, why;
        Found found = open_org_dir(state_fd, org, raw_dir_fd, why);
        Fd dir_fd(raw_dir_fd);
        if (found == Found::Yes) found = read_session_json(dir_fd.get(), text, why);
        wa::SessionStatus status;
        if (found == Found::Yes && !wa::parse_session_file(text, org, status, why)) found = Found::Refused;
        if (found == Found::Refused) report.corrupt.emplace_back(org, why);
        if (found == Found::Yes) files.push_back(SessionFile{org, record_of(org, status)});
    }
}

// Inserts the organizations the store does not have yet, in one transaction.
bool insert_new(Store& store, std::vector<SessionFile>& files, MigrationReport& report, std::string& err) {
    std::vector<OrgRecord> live;
    std::vector<std::pair<std::string, std::string>> corrupt;
    if (!store.begin(&err) || !store.load_orgs(live, corrupt, &err)) return false;
    std::set<std::string> known;
    for (const OrgRecord& r : live) known.insert(r.org);
    for (const auto& c : corrupt) known.insert(c.first);
    std::vector<SessionFile> inserted;
    for (SessionFile& f : files) {
        if (known.count(f.org)) {
            report.left_alone.emplace_back(f.org, "already in the store; session.json left in place");
            continue;
        }
        if (!store.put_org(f.record, &err)) return false;
        inserted.push_back(std::move(f));
    }
    if (!store.commit(&err)) return false;
    files = std::move(inserted);
    return true;
}

// After the commit: the file, then its directory if that leaves it empty, each removal made durable.
void remove_migrated(int state_fd, const std::string& org, MigrationReport& report) {
    Fd dir_fd(openat(state_fd, org.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir_fd.ok() || unlinkat(dir_fd.get(), kSessionFile, 0) != 0) {
        report.left_alone.emplace_back(org, why_errno("migrated, but session.json could not be removed"));
        return;
    }
    fsync(dir_fd.get());
    if (unlinkat(state_fd, org.c_str(), AT_REMOVEDIR) == 0) fsync(state_fd);
}

bool migrate(Store& store, const std::string& state_dir, MigrationReport& report, std::string& err) {
    Fd state_fd(open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!state_fd.ok()) {
        err = "state directory " + state_dir + ": " + std::strerror(errno);
        return false;
    }
    std::vector<std::string> ids;
    if (!list_org_ids(state_fd.get(), ids, err)) return false;
    remove_foundation_temps(state_fd.get(), ids, report);
    std::vector<SessionFile> files;
    collect_files(state_fd.get(), ids, files, report);
    if (!insert_new(store, files, report, err)) {
        store.rollback();
        return false;
    }
    for (const SessionFile& f : files) {
        report.migrated.push_back(f.org);
        remove_migrated(state_fd.get(), f.org, report);
    }
    return true;
}

}  // namespace

bool migrate_session_files(Store& store, const std::string& state_dir, MigrationReport& report, std::string* err) {
    std::string e;
    bool ok = false;
    try {
        report = MigrationReport{};
        ok = migrate(store, state_dir, report, e);
    } catch (const std::exception&) {
        store.rollback();
        e = "out of memory";  // fits in the string's own buffer: assigning it does not allocate
    }
    if (ok || !err) return ok;
    try {
        *err = "session.json migration: " + e;
    } catch (const std::exception&) {
        err->swap(e);  // cannot throw
    }
    return false;
}

}  // namespace wa::store
