//! Progress bars on stderr (indicatif draws nothing when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `total` items of `unit` (e.g. "seq", "MB").
pub fn bar(total: u64, message: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template =
        format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{elapsed}}, eta {{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

/// A bar over bytes.
pub fn byte_bar(total: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}
