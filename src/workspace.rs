//! A workspace: one folder holding a configuration copy, the job store, raw data and logs,
//! so runs can be isolated from each other (`--workspace` / `AVESA_WORKSPACE`).

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Workspace {
    pub root: PathBuf,
}

impl Workspace {
    /// The folder given, else `$XDG_DATA_HOME/avesa-console`, else `~/.local/share/avesa-console`.
    pub fn resolve(given: Option<PathBuf>) -> Workspace {
        let root = given.unwrap_or_else(|| {
            let base = std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
                .unwrap_or_else(|| PathBuf::from("."));
            base.join("avesa-console")
        });
        Workspace { root }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    pub fn store_path(&self) -> PathBuf {
        self.root.join("state.db")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Creates the folders that writers expect.
    pub fn ensure(&self) -> std::io::Result<()> {
        for dir in [self.root.clone(), self.data_dir(), self.logs_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        Ok(())
    }
}
