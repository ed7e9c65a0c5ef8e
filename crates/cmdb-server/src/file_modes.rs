//! Who may read the server's files: the data directory is 0700, the database files, the key
//! file and first-start credentials 0600, so another local user on the server host reads no
//! collector key, token or history. Files that exist with wider modes are left as they are (an
//! operator may have reasons) but named in a warning at start.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of directories the server creates.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of files the server creates.
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700; warns when it exists with a wider mode.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        warn_if_wider(dir, PRIVATE_DIR);
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir)
}

/// Creates an empty file with mode 0600 unless it exists (then warns when its mode is wider).
/// SQLite gives its `-wal` and `-shm` files the database file's mode, so creating the database
/// file first is what keeps all three private.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_wider(path, PRIVATE_FILE);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Logs a warning when `path` exists and grants more than `allowed` (group or other bits).
pub fn warn_if_wider(path: &Path, allowed: u32) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    let mode = meta.permissions().mode() & 0o777;
    let wider = mode & !allowed != 0;
    if wider {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            expected = format!("{allowed:o}"),
            "{} is readable by other local users; run chmod {allowed:o} on it",
            path.display()
        );
    }
    wider
}

/// Writes `content` to `path` with mode 0600, atomically (a temporary file in the same
/// directory, synced, then renamed); creates the directory 0700 when missing.
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    private_dir(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file().set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
    file.write_all(content.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `content` to a new file at `path` with mode 0600 from its creation; refuses (with
/// `AlreadyExists`) when the file exists, so a secret never overwrites another.
pub fn create_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE).open(path)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_wider_ones_are_reported() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("a/b");
        private_dir(&data).expect("dir");
        assert_eq!(mode(&data), PRIVATE_DIR);
        let db = data.join("cmdb.db");
        private_file(&db).expect("file");
        assert_eq!(mode(&db), PRIVATE_FILE);
        assert!(!warn_if_wider(&db, PRIVATE_FILE));
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(warn_if_wider(&db, PRIVATE_FILE));
        private_file(&db).expect("existing is left alone");
        assert_eq!(mode(&db), 0o644);
        let key = data.join("k");
        write_private(&key, "x").expect("write");
        assert_eq!((mode(&key), std::fs::read_to_string(&key).expect("read").as_str()), (PRIVATE_FILE, "x"));
    }
}
