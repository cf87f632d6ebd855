//! The app table as operators change it: validated as a whole, turned
//! into whatever the serving side runs from, written durably, and only
//! then published and acknowledged.
//!
//! Changes are serialised by one mutex (the admin path only; the data
//! plane never touches it). A change that fails at any step leaves the
//! running table exactly as it was.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::store::{self, AppTable, StoreError};
use crate::{AppSpec, EdgeConfig};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the app table is invalid")]
    Invalid(Vec<String>),
    #[error("no app is named \"{0}\"")]
    NotFound(String),
    #[error("an app named \"{0}\" already exists")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the change could not be saved, so it was not applied: {0}")]
    Storage(String),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: the stored app table no longer validates against this configuration:\n  - {}", problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

struct Current {
    cfg: EdgeConfig,
    version: u64,
}

/// The edge's app table and its version, backed by the state directory.
pub struct AppTables {
    current: Mutex<Current>,
    state_dir: PathBuf,
}

impl AppTables {
    /// Opens the state directory: the stored app table wins over the
    /// configuration file's apps, which only seed a first start.
    pub fn open(cfg: EdgeConfig, state_dir: &Path) -> Result<AppTables, OpenError> {
        store::ensure_dir(state_dir)?;
        let (cfg, version) = match store::load(state_dir)? {
            Some(table) => {
                let cfg = cfg
                    .with_apps(table.apps)
                    .map_err(|problems| OpenError::Invalid {
                        path: state_dir.join(store::APPS_FILE),
                        problems,
                    })?;
                (cfg, table.version)
            }
            None => {
                let table = AppTable {
                    version: 1,
                    apps: cfg.app_specs.clone(),
                };
                store::save(state_dir, &table)?;
                (cfg, 1)
            }
        };
        Ok(AppTables {
            current: Mutex::new(Current { cfg, version }),
            state_dir: state_dir.to_path_buf(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration in force and its table version.
    pub fn current(&self) -> (EdgeConfig, u64) {
        let cur = self.lock();
        (cur.cfg.clone(), cur.version)
    }

    /// Reads the configuration in force.
    pub fn read<R>(&self, f: impl FnOnce(&EdgeConfig) -> R) -> R {
        f(&self.lock().cfg)
    }

    /// (version, apps as written).
    pub fn apps(&self) -> (u64, Vec<AppSpec>) {
        let cur = self.lock();
        (cur.version, cur.cfg.app_specs.clone())
    }

    /// Applies `edit` to a copy of the table and validates the result;
    /// `build` turns it into what is served (and may still refuse it), the
    /// table is saved, and `publish` hands the built value over. Returns
    /// the new version.
    pub fn change<S>(
        &self,
        edit: impl FnOnce(&mut Vec<AppSpec>) -> Result<(), ApplyError>,
        build: impl FnOnce(&EdgeConfig, u64) -> Result<S, String>,
        publish: impl FnOnce(S),
    ) -> Result<u64, ApplyError> {
        let mut cur = self.lock();
        let mut specs = cur.cfg.app_specs.clone();
        edit(&mut specs)?;
        let cfg = cur.cfg.with_apps(specs).map_err(ApplyError::Invalid)?;
        let version = cur.version + 1;
        let built = build(&cfg, version).map_err(|e| ApplyError::Invalid(vec![e]))?;
        let table = AppTable {
            version,
            apps: cfg.app_specs.clone(),
        };
        store::save(&self.state_dir, &table).map_err(|e| ApplyError::Storage(e.to_string()))?;
        cur.cfg = cfg;
        cur.version = version;
        publish(built);
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("postern-tables-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn config() -> EdgeConfig {
        crate::parse_str(
            r#"
[[listener]]
address = "127.0.0.1:8080"
scheme = "http"
public_port = 80

[[app]]
name = "one"
external_url = "http://one.example/"
internal_url = "http://10.0.0.1/"
preauth = "passthrough"
[app.cookie]
secure = false
"#,
            "test.toml",
            Path::new("/etc/postern"),
        )
        .expect("valid config")
    }

    #[test]
    fn a_change_that_fails_to_build_leaves_table_and_disk_alone() {
        let d = dir("fail");
        let tables = AppTables::open(config(), &d).unwrap();
        let r = tables.change(
            |apps| {
                apps.clear();
                Ok(())
            },
            |_, _| Err::<(), _>("no".to_string()),
            |_| panic!("published a refused change"),
        );
        assert!(matches!(r, Err(ApplyError::Invalid(ref p)) if p == &["no".to_string()]));
        assert_eq!(tables.apps().0, 1);
        assert_eq!(tables.apps().1.len(), 1);
        let reopened = AppTables::open(config(), &d).unwrap();
        assert_eq!(reopened.apps(), (1, tables.apps().1));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_change_is_saved_before_it_is_published_and_wins_on_reopen() {
        let d = dir("ok");
        let tables = AppTables::open(config(), &d).unwrap();
        let mut seen = None;
        let v = tables
            .change(
                |apps| {
                    apps[0].name = "renamed".into();
                    Ok(())
                },
                |cfg, version| Ok((cfg.app_specs[0].name.clone(), version)),
                |built| seen = Some(built),
            )
            .unwrap();
        assert_eq!(v, 2);
        assert_eq!(seen, Some(("renamed".to_string(), 2)));
        let reopened = AppTables::open(config(), &d).unwrap();
        assert_eq!(reopened.apps().0, 2);
        assert_eq!(reopened.apps().1[0].name, "renamed");
        let _ = std::fs::remove_dir_all(&d);
    }
}
