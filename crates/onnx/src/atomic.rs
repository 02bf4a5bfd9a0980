//! Atomic file writes: the contents go to a temporary file next to the target (a
//! `tempfile::NamedTempFile`), which is synced and renamed over the target on commit. A
//! failure or a drop before commit removes the temporary, so the target is never half-written.

use crate::error::{OnnxError, Result};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// A file written under a temporary name and renamed into place on [`AtomicFile::commit`];
/// dropped without commit, the temporary file is removed. Errors name the target.
pub struct AtomicFile {
    target: PathBuf,
    file: BufWriter<NamedTempFile>,
}

impl AtomicFile {
    /// Opens a temporary file (`.NAME.XXXXXX.tmp`) in the folder of `target`.
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let folder = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // Like File::create (mode 0666 less the umask), not tempfile's private 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let file = builder.tempfile_in(folder).map_err(|e| OnnxError::io(target, "cannot create a temporary file next to it", e))?;
        Ok(AtomicFile { target: target.to_path_buf(), file: BufWriter::new(file) })
    }

    /// Appends bytes; `shown` is the path named in an error.
    pub fn write_all(&mut self, bytes: &[u8], shown: &Path) -> Result<()> {
        self.file.write_all(bytes).map_err(|e| OnnxError::io(shown, "cannot write", e))
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        let file = self.file.into_inner().map_err(|e| OnnxError::io(&target, "cannot write", e.into_error()))?;
        file.as_file().sync_all().map_err(|e| OnnxError::io(&target, "cannot sync", e))?;
        file.persist(&target).map_err(|e| OnnxError::io(&target, "cannot rename into place", e.error))?;
        Ok(())
    }
}

/// Writing through [`AtomicFile`] as a stream (e.g. a zip archive), buffered.
impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Writes `contents` to `path` atomically.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(contents, path)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn commit_replaces_the_target_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old contents").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["out.bin"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let created = dir.path().join("plain");
            std::fs::File::create(&created).unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), mode(&created), "same permissions as a file created the ordinary way");
        }
    }

    #[test]
    fn a_file_dropped_before_commit_leaves_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(&[7; 100_000], &path).unwrap();
        assert_eq!(entries(dir.path()).len(), 2, "the temporary sits next to the target");
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn errors_name_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/out.bin");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("missing/out.bin"), "{err}");
        // The target is a folder: the rename fails and the temporary is removed.
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("inside"), b"x").unwrap();
        let err = write_atomic(&folder, b"x").unwrap_err().to_string();
        assert!(err.contains("folder") && err.contains("rename"), "{err}");
        assert_eq!(entries(dir.path()), ["folder"]);
    }
}
