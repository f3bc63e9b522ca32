//! `rotor backup`: a consistent copy of the embedded SQLite database, taken by a
//! separate process while `rotor serve` keeps writing.
//!
//! **`VACUUM INTO`, not the online backup API.** `VACUUM INTO` copies the database
//! inside one read transaction: the copy is exactly the snapshot of its first read,
//! and in WAL mode a reader never blocks the writer (nor the writer the reader), so
//! `rotor serve` keeps committing throughout. The online backup API
//! (`sqlite3_backup_step`) copies a few pages per step so it can pause in between,
//! but when another connection — every write of another process is one — changes the
//! source between two steps, the next step starts the copy over. Under a refresh storm
//! a commit lands every few milliseconds, so a stepped backup may never finish
//! (measured with the same SQLite API: 100 pages per step needed ~14 000 steps for a
//! 25 MB file with a commit every 5 ms; 1 000 pages per step did not finish in a
//! minute). Copying everything in one step would avoid the restarts, but then it is a
//! single read transaction like `VACUUM INTO`, which also writes a compact,
//! defragmented file. The one cost of a long read transaction in WAL mode: checkpoints
//! cannot move past its snapshot, so the WAL grows for the duration of the copy and is
//! reset by the first checkpoint after it.
//!
//! The copy is written to a private (0600) temporary file next to the destination,
//! switched to a rollback journal (one self-contained file), checked with
//! `PRAGMA integrity_check`, synced, and only then moved into place, so the
//! destination is never a half-written file. SQLite does not sync what `VACUUM INTO`
//! writes; rotor does, and syncs the directory after the rename.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};

use super::rows::ts;

/// How long the backup's read waits on a lock (a WAL restart, a recovery).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a backup was not made. Whatever the cause, the destination is untouched and no
/// temporary file is left behind.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackupError {
    #[error("there is no SQLite database at {0}")]
    NoDatabase(PathBuf),
    #[error("{0} is not a rotor database (it has no users, sessions and refresh_tokens tables)")]
    NotRotor(PathBuf),
    #[error("{0} already exists; refusing to replace it")]
    Exists(PathBuf),
    #[error("{0} is the database being backed up")]
    SameFile(PathBuf),
    #[error("{0}: SQLite needs a UTF-8 path")]
    NonUtf8Path(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the copy failed its integrity check: {0}")]
    Integrity(String),
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// What a finished backup holds, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackupReport {
    pub path: PathBuf,
    /// Size of the copy in bytes.
    pub bytes: u64,
    pub users: u64,
    /// Sessions neither revoked nor past their absolute end.
    pub sessions: u64,
    /// Refresh tokens neither revoked nor expired: one per usable session.
    pub live_tokens: u64,
    /// The read transaction on the live database (`VACUUM INTO`): the only part that
    /// touches it.
    pub copy: Duration,
    /// Everything: copy, integrity check, counts, sync and rename.
    pub total: Duration,
}

/// Copies the rotor database at `source` to `dest` (see the module documentation).
/// `replace` allows an existing `dest` to be replaced; `now` decides which sessions and
/// tokens count as live in the report. Blocking: run it off the async executor.
pub(crate) fn backup(
    source: &Path,
    dest: &Path,
    replace: bool,
    now: DateTime<Utc>,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    match fs::metadata(source) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(BackupError::NoDatabase(source.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackupError::NoDatabase(source.to_owned()))
        }
        Err(e) => return Err(io_error("cannot read", source)(e)),
    }
    if fs::symlink_metadata(dest).is_ok() {
        if same_file(source, dest) {
            return Err(BackupError::SameFile(dest.to_owned()));
        }
        if !replace {
            return Err(BackupError::Exists(dest.to_owned()));
        }
    }
    let name = dest
        .file_name()
        .ok_or_else(|| BackupError::Io {
            what: "not a file name:",
            path: dest.to_owned(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?
        .to_string_lossy()
        .into_owned();
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let source_db = open_source(source)?;
    let temp =
        TempFile::create(dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple())))?;
    let temp_name = temp
        .path
        .to_str()
        .ok_or_else(|| BackupError::NonUtf8Path(dest.to_owned()))?
        .to_owned();

    let copy_started = Instant::now();
    source_db.execute("VACUUM INTO ?1", [&temp_name])?;
    let copy = copy_started.elapsed();
    drop(source_db);

    let (users, sessions, live_tokens) = check_copy(&temp.path, now)?;
    let file = fs::File::open(&temp.path).map_err(io_error("cannot open", &temp.path))?;
    file.sync_all()
        .map_err(io_error("cannot sync", &temp.path))?;
    let bytes = file
        .metadata()
        .map_err(io_error("cannot read", &temp.path))?
        .len();
    drop(file);
    publish(temp, dest, replace)?;
    sync_dir(&dir)?;
    Ok(BackupReport {
        path: dest.to_owned(),
        bytes,
        users,
        sessions,
        live_tokens,
        copy,
        total: started.elapsed(),
    })
}

/// A read-only connection to the live database: the backup can never write to it.
fn open_source(source: &Path) -> Result<Connection, BackupError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(source, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let tables: u64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'
             AND name IN ('users', 'sessions', 'refresh_tokens')",
        [],
        |r| r.get(0),
    )?;
    if tables != 3 {
        return Err(BackupError::NotRotor(source.to_owned()));
    }
    Ok(conn)
}

/// Makes the copy one self-contained file (rollback journal: no `-wal` beside it),
/// checks it, and counts what it holds.
fn check_copy(path: &Path, now: DateTime<Utc>) -> Result<(u64, u64, u64), BackupError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let _mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
    let mut problems = Vec::new();
    {
        let mut check = conn.prepare("PRAGMA integrity_check")?;
        let mut rows = check.query([])?;
        while let Some(row) = rows.next()? {
            problems.push(row.get::<_, String>(0)?);
        }
    }
    if problems != ["ok"] {
        return Err(BackupError::Integrity(problems.join("; ")));
    }
    let now = ts(now);
    let count = |sql: &str, with_now: bool| -> rusqlite::Result<u64> {
        if with_now {
            conn.query_row(sql, [&now], |r| r.get(0))
        } else {
            conn.query_row(sql, [], |r| r.get(0))
        }
    };
    let users = count("SELECT count(*) FROM users", false)?;
    let sessions = count(
        "SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND absolute_expires_at > ?1",
        true,
    )?;
    let live = count(
        "SELECT count(*) FROM refresh_tokens WHERE is_revoked = 0 AND expires_at > ?1",
        true,
    )?;
    conn.close().map_err(|(_, e)| BackupError::Sqlite(e))?;
    Ok((users, sessions, live))
}

/// Moves the finished copy to `dest`. Without `replace` it is linked there, which
/// fails if `dest` appeared meanwhile: an existing file is never replaced.
fn publish(temp: TempFile, dest: &Path, replace: bool) -> Result<(), BackupError> {
    if !replace {
        match fs::hard_link(&temp.path, dest) {
            Ok(()) => return Ok(()), // `temp` (the other name) is removed on drop
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists(dest.to_owned()))
            }
            // A file system without hard links: check, then rename.
            Err(_) if fs::symlink_metadata(dest).is_ok() => {
                return Err(BackupError::Exists(dest.to_owned()))
            }
            Err(_) => {}
        }
    }
    fs::rename(&temp.path, dest).map_err(io_error("cannot move the copy to", dest))?;
    temp.keep();
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("cannot sync the directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The copy being written: created empty with mode 0600 (SQLite keeps the mode of a
/// file it opens), removed with its journal files unless [`TempFile::keep`] is called.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn create(path: PathBuf) -> Result<Self, BackupError> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(&path)
            .map_err(io_error("cannot create", &path))?;
        Ok(Self { path, keep: false })
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let mut paths = vec![];
        if !self.keep {
            paths.push(self.path.clone());
        }
        for suffix in ["-journal", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            paths.push(PathBuf::from(p));
        }
        for p in paths {
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotor_like(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch(
            "CREATE TABLE users (id TEXT PRIMARY KEY);
             CREATE TABLE sessions (id TEXT PRIMARY KEY, revoked_at TEXT,
                                    absolute_expires_at TEXT NOT NULL);
             CREATE TABLE refresh_tokens (id TEXT PRIMARY KEY, is_revoked INTEGER NOT NULL,
                                          expires_at TEXT NOT NULL);
             INSERT INTO users VALUES ('u1'), ('u2');
             INSERT INTO sessions VALUES ('s1', NULL, '9999-01-01T00:00:00.000000Z'),
                                         ('s2', '2000-01-01T00:00:00.000000Z', '9999-01-01T00:00:00.000000Z');
             INSERT INTO refresh_tokens VALUES ('t1', 0, '9999-01-01T00:00:00.000000Z'),
                                               ('t2', 1, '9999-01-01T00:00:00.000000Z'),
                                               ('t3', 0, '2000-01-01T00:00:00.000000Z');",
        )
        .unwrap();
        c
    }

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rotor-backup-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn copies_counts_and_leaves_one_private_file() {
        let dir = temp_dir();
        let _live = rotor_like(&dir.join("live.db"));
        let dest = dir.join("copy.db");
        let report = backup(&dir.join("live.db"), &dest, false, Utc::now()).unwrap();
        assert_eq!(
            (report.users, report.sessions, report.live_tokens),
            (2, 1, 1)
        );
        assert_eq!(report.bytes, fs::metadata(&dest).unwrap().len());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("copy") || n.starts_with(".copy"))
            .collect();
        names.sort();
        assert_eq!(names, ["copy.db"]);
        // Refuses to replace without `replace`, and replaces with it.
        fs::write(&dest, b"precious").unwrap();
        assert!(matches!(
            backup(&dir.join("live.db"), &dest, false, Utc::now()),
            Err(BackupError::Exists(_))
        ));
        assert_eq!(fs::read(&dest).unwrap(), b"precious");
        backup(&dir.join("live.db"), &dest, true, Utc::now()).unwrap();
        assert_ne!(fs::read(&dest).unwrap(), b"precious");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_missing_foreign_or_identical_database() {
        let dir = temp_dir();
        let now = Utc::now();
        assert!(matches!(
            backup(&dir.join("none.db"), &dir.join("c.db"), false, now),
            Err(BackupError::NoDatabase(_))
        ));
        assert!(!dir.join("none.db").exists());
        Connection::open(dir.join("other.db"))
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(matches!(
            backup(&dir.join("other.db"), &dir.join("c.db"), false, now),
            Err(BackupError::NotRotor(_))
        ));
        let _live = rotor_like(&dir.join("live.db"));
        assert!(matches!(
            backup(&dir.join("live.db"), &dir.join("live.db"), true, now),
            Err(BackupError::SameFile(_))
        ));
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("c.db"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
