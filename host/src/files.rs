//! Writing a file so that a reader, a racing writer or a crash never sees
//! half of it.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temp file of its own beside `path` (racing writers
/// never share one), syncs it, then renames it over `path`: readers see the
/// old file or the whole new one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
