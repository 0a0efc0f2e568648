//! Embeds the default model package (`models/sotu-tiny-bs4-q8/`) into the binary, so
//! `bd3lm generate` works offline from any directory. Every file of the package directory
//! except documentation is included; a build without the directory embeds nothing and the CLI
//! then asks for `--model`.

use std::path::PathBuf;

/// Package directory of the default model, relative to the workspace root.
const EMBEDDED_PACKAGE: &str = "models/sotu-tiny-bs4-q8";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let package = manifest_dir.join("../..").join(EMBEDDED_PACKAGE);
    println!("cargo:rerun-if-changed={}", package.display());
    let mut entries = Vec::new();
    if let Ok(dir) = std::fs::read_dir(&package) {
        for entry in dir.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_file() && !name.ends_with(".md") {
                println!("cargo:rerun-if-changed={}", path.display());
                entries.push((name, path));
            }
        }
    }
    entries.sort();
    let mut code = String::from(
        "/// Files of the embedded default package: (file name, bytes).\n\
         pub static EMBEDDED_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &entries {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    code.push_str(&format!("/// Where the embedded package came from.\npub const EMBEDDED_PACKAGE_DIR: &str = {EMBEDDED_PACKAGE:?};\n"));
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("embedded_model.rs");
    std::fs::write(out, code).expect("write embedded_model.rs");
}
