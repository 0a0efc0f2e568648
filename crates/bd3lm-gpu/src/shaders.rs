//! The WGSL sources (one file per op family in the top-level `shaders/` directory) and the
//! small preprocessor that makes their compile-time variants: `#include file`, `#if FLAG` /
//! `#else` / `#endif` (nestable), `{{NAME}}` constants and `#repeat VAR COUNT` / `#endrepeat`
//! (nestable), which writes its body COUNT times (a number or a constant's name) with
//! `{{VAR}}` replaced by 0, 1, ...: unrolled code whose register arrays are only ever indexed
//! by constants. Each file declares the flags it
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
    let lines: Vec<&str> = out.lines().collect();
    let mut unrolled = String::with_capacity(out.len());
    let mut at = 0;
    unroll(
        name,
        &lines,
        &mut at,
        &mut unrolled,
        &variant.constants,
        &[],
    )?;
    if at < lines.len() {
        return Err(format!("{name}: #endrepeat without #repeat"));
    }
    out = unrolled;
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

/// Writes `lines[*at..]` to `out` up to an unmatched `#endrepeat` (left at `*at`) or the end,
/// writing each `#repeat` body its count of times with the enclosing loops' variables
/// (`bound`: name and value) and its own substituted.
fn unroll(
    name: &str,
    lines: &[&str],
    at: &mut usize,
    out: &mut String,
    constants: &BTreeMap<&'static str, u32>,
    bound: &[(String, u32)],
) -> Result<(), String> {
    while *at < lines.len() {
        let line = lines[*at];
        let trimmed = line.trim();
        if trimmed == "#endrepeat" {
            return Ok(());
        }
        *at += 1;
        let Some(rest) = trimmed.strip_prefix("#repeat ") else {
            let mut text = line.to_string();
            for (var, value) in bound {
                text = text.replace(&format!("{{{{{var}}}}}"), &value.to_string());
            }
            out.push_str(&text);
            out.push('\n');
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(var), Some(count), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("{name}: `#repeat {rest}` needs VAR COUNT"));
        };
        let count = match count.parse::<u32>() {
            Ok(n) => n,
            Err(_) => *constants
                .get(count)
                .ok_or_else(|| format!("{name}: #repeat count `{count}` has no value"))?,
        };
        let body = *at;
        let mut end = body;
        for i in 0..count.max(1) {
            let mut inner = bound.to_vec();
            inner.push((var.to_string(), i));
            let mut at_i = body;
            let mut text = String::new();
            unroll(name, lines, &mut at_i, &mut text, constants, &inner)?;
            if at_i >= lines.len() {
                return Err(format!("{name}: unterminated #repeat {var}"));
            }
            if count > 0 {
                out.push_str(&text);
            }
            end = at_i;
        }
        *at = end + 1;
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
            .constant("COLS", 32)
            .constant("WG", 256);
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
    fn repeats_unroll_with_constant_indices() {
        let consts: BTreeMap<&'static str, u32> = [("N", 2)].into_iter().collect();
        let src = "a\n#repeat I N\n#repeat J 2\nx[{{I}}][{{J}}]\n#endrepeat\n#endrepeat\nb";
        let lines: Vec<&str> = src.lines().collect();
        let (mut at, mut out) = (0, String::new());
        unroll("t", &lines, &mut at, &mut out, &consts, &[]).unwrap();
        assert_eq!(out, "a\nx[0][0]\nx[0][1]\nx[1][0]\nx[1][1]\nb\n");
        let zero: BTreeMap<&'static str, u32> = [("N", 0)].into_iter().collect();
        let (mut at, mut out) = (0, String::new());
        unroll("t", &lines, &mut at, &mut out, &zero, &[]).unwrap();
        assert_eq!(out, "a\nb\n");
        for bad in [
            "#repeat I N\nx",
            "#repeat I\nx\n#endrepeat",
            "#repeat I M\n#endrepeat",
        ] {
            let lines: Vec<&str> = bad.lines().collect();
            let (mut at, mut out) = (0, String::new());
            assert!(
                unroll("t", &lines, &mut at, &mut out, &consts, &[]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_flags_are_errors() {
        let v = Variant::default()
            .flag("FORMAT_F32")
            .flag("EPI_GELLU")
            .constant("ROWS", 4)
            .constant("COLS", 32)
            .constant("WG", 256);
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
