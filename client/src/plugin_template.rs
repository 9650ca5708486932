//! `notes-host plugin new NAME [--lang rust|python|js]`: a plugin project
//! outside this repo, compiled into the binary. Rust, from the templates in
//! `client/templates/rust/`: the routing in plain Rust on the SDK's
//! operations, a native unit test on in-memory stores, the build command and
//! a README. Python and JavaScript: the example plugins of
//! `plugins/examples/` themselves (so the template is what CI builds and
//! checks), renamed, with the WIT beside them and a README.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const CARGO_TOML: &str = include_str!("../templates/rust/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/rust/src/lib.rs.tmpl");
const README: &str = include_str!("../templates/rust/README.md.tmpl");

/// The contract, for projects in languages that build from the WIT itself.
const WIT: &str = include_str!("../../plugins/sdk/wit/notes.wit");
const STORE_CARGO_TOML: &str = include_str!("../templates/store/Cargo.toml.tmpl");
const STORE_README: &str = include_str!("../templates/store/README.md.tmpl");
/// A store project starts as the notely-data-proxy example.
const STORE_LIB_RS: &str = include_str!("../../plugins/examples/notely-data-proxy/src/lib.rs");
const PYTHON_APP: &str = include_str!("../../plugins/examples/python/app.py");
const PYTHON_README: &str = include_str!("../templates/python/README.md.tmpl");
const JS_PLUGIN: &str = include_str!("../../plugins/examples/js/migrate.js");
const JS_PACKAGE: &str = include_str!("../../plugins/examples/js/package.json");
const JS_LOCK: &str = include_str!("../../plugins/examples/js/package-lock.json");
const JS_README: &str = include_str!("../templates/js/README.md.tmpl");

/// A plugin project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// What a plugin project builds: a router (the default) or a store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Router,
    Store,
}

/// `(file in the project, its text)` for a Python or JavaScript project:
/// the example's files with the example's name replaced by `name`. Each
/// replaced text must be in its file (a test checks), so an example that
/// changes cannot silently give projects its own name.
fn example_files(lang: Lang, name: &str) -> Vec<(&'static str, String)> {
    let mut files = vec![("wit/notes.wit", WIT.to_owned())];
    match lang {
        Lang::Rust => unreachable!("from templates"),
        Lang::Python => {
            files.push(("app.py", PYTHON_APP.replace("\"migrate-python\"", &format!("{name:?}"))));
            files.push(("README.md", PYTHON_README.replace("{{name}}", name)));
            files.push((".gitignore", "*.wasm\n__pycache__/\n".to_owned()));
        }
        Lang::Js => {
            files.push(("plugin.js", JS_PLUGIN.replace("'migrate-js'", &format!("{name:?}"))));
            let package = |text: &str| {
                text.replace("notes-plugin-migrate-js", name)
                    .replace("--wit ../../sdk/wit", "--wit wit")
                    .replace("migrate-js.wasm", &format!("{name}.wasm"))
                    .replace(" migrate.js", " plugin.js")
            };
            files.push(("package.json", package(JS_PACKAGE)));
            files.push(("package-lock.json", package(JS_LOCK)));
            files.push(("README.md", JS_README.replace("{{name}}", name)));
            files.push((".gitignore", "*.wasm\nnode_modules/\n".to_owned()));
        }
    }
    files
}

/// Where this build's SDK is: the plugins workspace of the repo the binary
/// was built from. `--sdk` overrides it (another checkout, a vendored copy).
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

/// Writes the project `name` into `into/name`; refuses an existing directory
/// and a name cargo would refuse. Returns the project's directory.
pub fn write_project(name: &str, into: &Path, lang: Lang, kind: Kind, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if !valid {
        bail!("plugin name {name:?} must start with a lowercase letter and hold only lowercase letters, digits, '-' and '_' (at most 64)");
    }
    let dir = into.join(name);
    if dir.exists() {
        bail!("{} already exists; choose another name or directory", dir.display());
    }
    if kind == Kind::Store && lang != Lang::Rust {
        bail!("a store plugin project is written in Rust for now (--lang rust); the notes:store world is the SDK's wit-store/store.wit, for other languages' tools");
    }
    if lang != Lang::Rust {
        if sdk.is_some() {
            bail!("--sdk is the Rust SDK's directory; a {lang:?} project builds from its own copy of the WIT");
        }
        for (file, text) in example_files(lang, name) {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().expect("a file in the project")).with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
        return Ok(dir);
    }
    let dependency = sdk_dependency(sdk, &default_sdk())?;
    // The binary that writes the project, which its README runs: by its
    // directory, to put on PATH (a repo build's is target/release).
    let host_dir = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf));
    let host_dir = host_dir.as_deref().and_then(Path::to_str).unwrap_or("the directory of the notes-host binary").to_owned();
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &dependency)
            .replace("{{sdk_with_http}}", &with_http(&dependency))
            .replace("{{host_dir}}", &host_dir)
    };
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    let store_lib = STORE_LIB_RS.replace("\"notely-data-proxy\"", &format!("{name:?}"));
    let files = match kind {
        Kind::Router => [("Cargo.toml", CARGO_TOML), ("src/lib.rs", LIB_RS), ("README.md", README)],
        Kind::Store => [("Cargo.toml", STORE_CARGO_TOML), ("src/lib.rs", store_lib.as_str()), ("README.md", STORE_README)],
    };
    for (file, template) in files {
        std::fs::write(dir.join(file), fill(template)).with_context(|| format!("cannot write {}", dir.join(file).display()))?;
    }
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}

/// The SDK as the project's `Cargo.toml` names it: by version, as published,
/// plus a path only for a repo build (`repo_sdk`, the SDK beside the sources
/// this binary was built from, when it is still there) or an `--sdk` given.
fn sdk_dependency(sdk: Option<&Path>, repo_sdk: &Path) -> anyhow::Result<String> {
    let path = match sdk {
        Some(given) => {
            let given = given.canonicalize().with_context(|| format!("--sdk {}: no such directory", given.display()))?;
            if !given.join("Cargo.toml").is_file() {
                bail!("{} holds no Cargo.toml: --sdk must name the notes-plugin-sdk crate's directory", given.display());
            }
            given
        }
        None => match repo_sdk.canonicalize() {
            Ok(repo) if repo.join("Cargo.toml").is_file() => repo,
            _ => return Ok("\"0.1\"".to_owned()),
        },
    };
    let path = path.to_str().context("the SDK's path is not UTF-8")?;
    Ok(format!("{{ version = \"0.1\", path = {} }}", toml_string(path)))
}

/// The SDK dependency with its `http` feature (a store's outgoing HTTP).
fn with_http(dependency: &str) -> String {
    match dependency.strip_prefix('{') {
        Some(rest) => format!("{{ features = [\"http\"],{rest}"),
        None => format!("{{ version = {dependency}, features = [\"http\"] }}"),
    }
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
        let dir = write_project("my-plugin", into.path(), Lang::Rust, Kind::Router, None).unwrap();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-plugin\""), "{manifest}");
        assert!(manifest.contains("notes-plugin-sdk = { version = \"0.1\", path = \""), "{manifest}");
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(readme.contains("release/my_plugin.wasm"), "{readme}");
        assert!(std::fs::read_to_string(dir.join("src/lib.rs")).unwrap().contains("name: \"my-plugin\".into()"));
        assert!(write_project("my-plugin", into.path(), Lang::Rust, Kind::Router, None).unwrap_err().to_string().contains("already exists"));
        for bad in ["", "My", "a b", "../x", "-x"] {
            assert!(write_project(bad, into.path(), Lang::Rust, Kind::Router, None).is_err(), "{bad:?}");
        }
        assert!(write_project("x", into.path(), Lang::Rust, Kind::Router, Some(into.path())).unwrap_err().to_string().contains("no Cargo.toml"));
        assert!(readme.contains("export PATH=\""), "the README says how to put notes-host on PATH: {readme}");
        let on_path = readme.split("export PATH=\"").nth(1).and_then(|rest| rest.split(':').next()).unwrap();
        assert!(Path::new(on_path).is_dir(), "the directory it names exists: {on_path}");
    }

    #[test]
    fn the_sdk_is_named_by_version_with_a_path_only_for_a_repo_build() {
        let elsewhere = tempfile::tempdir().unwrap();
        let gone = elsewhere.path().join("no-repo/plugins/sdk");
        assert_eq!(sdk_dependency(None, &gone).unwrap(), "\"0.1\"", "an installed binary: the published SDK");
        let repo = sdk_dependency(None, &default_sdk()).unwrap();
        assert!(repo.starts_with("{ version = \"0.1\", path = \"") && repo.contains("plugins/sdk"), "a repo build: {repo}");
        assert!(sdk_dependency(Some(&gone), &default_sdk()).unwrap_err().to_string().contains("no such directory"));
    }

    #[test]
    fn python_and_js_projects_are_the_examples_renamed_with_their_wit() {
        for (source, old) in [(PYTHON_APP, "\"migrate-python\""), (JS_PLUGIN, "'migrate-js'")] {
            assert!(source.contains(old), "the example's name {old} is what a project replaces");
        }
        for text in ["notes-plugin-migrate-js", "--wit ../../sdk/wit", "migrate-js.wasm", " migrate.js"] {
            assert!(JS_PACKAGE.contains(text), "package.json: {text}");
        }
        let into = tempfile::tempdir().unwrap();
        let dir = write_project("dual-write", into.path(), Lang::Python, Kind::Router, None).unwrap();
        assert!(std::fs::read_to_string(dir.join("app.py")).unwrap().contains("PluginInfo(\"dual-write\", "));
        assert_eq!(std::fs::read_to_string(dir.join("wit/notes.wit")).unwrap(), WIT);
        let dir = write_project("dual-js", into.path(), Lang::Js, Kind::Router, None).unwrap();
        assert!(std::fs::read_to_string(dir.join("plugin.js")).unwrap().contains("name: \"dual-js\""));
        let package = std::fs::read_to_string(dir.join("package.json")).unwrap();
        assert!(package.contains("--wit wit") && package.contains("dual-js.wasm") && package.contains(" plugin.js"), "{package}");
        assert!(write_project("x", into.path(), Lang::Js, Kind::Router, Some(into.path())).unwrap_err().to_string().contains("--sdk"));
    }

    #[test]
    fn a_store_project_is_the_notely_data_proxy_example_renamed_with_the_sdks_http() {
        let into = tempfile::tempdir().unwrap();
        let dir = write_project("my-store", into.path(), Lang::Rust, Kind::Store, None).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("name: \"my-store\".into()") && !lib.contains("\"notely-data-proxy\""), "renamed");
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("features = [\"http\"]"), "{cargo}");
        assert!(std::fs::read_to_string(dir.join("README.md")).unwrap().contains("--profile store"));
        assert!(write_project("py-store", into.path(), Lang::Python, Kind::Store, None).is_err(), "Rust only");
    }
}
