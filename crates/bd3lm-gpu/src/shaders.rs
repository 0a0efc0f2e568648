//! The WGSL sources (one file per op family in the top-level `shaders/` directory) and the
//! small preprocessor that makes their compile-time variants: `#include file`, `#if FLAG` /
//! `#else` / `#endif` (nestable) and `{{NAME}}` constants. Each file declares the flags it
//! tests with `#flags A B ...`; a flag that no file of the expansion declares (in a variant or
//! in an `#if`) is an error, never silently false.

use std::collections::BTreeMap;

/// Every shader file, embedded at compile time.
pub const SOURCES: &[(&str, &str)] = &[
    ("smoke.wgsl", include_str!("../../../shaders/smoke.wgsl")),
    (
        "uniforms.wgsl",
        include_str!("../../../shaders/uniforms.wgsl"),
    ),
    (
        "rownorm.wgsl",
        include_str!("../../../shaders/rownorm.wgsl"),
    ),
    (
        "residual.wgsl",
        include_str!("../../../shaders/residual.wgsl"),
    ),
    (
        "weights.wgsl",
        include_str!("../../../shaders/weights.wgsl"),
    ),
    ("embed.wgsl", include_str!("../../../shaders/embed.wgsl")),
    ("matmul.wgsl", include_str!("../../../shaders/matmul.wgsl")),
    (
        "attention.wgsl",
        include_str!("../../../shaders/attention.wgsl"),
    ),
    (
        "sampling.wgsl",
        include_str!("../../../shaders/sampling.wgsl"),
    ),
    ("reveal.wgsl", include_str!("../../../shaders/reveal.wgsl")),
    (
        "splitmix.wgsl",
        include_str!("../../../shaders/splitmix.wgsl"),
    ),
    (
        "nucleus.wgsl",
        include_str!("../../../shaders/nucleus.wgsl"),
    ),
];

pub fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// A shader variant: which flags are set and which `{{NAME}}` constants are substituted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    pub flags: Vec<&'static str>,
    pub constants: BTreeMap<&'static str, u32>,
}

impl Variant {
    pub fn flag(mut self, f: &'static str) -> Self {
        if !self.flags.contains(&f) {
            self.flags.push(f);
            self.flags.sort_unstable();
        }
        self
    }

    pub fn constant(mut self, name: &'static str, value: u32) -> Self {
        self.constants.insert(name, value);
        self
    }
}

/// Expands includes, conditionals and constants of `name` for `variant`.
pub fn expand(name: &str, variant: &Variant) -> Result<String, String> {
    let mut out = String::new();
    let mut declared = Vec::new();
    declared_flags(name, &mut declared, 0)?;
    if let Some(f) = variant.flags.iter().find(|f| !declared.contains(f)) {
        return Err(format!(
            "{name}: unknown flag `{f}` (declared: {})",
            declared.join(" ")
        ));
    }
    expand_into(name, variant, &declared, &mut out, 0)?;
    for (k, v) in &variant.constants {
        out = out.replace(&format!("{{{{{k}}}}}"), &v.to_string());
    }
    if let Some(pos) = out.find("{{") {
        let end = out[pos..]
            .find("}}")
            .map(|e| pos + e + 2)
            .unwrap_or(out.len());
        return Err(format!("{name}: constant {} has no value", &out[pos..end]));
    }
    Ok(out)
}

/// Flags declared by `name` and every file it includes (`#flags` lines).
fn declared_flags(name: &str, out: &mut Vec<&'static str>, depth: usize) -> Result<(), String> {
    if depth > 4 {
        return Err(format!("{name}: includes nest too deep"));
    }
    let src = source(name).ok_or_else(|| format!("unknown shader file `{name}`"))?;
    for line in src.lines() {
        let trimmed = line.trim();
        if let Some(flags) = trimmed.strip_prefix("#flags") {
            out.extend(flags.split_whitespace());
        } else if let Some(file) = trimmed.strip_prefix("#include ") {
            declared_flags(file.trim(), out, depth + 1)?;
        }
    }
    Ok(())
}

fn expand_into(
    name: &str,
    variant: &Variant,
    declared: &[&str],
    out: &mut String,
    depth: usize,
) -> Result<(), String> {
    if depth > 4 {
        return Err(format!("{name}: includes nest too deep"));
    }
    let src = source(name).ok_or_else(|| format!("unknown shader file `{name}`"))?;
    // Stack of (this branch active, some branch of this #if was taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    for (i, line) in src.lines().enumerate() {
        let trimmed = line.trim();
        let active = stack.iter().all(|(a, _)| *a);
        if trimmed.starts_with("#flags") {
            continue;
        } else if let Some(flag) = trimmed.strip_prefix("#if ") {
            let flag = flag.trim();
            if !declared.contains(&flag) {
                return Err(format!(
                    "{name}:{}: `#if {flag}` tests an undeclared flag",
                    i + 1
                ));
            }
            let on = variant.flags.contains(&flag);
            stack.push((on, on));
        } else if trimmed == "#else" {
            let top = stack
                .last_mut()
                .ok_or_else(|| format!("{name}:{}: #else without #if", i + 1))?;
            *top = (!top.1, true);
        } else if trimmed == "#endif" {
            stack
                .pop()
                .ok_or_else(|| format!("{name}:{}: #endif without #if", i + 1))?;
        } else if let Some(file) = trimmed.strip_prefix("#include ") {
            if active {
                expand_into(file.trim(), variant, declared, out, depth + 1)?;
            }
        } else if active {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(format!("{name}: unterminated #if"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditionals_and_constants() {
        let v = Variant::default()
            .flag("EPI_GELU")
            .flag("FORMAT_Q8")
            .constant("ROWS", 4)
            .constant("COLS", 32);
        let src = expand("matmul.wgsl", &v).unwrap();
        assert!(src.contains("gelu_tanh(acc + vecs"));
        assert!(!src.contains("kcache"), "EPI_QKV code must be left out");
        assert!(src.contains("const ROWS: u32 = 4u;"));
        assert!(
            src.contains("struct MatmulParams"),
            "the uniforms are included"
        );
        assert!(src.contains("sext8(w_a, 0u)"), "the Q8 decoder is included");
        assert!(
            !src.contains("unpack2x16float(v.x)"),
            "other formats are left out"
        );
        assert!(
            expand("matmul.wgsl", &Variant::default().flag("FORMAT_F32")).is_err(),
            "missing constants are reported"
        );
    }

    #[test]
    fn unknown_flags_are_errors() {
        let v = Variant::default()
            .flag("FORMAT_F32")
            .flag("EPI_GELLU")
            .constant("ROWS", 4)
            .constant("COLS", 32);
        let err = expand("matmul.wgsl", &v).unwrap_err();
        assert!(err.contains("unknown flag `EPI_GELLU`"), "{err}");
        // Every `#if` of every shader tests a declared flag.
        for (name, _) in SOURCES {
            let mut declared = Vec::new();
            declared_flags(name, &mut declared, 0).unwrap();
            let mut out = String::new();
            expand_into(name, &Variant::default(), &declared, &mut out, 0)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
