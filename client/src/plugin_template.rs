//! `notes-host plugin new NAME`: a plugin project outside this repo, from
//! the templates in `client/templates/` (compiled into the binary): the
//! routing in plain Rust on the SDK's operations, a native unit test on
//! in-memory stores, the build command and a README.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const CARGO_TOML: &str = include_str!("../templates/rust/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/rust/src/lib.rs.tmpl");
const README: &str = include_str!("../templates/rust/README.md.tmpl");

/// Where this build's SDK is: the plugins workspace of the repo the binary
/// was built from. `--sdk` overrides it (another checkout, a vendored copy).
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

/// Writes the project `name` into `into/name`; refuses an existing directory
/// and a name cargo would refuse. Returns the project's directory.
pub fn write_project(name: &str, into: &Path, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if !valid {
        bail!("plugin name {name:?} must start with a lowercase letter and hold only lowercase letters, digits, '-' and '_' (at most 64)");
    }
    let sdk = match sdk {
        Some(path) => path.to_owned(),
        None => default_sdk(),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!("the plugin SDK is not at {}; pass --sdk PATH (the notes-plugin-sdk crate: plugins/sdk in the notes host's repo)", sdk.display())
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!("{} holds no Cargo.toml: --sdk must name the notes-plugin-sdk crate's directory", sdk.display());
    }
    let dir = into.join(name);
    if dir.exists() {
        bail!("{} already exists; choose another name or directory", dir.display());
    }
    let sdk_path = sdk.to_str().context("the SDK's path is not UTF-8")?;
    let dependency = format!("{{ version = \"0.1\", path = {} }}", toml_string(sdk_path));
    let fill = |template: &str| template.replace("{{name}}", name).replace("{{crate}}", &name.replace('-', "_")).replace("{{sdk}}", &dependency);
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, template) in [("Cargo.toml", CARGO_TOML), ("src/lib.rs", LIB_RS), ("README.md", README)] {
        std::fs::write(dir.join(file), fill(template)).with_context(|| format!("cannot write {}", dir.join(file).display()))?;
    }
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_names_its_crate_and_its_sdk_and_refuses_bad_names_and_existing_dirs() {
        let into = tempfile::tempdir().unwrap();
        let dir = write_project("my-plugin", into.path(), None).unwrap();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-plugin\""), "{manifest}");
        assert!(manifest.contains("notes-plugin-sdk = { version = \"0.1\", path = \""), "{manifest}");
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(readme.contains("release/my_plugin.wasm"), "{readme}");
        assert!(std::fs::read_to_string(dir.join("src/lib.rs")).unwrap().contains("name: \"my-plugin\".into()"));
        assert!(write_project("my-plugin", into.path(), None).unwrap_err().to_string().contains("already exists"));
        for bad in ["", "My", "a b", "../x", "-x"] {
            assert!(write_project(bad, into.path(), None).is_err(), "{bad:?}");
        }
        assert!(write_project("x", into.path(), Some(into.path())).unwrap_err().to_string().contains("no Cargo.toml"));
    }
}
