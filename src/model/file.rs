//! Model files: JSON with a manifest (kind, version, checksum and what training saw),
//! checked on load, written atomically (a temporary file renamed over the old one, so a
//! running pipeline that reloads on change never reads half a file).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A file kind with a manifest.
pub trait Manifested: Serialize + DeserializeOwned {
    const KIND: &'static str;
    const VERSION: u32;
    /// What the file is, for errors: "log-pattern model".
    const WHAT: &'static str;
    /// Kind, version and checksum as the file states them.
    fn stamp(&self) -> (&str, u32, &str);
    /// The checksum of the body as loaded.
    fn checksum(&self) -> String;
    /// Checks of the body beyond its shape.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Reads and checks a file; every error names it.
pub fn load<T: Manifested>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: T = serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a {}: {e}", path.display(), T::WHAT))?;
    let (kind, version, checksum) = v.stamp();
    if kind != T::KIND || version != T::VERSION {
        return Err(format!(
            "{}: model kind {kind:?} version {version}, expected {:?} version {}",
            path.display(),
            T::KIND,
            T::VERSION
        ));
    }
    if v.checksum() != checksum {
        return Err(format!(
            "{}: checksum does not match the model (edited or truncated?)",
            path.display()
        ));
    }
    v.check().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v)
}

/// Writes a file atomically, creating its directory.
pub fn save<T: Serialize>(v: &T, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, path)
}

fn hash(json: &str) -> String {
    format!("{:016x}", crate::correlate::alert::fnv1a(&[json]))
}

/// The checksum of a value about to be saved: FNV-1a 64 of its JSON as it will read
/// back. JSON reads some floats back an ulp away, so hashing the JSON as written could
/// disagree with the same hash taken after loading; hashing what reads back (here) and
/// what was read ([`checksum_loaded`]) gives the same text on both sides.
pub fn checksum_saved<T: Serialize + DeserializeOwned>(v: &T) -> String {
    let json = serde_json::to_string(v).unwrap_or_default();
    let back: Option<T> = serde_json::from_str(&json).ok();
    hash(&back.and_then(|b| serde_json::to_string(&b).ok()).unwrap_or(json))
}

/// The checksum of a value read from a file (or of one whose JSON reads back exactly).
pub fn checksum_loaded<T: Serialize>(v: &T) -> String {
    hash(&serde_json::to_string(v).unwrap_or_default())
}
