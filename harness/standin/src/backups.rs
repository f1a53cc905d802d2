//! Backup configurations: create (with Duplicati's validation), list, get. Kept in
//! `<data-dir>/backups.json` so a restarted stand-in still knows them (Duplicati keeps them in
//! Duplicati-server.sqlite).
//! // Duplicati/WebserverCore/Services/BackupListService.cs (Add),
//! // Duplicati/Library/RestAPI/Database/Connection.cs (ValidateBackup)

use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::ctx::{field, field_str};

#[derive(Debug, Clone)]
pub struct Backup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub target_url: String,
    pub sources: Vec<String>,
    pub settings: Vec<Value>,
    pub filters: Vec<Value>,
    pub metadata: Value,
    pub tags: Vec<String>,
    pub temporary: bool,
}

impl Backup {
    /// Dto.BackupDto field names.
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "ExternalID": null,
            "Name": self.name,
            "Description": self.description,
            "Tags": self.tags,
            "TargetURL": self.target_url,
            "DBPath": format!("/data/Duplicati/{}.sqlite", self.id),
            "DBPathExists": false,
            "Sources": self.sources,
            "Settings": self.settings,
            "Filters": self.filters,
            "Metadata": self.metadata,
            "IsTemporary": self.temporary,
            "IsUnencryptedOrPassphraseStored": false,
            "ConnectionStringID": 0,
            "OperationType": "Backup",
            "AdditionalTargetURLs": [],
        })
    }

    fn from_json(v: &Value) -> Option<Backup> {
        let strs = |k: &str| -> Vec<String> {
            field(v, k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|s| s.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let list = |k: &str| {
            field(v, k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        Some(Backup {
            id: field(v, "ID")
                .map(|i| {
                    i.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| i.to_string())
                })
                .unwrap_or_default(),
            name: field_str(v, "Name").unwrap_or("").to_string(),
            description: field_str(v, "Description").unwrap_or("").to_string(),
            target_url: field_str(v, "TargetURL").unwrap_or("").to_string(),
            sources: if field(v, "Sources").is_some() {
                strs("Sources")
            } else {
                Vec::new()
            },
            settings: list("Settings"),
            filters: list("Filters"),
            metadata: field(v, "Metadata").cloned().unwrap_or_else(|| json!({})),
            tags: strs("Tags"),
            temporary: false,
        })
    }

    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|s| field_str(s, "Name").is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .and_then(|s| field_str(s, "Value"))
    }
}

/// Connection.ValidateBackup, the checks a test can reach.
fn validate(b: &Backup) -> Option<&'static str> {
    if b.name.trim().is_empty() {
        return Some("Missing a name");
    }
    if b.target_url.trim().is_empty() {
        return Some("Missing a target");
    }
    if b.sources.is_empty() || b.sources.iter().any(|s| s.trim().is_empty()) {
        return Some("Invalid source list");
    }
    // "--no-encryption" with an empty value or a true value disables encryption.
    let no_enc = b
        .setting("--no-encryption")
        .map(|v| {
            v.trim().is_empty()
                || matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on" | "yes")
        })
        .unwrap_or(false);
    let gpg = b
        .setting("--gpg-encryption-command")
        .is_some_and(|v| v.eq_ignore_ascii_case("--encrypt"));
    if !no_enc && !gpg && b.setting("passphrase").is_none_or(|p| p.trim().is_empty()) {
        return Some("Missing passphrase");
    }
    None
}

pub struct Store {
    file: Option<PathBuf>,
    backups: Mutex<Vec<Backup>>,
}

pub enum AddError {
    BadRequest(String),
    Conflict(String),
}

impl Store {
    pub fn load(data_dir: Option<PathBuf>) -> Store {
        let file = data_dir.map(|d| d.join("backups.json"));
        let backups = file
            .as_ref()
            .and_then(|f| fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| {
                v.as_array()
                    .map(|a| a.iter().filter_map(Backup::from_json).collect())
            })
            .unwrap_or_default();
        Store {
            file,
            backups: Mutex::new(backups),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Backup>> {
        self.backups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// POST /api/v1/backups `{"Backup":{…},"Schedule":…}` ⇒ the new ID.
    pub fn add(&self, body: &Value, temporary: bool) -> Result<String, AddError> {
        let Some(data) = field(body, "Backup") else {
            return Err(AddError::BadRequest(
                "Data object had no backup entry".into(),
            ));
        };
        let Some(mut b) = Backup::from_json(data) else {
            return Err(AddError::BadRequest(
                "Data object had no backup entry".into(),
            ));
        };
        if let Some(msg) = validate(&b) {
            return Err(AddError::BadRequest(msg.into()));
        }
        let mut all = self.lock();
        if !temporary && all.iter().any(|x| !x.temporary && x.name == b.name) {
            return Err(AddError::Conflict(format!(
                "There already exists a backup with the name: {}",
                b.name
            )));
        }
        // Connection.RegisterTemporaryBackup numbers temporaries separately; the stand-in uses
        // one sequence and marks them.
        let next = all
            .iter()
            .filter_map(|x| x.id.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        b.id = next.to_string();
        b.temporary = temporary;
        all.push(b);
        self.save(&all);
        Ok(next.to_string())
    }

    pub fn get(&self, id: &str) -> Option<Backup> {
        self.lock().iter().find(|b| b.id == id).cloned()
    }

    pub fn list(&self) -> Vec<Backup> {
        self.lock()
            .iter()
            .filter(|b| !b.temporary)
            .cloned()
            .collect()
    }

    fn save(&self, all: &[Backup]) {
        if let Some(f) = &self.file {
            let v: Vec<Value> = all
                .iter()
                .filter(|b| !b.temporary)
                .map(Backup::to_json)
                .collect();
            if let Err(e) = fs::write(f, Value::Array(v).to_string()) {
                eprintln!("warning: cannot save {}: {e}", f.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(name: &str, settings: Value) -> Value {
        json!({"Backup": {"Name": name, "TargetURL": "file:///b/", "Sources": ["/s/"], "Settings": settings}})
    }

    #[test]
    fn validation_strings_and_conflict() {
        let s = Store::load(None);
        let msg = |r: Result<String, AddError>| match r {
            Err(AddError::BadRequest(m)) | Err(AddError::Conflict(m)) => m,
            Ok(id) => format!("ok {id}"),
        };
        assert_eq!(msg(s.add(&body("", json!([])), false)), "Missing a name");
        assert_eq!(
            msg(s.add(&body("a", json!([])), false)),
            "Missing passphrase"
        );
        let pp = json!([{"Name": "passphrase", "Value": "x"}]);
        assert_eq!(msg(s.add(&body("a", pp.clone()), false)), "ok 1");
        assert!(matches!(
            s.add(&body("a", pp), false),
            Err(AddError::Conflict(_))
        ));
        let noenc = json!([{"Name": "--no-encryption", "Value": "true"}]);
        assert_eq!(msg(s.add(&body("b", noenc), false)), "ok 2");
        let nosrc = json!({"Backup": {"Name": "c", "TargetURL": "file:///b/", "Sources": [""]}});
        assert_eq!(msg(s.add(&nosrc, false)), "Invalid source list");
    }
}
