#include "wa/store/fsutil.hpp"

#include <openssl/rand.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>

namespace wa {

namespace {

void set_err(std::string* err, const std::string& what, const std::string& path, int errnum) {
    if (!err) return;
    try {
        *err = what + " " + path + ": " + std::strerror(errnum);
    } catch (const std::exception&) {
    }
}

void set_err_msg(std::string* err, const std::string& msg) {
    if (!err) return;
    try {
        *err = msg;
    } catch (const std::exception&) {
    }
}

std::string random_hex(size_t nbytes) {
    unsigned char raw[16];
    if (nbytes > sizeof raw) nbytes = sizeof raw;
    if (RAND_bytes(raw, static_cast<int>(nbytes)) != 1) {
        // Uniqueness, not secrecy, is what matters here; O_EXCL catches clashes.
        for (size_t i = 0; i < nbytes; i++) raw[i] = static_cast<unsigned char>(std::rand());
    }
    static const char hex[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < nbytes; i++) {
        s.push_back(hex[raw[i] >> 4]);
        s.push_back(hex[raw[i] & 15]);
    }
    return s;
}

std::string dir_of(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

int close_keep_errno(int fd) {
    int saved = errno;
    int rc = close(fd);
    errno = saved;
    return rc;
}

bool fsync_dir(const std::string& dir, std::string* err) {
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, "open directory", dir, errno);
        return false;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        set_err(err, "fsync directory", dir, e);
        return false;
    }
    close(fd);
    return true;
}

bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (w == 0) {
            errno = EIO;
            return false;
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// Empties the directory open as `dfd` (which this function closes).
bool remove_contents(int dfd, const std::string& shown, std::string* err) {
    DIR* d = fdopendir(dfd);
    if (!d) {
        set_err(err, "opendir", shown, errno);
        close(dfd);
        return false;
    }
    bool ok = true;
    for (;;) {
        errno = 0;
        struct dirent* de = readdir(d);
        if (!de) {
            if (errno != 0) {
                set_err(err, "readdir", shown, errno);
                ok = false;
            }
            break;
        }
        const char* name = de->d_name;
        if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
        std::string child = shown + "/" + name;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            set_err(err, "stat", child, errno);
            ok = false;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            // O_NOFOLLOW: if the entry was swapped for a symlink since fstatat,
            // this fails instead of descending into the link target.
            int cfd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0) {
                set_err(err, "open", child, errno);
                ok = false;
                break;
            }
            if (!remove_contents(cfd, child, err)) {
                ok = false;
                break;
            }
            if (unlinkat(dirfd(d), name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
                set_err(err, "rmdir", child, errno);
                ok = false;
                break;
            }
        } else if (unlinkat(dirfd(d), name, 0) != 0 && errno != ENOENT) {
            set_err(err, "unlink", child, errno);
            ok = false;
            break;
        }
    }
    closedir(d);
    return ok;
}

}  // namespace

bool write_file_atomic(const std::string& path, std::string_view data, unsigned mode, std::string* err) {
    try {
        std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + random_hex(8);
        int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, static_cast<mode_t>(mode));
        if (fd < 0) {
            set_err(err, "create", tmp, errno);
            return false;
        }
        const char* step = nullptr;
        // The umask may have cleared bits the caller asked for.
        if (fchmod(fd, static_cast<mode_t>(mode)) != 0)
            step = "chmod";
        else if (!write_all(fd, data.data(), data.size()))
            step = "write";
        else if (fsync(fd) != 0)
            step = "fsync";
        if (step) {
            int e = errno;
            close(fd);
            unlink(tmp.c_str());
            set_err(err, step, tmp, e);
            return false;
        }
        if (close(fd) != 0) {
            int e = errno;
            unlink(tmp.c_str());
            set_err(err, "close", tmp, e);
            return false;
        }
        if (rename(tmp.c_str(), path.c_str()) != 0) {
            int e = errno;
            unlink(tmp.c_str());
            set_err(err, "rename to", path, e);
            return false;
        }
        return fsync_dir(dir_of(path), err);
    } catch (const std::exception&) {
        set_err_msg(err, "out of memory writing " + path);
        return false;
    }
}

bool read_file(const std::string& path, std::string& out, size_t max_bytes, std::string* err) {
    out.clear();
    try {
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            set_err(err, "open", path, errno);
            return false;
        }
        struct stat st;
        if (fstat(fd, &st) != 0) {
            set_err(err, "stat", path, errno);
            close_keep_errno(fd);
            return false;
        }
        if (!S_ISREG(st.st_mode)) {
            close(fd);
            set_err_msg(err, path + ": not a regular file");
            return false;
        }
        if (static_cast<unsigned long long>(st.st_size) > max_bytes) {
            close(fd);
            set_err_msg(err, path + ": file too large (" + std::to_string(st.st_size) + " bytes, max " +
                                 std::to_string(max_bytes) + ")");
            return false;
        }
        out.reserve(static_cast<size_t>(st.st_size));
        char buf[65536];
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0) {
                if (errno == EINTR) continue;
                int e = errno;
                close(fd);
                out.clear();
                set_err(err, "read", path, e);
                return false;
            }
            if (n == 0) break;
            // The file may grow after fstat; the limit holds for what is read.
            if (out.size() + static_cast<size_t>(n) > max_bytes) {
                close(fd);
                out.clear();
                set_err_msg(err, path + ": file too large (max " + std::to_string(max_bytes) + " bytes)");
                return false;
            }
            out.append(buf, static_cast<size_t>(n));
        }
        close(fd);
        return true;
    } catch (const std::exception&) {
        out.clear();
        set_err_msg(err, "out of memory reading " + path);
        return false;
    }
}

bool ensure_dir(const std::string& path, unsigned mode, std::string* err) {
    if (path.empty()) {
        set_err_msg(err, "empty directory path");
        return false;
    }
    try {
        // Walk the components so missing parents are created too.
        for (size_t pos = 1; pos <= path.size(); pos++) {
            if (pos != path.size() && path[pos] != '/') continue;
            if (path[pos - 1] == '/') continue;  // "//" or trailing slash
            std::string prefix = path.substr(0, pos);
            if (mkdir(prefix.c_str(), static_cast<mode_t>(mode)) == 0) {
                // mkdir is subject to the umask; the caller's mode is the intent.
                if (chmod(prefix.c_str(), static_cast<mode_t>(mode)) != 0) {
                    set_err(err, "chmod", prefix, errno);
                    return false;
                }
                // The new entry is durable only once its parent directory is.
                if (!fsync_dir(dir_of(prefix), err)) return false;
            } else if (errno != EEXIST) {
                set_err(err, "mkdir", prefix, errno);
                return false;
            }
        }
        struct stat st;
        if (lstat(path.c_str(), &st) != 0) {
            set_err(err, "stat", path, errno);
            return false;
        }
        if (S_ISLNK(st.st_mode)) {
            set_err_msg(err, path + ": is a symlink, not a directory");
            return false;
        }
        if (!S_ISDIR(st.st_mode)) {
            set_err_msg(err, path + ": exists and is not a directory");
            return false;
        }
        return true;
    } catch (const std::exception&) {
        set_err_msg(err, "out of memory creating " + path);
        return false;
    }
}

bool move_aside(const std::string& dir, const std::string& trash_dir, const std::string& name_prefix,
                std::string* moved_to, std::string* err) {
    try {
        if (moved_to) moved_to->clear();
        if (name_prefix.empty() || name_prefix.find('/') != std::string::npos || name_prefix == "." ||
            name_prefix == "..") {
            set_err_msg(err, "invalid trash name prefix");
            return false;
        }
        struct stat st;
        if (lstat(dir.c_str(), &st) != 0) {
            if (errno == ENOENT) return true;
            set_err(err, "stat", dir, errno);
            return false;
        }
        if (!ensure_dir(trash_dir, 0700, err)) return false;

        time_t now = time(nullptr);
        struct tm tm_utc;
        char stamp[32];
        if (!gmtime_r(&now, &tm_utc) || strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm_utc) == 0) {
            set_err_msg(err, "cannot format current time");
            return false;
        }
        for (int attempt = 0; attempt < 8; attempt++) {
            std::string target = trash_dir + "/" + name_prefix + "." + stamp + "." + random_hex(2);
            // rename() would silently replace an existing empty directory;
            // RENAME_NOREPLACE makes a name clash an error we can retry.
            int rc = renameat2(AT_FDCWD, dir.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE);
            if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
                // Filesystem without RENAME_NOREPLACE: check, then rename.
                struct stat tst;
                if (lstat(target.c_str(), &tst) == 0) {
                    errno = EEXIST;
                } else {
                    rc = rename(dir.c_str(), target.c_str());
                }
            }
            if (rc == 0) {
                // Make both directory entries durable; failure here is not fatal
                // to the move itself, which has already happened.
                fsync_dir(trash_dir, nullptr);
                fsync_dir(dir_of(dir), nullptr);
                if (moved_to) *moved_to = target;
                return true;
            }
            if (errno != EEXIST) {
                set_err(err, "rename " + dir + " to", target, errno);
                return false;
            }
        }
        set_err_msg(err, "could not find a free name in " + trash_dir);
        return false;
    } catch (const std::exception&) {
        set_err_msg(err, "out of memory moving " + dir);
        return false;
    }
}

bool remove_tree(const std::string& path, std::string* err) {
    try {
        struct stat st;
        if (lstat(path.c_str(), &st) != 0) {
            if (errno == ENOENT) return true;
            set_err(err, "stat", path, errno);
            return false;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (unlink(path.c_str()) != 0 && errno != ENOENT) {
                set_err(err, "unlink", path, errno);
                return false;
            }
            return true;
        }
        int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            set_err(err, "open", path, errno);
            return false;
        }
        if (!remove_contents(fd, path, err)) return false;
        if (rmdir(path.c_str()) != 0 && errno != ENOENT) {
            set_err(err, "rmdir", path, errno);
            return false;
        }
        return true;
    } catch (const std::exception&) {
        set_err_msg(err, "out of memory removing " + path);
        return false;
    }
}

}  // namespace wa
