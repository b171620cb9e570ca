#include "wa/store/fsutil.hpp"

#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

namespace {

// prefix + "YYYYmmddTHHMMSSZ" + "." + 4 lowercase hex digits, with a plausible UTC date.
bool trash_name_ok(const std::string& name, const std::string& prefix) {
    if (name.compare(0, prefix.size(), prefix) != 0) return false;
    std::string rest = name.substr(prefix.size());
    const std::string shape = "99999999T999999Z.xxxx";
    if (rest.size() != shape.size()) return false;
    for (size_t i = 0; i < shape.size(); i++) {
        char c = rest[i];
        if (shape[i] == '9' && !(c >= '0' && c <= '9')) return false;
        if (shape[i] == 'x' && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
        if (shape[i] != '9' && shape[i] != 'x' && c != shape[i]) return false;
    }
    time_t now = time(nullptr);
    struct tm tm_utc;
    gmtime_r(&now, &tm_utc);
    char year[8];
    strftime(year, sizeof year, "%Y", &tm_utc);
    return rest.compare(0, 4, year) == 0;
}

class FsUtil : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/wa_fsutil_test_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root_ = tmpl;
    }
    void TearDown() override {
        std::string err;
        EXPECT_TRUE(wa::remove_tree(root_, &err)) << err;
        struct stat st;
        EXPECT_NE(lstat(root_.c_str(), &st), 0);
    }

    static std::vector<std::string> list(const std::string& dir) {
        std::vector<std::string> names;
        DIR* d = opendir(dir.c_str());
        if (!d) return names;
        while (struct dirent* de = readdir(d)) {
            if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) names.push_back(de->d_name);
        }
        closedir(d);
        return names;
    }

    static void write_plain(const std::string& path, const std::string& data) {
        std::ofstream f(path, std::ios::binary);
        f << data;
    }

    static unsigned mode_of(const std::string& path) {
        struct stat st;
        if (lstat(path.c_str(), &st) != 0) return 0xffffffffu;
        return st.st_mode & 07777;
    }

    std::string root_;
};

TEST_F(FsUtil, WriteAtomicModeContentNoLeftovers) {
    std::string path = root_ + "/creds.json";
    std::string err;
    mode_t old = umask(022);
    ASSERT_TRUE(wa::write_file_atomic(path, "{\"a\":1}", 0600, &err)) << err;
    EXPECT_EQ(mode_of(path), 0600u);
    std::string data(1 << 20, '\0');
    for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i * 31 + 7);
    ASSERT_TRUE(wa::write_file_atomic(path, data, 0600, &err)) << err;
    umask(old);

    std::string back;
    ASSERT_TRUE(wa::read_file(path, back, 2 << 20, &err)) << err;
    EXPECT_EQ(back, data);
    EXPECT_EQ(mode_of(path), 0600u);
    EXPECT_EQ(list(root_), std::vector<std::string>{"creds.json"});
}

TEST_F(FsUtil, WriteAtomicModeIgnoresUmask) {
    mode_t old = umask(077);
    std::string err;
    ASSERT_TRUE(wa::write_file_atomic(root_ + "/pub", "x", 0644, &err)) << err;
    umask(old);
    EXPECT_EQ(mode_of(root_ + "/pub"), 0644u);
}

TEST_F(FsUtil, WriteAtomicFailureLeavesNothing) {
    std::string err;
    EXPECT_FALSE(wa::write_file_atomic(root_ + "/missing/file", "x", 0600, &err));
    EXPECT_NE(err.find("No such file or directory"), std::string::npos) << err;
    // Renaming a file over a directory fails after the temp file was written.
    ASSERT_EQ(mkdir((root_ + "/adir").c_str(), 0700), 0);
    err.clear();
    EXPECT_FALSE(wa::write_file_atomic(root_ + "/adir", "x", 0600, &err));
    EXPECT_NE(err.find("Is a directory"), std::string::npos) << err;
    EXPECT_EQ(list(root_), std::vector<std::string>{"adir"});
}

TEST_F(FsUtil, WriteAtomicReplacesSymlinkNotItsTarget) {
    std::string outside = root_ + "/outside";
    write_plain(outside, "keep");
    ASSERT_EQ(symlink(outside.c_str(), (root_ + "/link").c_str()), 0);
    std::string err;
    ASSERT_TRUE(wa::write_file_atomic(root_ + "/link", "new", 0600, &err)) << err;
    std::string back;
    ASSERT_TRUE(wa::read_file(outside, back, 100, &err));
    EXPECT_EQ(back, "keep");
    struct stat st;
    ASSERT_EQ(lstat((root_ + "/link").c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(FsUtil, ReadFileLimits) {
    std::string path = root_ + "/f";
    write_plain(path, "0123456789");
    std::string out, err;
    ASSERT_TRUE(wa::read_file(path, out, 10, &err)) << err;
    EXPECT_EQ(out, "0123456789");
    EXPECT_FALSE(wa::read_file(path, out, 9, &err));
    EXPECT_EQ(out, "");
    EXPECT_NE(err.find("too large"), std::string::npos) << err;
    EXPECT_FALSE(wa::read_file(root_ + "/nope", out, 9, &err));
    EXPECT_NE(err.find("No such file or directory"), std::string::npos) << err;
    EXPECT_FALSE(wa::read_file(root_, out, 1000, &err));
    EXPECT_NE(err.find("not a regular file"), std::string::npos) << err;
    write_plain(root_ + "/empty", "");
    out = "junk";
    ASSERT_TRUE(wa::read_file(root_ + "/empty", out, 0, &err)) << err;
    EXPECT_EQ(out, "");
}

TEST_F(FsUtil, EnsureDir) {
    std::string err;
    std::string deep = root_ + "/a/b/c";
    mode_t old = umask(022);
    ASSERT_TRUE(wa::ensure_dir(deep, 0700, &err)) << err;
    umask(old);
    EXPECT_EQ(mode_of(deep), 0700u);
    EXPECT_EQ(mode_of(root_ + "/a"), 0700u);
    ASSERT_TRUE(wa::ensure_dir(deep + "/", 0700, &err)) << err;  // existing, trailing slash
    ASSERT_TRUE(wa::ensure_dir(deep, 0700, &err)) << err;

    write_plain(root_ + "/file", "x");
    EXPECT_FALSE(wa::ensure_dir(root_ + "/file", 0700, &err));
    EXPECT_NE(err.find("not a directory"), std::string::npos) << err;

    ASSERT_EQ(symlink(deep.c_str(), (root_ + "/dlink").c_str()), 0);
    EXPECT_FALSE(wa::ensure_dir(root_ + "/dlink", 0700, &err));
    EXPECT_NE(err.find("symlink"), std::string::npos) << err;
    EXPECT_FALSE(wa::ensure_dir("", 0700, &err));
}

TEST_F(FsUtil, MoveAside) {
    std::string org = root_ + "/orgs/acme";
    std::string trash = root_ + "/trash";
    std::string err, moved;
    ASSERT_TRUE(wa::ensure_dir(org, 0700, &err)) << err;
    write_plain(org + "/creds.json", "secret");

    ASSERT_TRUE(wa::move_aside(org, trash, "acme", &moved, &err)) << err;
    EXPECT_TRUE(trash_name_ok(moved, trash + "/acme.")) << moved;
    EXPECT_EQ(mode_of(trash), 0700u);
    struct stat st;
    EXPECT_NE(lstat(org.c_str(), &st), 0);
    std::string back;
    ASSERT_TRUE(wa::read_file(moved + "/creds.json", back, 100, &err)) << err;
    EXPECT_EQ(back, "secret");

    // A second move of a recreated directory gets a distinct name.
    ASSERT_TRUE(wa::ensure_dir(org, 0700, &err)) << err;
    std::string moved2;
    ASSERT_TRUE(wa::move_aside(org, trash, "acme", &moved2, &err)) << err;
    EXPECT_NE(moved2, moved);
    EXPECT_EQ(list(trash).size(), 2u);

    // Missing source: success, nothing moved.
    moved = "stale";
    ASSERT_TRUE(wa::move_aside(org, trash, "acme", &moved, &err)) << err;
    EXPECT_EQ(moved, "");
    EXPECT_EQ(list(trash).size(), 2u);

    EXPECT_FALSE(wa::move_aside(root_ + "/orgs", trash, "../x", &moved, &err));
}

TEST_F(FsUtil, RemoveTreeDoesNotFollowSymlinks) {
    std::string outside = root_ + "/outside";
    ASSERT_EQ(mkdir(outside.c_str(), 0700), 0);
    write_plain(outside + "/precious", "keep me");

    std::string tree = root_ + "/tree";
    std::string err;
    ASSERT_TRUE(wa::ensure_dir(tree + "/sub/deeper", 0700, &err)) << err;
    write_plain(tree + "/a", "1");
    write_plain(tree + "/sub/b", "2");
    write_plain(tree + "/sub/deeper/c", "3");
    ASSERT_EQ(symlink(outside.c_str(), (tree + "/sub/link_to_outside").c_str()), 0);
    ASSERT_EQ(symlink((outside + "/precious").c_str(), (tree + "/file_link").c_str()), 0);

    ASSERT_TRUE(wa::remove_tree(tree, &err)) << err;
    struct stat st;
    EXPECT_NE(lstat(tree.c_str(), &st), 0);
    std::string back;
    ASSERT_TRUE(wa::read_file(outside + "/precious", back, 100, &err)) << err;
    EXPECT_EQ(back, "keep me");
    EXPECT_EQ(list(root_), std::vector<std::string>{"outside"});

    // A symlink given as the root is unlinked itself, its target untouched.
    ASSERT_EQ(symlink(outside.c_str(), (root_ + "/rootlink").c_str()), 0);
    ASSERT_TRUE(wa::remove_tree(root_ + "/rootlink", &err)) << err;
    EXPECT_EQ(list(outside), std::vector<std::string>{"precious"});

    EXPECT_TRUE(wa::remove_tree(root_ + "/does-not-exist", &err)) << err;
}

}  // namespace
