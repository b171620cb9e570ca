// The SQLite schema of wa::store and its migrations, tracked in PRAGMA user_version.
#pragma once

#include <string>

namespace wa::store::sqlite {

class Db;

// The schema version this build writes (the number of migrations it knows).
int newest_schema_version();

// The SQL of migration `version` (1..newest_schema_version()), nullptr otherwise. For the unit tests, which
// build a database as an earlier release left it.
const char* migration_sql(int version);

// Brings the database to newest_schema_version(), one transaction per migration. Refuses a database whose
// version is newer than this build (written by a later release): it is left alone.
bool migrate_schema(Db& db, std::string& err);

}  // namespace wa::store::sqlite
