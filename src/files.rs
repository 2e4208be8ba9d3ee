//! Opening the files the crate writes (the journal, the log file): regular
//! files only, created with a chosen mode.
//!
//! Opening a FIFO for writing waits for a reader, so a FIFO given as a
//! journal would hang `start()`; a device or a socket is no place for a
//! journal either. The path is looked at before it is opened, so a FIFO is
//! never opened, and the opened file again after, for anything swapped in
//! between the two looks.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// The mode new journal and log files are created with by default: read
/// and write for the owner only (events and logs may name what runs do).
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// Why a file to write could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The path names something that is not a regular file (this kind).
    NotRegular(&'static str),
    /// The OS refused.
    Io(io::Error),
}

impl From<OpenError> for io::Error {
    fn from(error: OpenError) -> io::Error {
        match error {
            OpenError::NotRegular(kind) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a {kind}, not a regular file"),
            ),
            OpenError::Io(error) => error,
        }
    }
}

/// Opens `path` for appending, creating it with `mode` (less the umask)
/// if it does not exist; anything there that is not a regular file (a
/// symbolic link is followed) is refused without being opened.
pub(crate) fn open_append(path: &Path, mode: u32) -> Result<File, OpenError> {
    match std::fs::metadata(path) {
        Ok(meta) => check_kind(&meta.file_type())?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(OpenError::Io(error)),
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let file = options.open(path).map_err(OpenError::Io)?;
    check_kind(&file.metadata().map_err(OpenError::Io)?.file_type())?;
    Ok(file)
}

fn check_kind(file_type: &std::fs::FileType) -> Result<(), OpenError> {
    if file_type.is_file() {
        return Ok(());
    }
    if file_type.is_dir() {
        return Err(OpenError::NotRegular("directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Err(OpenError::NotRegular("FIFO"));
        }
        if file_type.is_socket() {
            return Err(OpenError::NotRegular("socket"));
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return Err(OpenError::NotRegular("device"));
        }
    }
    Err(OpenError::NotRegular("special file"))
}
