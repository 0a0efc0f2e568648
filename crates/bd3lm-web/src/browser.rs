//! Small wrappers over browser APIs: time, yielding to the event loop, the secure-context and
//! WebGPU checks, SHA-256 through `crypto.subtle`, the clipboard and page options.

use crate::page_error::PageError;
use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

pub fn window() -> Result<web_sys::Window, PageError> {
    web_sys::window().ok_or_else(|| {
        PageError::Browser("no window object (the page must run in a browser tab)".into())
    })
}

/// A JS exception as one line of text.
pub fn js_error_text(value: &JsValue) -> String {
    if let Some(err) = value.dyn_ref::<js_sys::Error>() {
        return format!(
            "{}: {}",
            String::from(err.name()),
            String::from(err.message())
        );
    }
    if let Some(exc) = value.dyn_ref::<web_sys::DomException>() {
        return format!("{}: {}", exc.name(), exc.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

pub fn browser_error(value: JsValue) -> PageError {
    PageError::Browser(js_error_text(&value))
}

/// Milliseconds from `performance.now()` (0 if the page has no performance timer).
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Gives the event loop a turn: resolves from a `setTimeout(delay_ms)` task, so input events
/// and a repaint can run before the next step. The generation loop awaits this between
/// `Generator::next` calls (the page's responsiveness approach, see docs/web.md).
pub async fn yield_to_browser(delay_ms: i32) {
    let promise = Promise::new(&mut |resolve, _reject| {
        let scheduled = web_sys::window().map(|w| {
            w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, delay_ms.max(0))
        });
        if !matches!(scheduled, Some(Ok(_))) {
            // No timers (should not happen in a tab): resolve at once rather than hang.
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Whether WebGPU, the Cache API and `crypto.subtle` may exist here (https or localhost).
pub fn is_secure_context() -> bool {
    web_sys::window().is_some_and(|w| w.is_secure_context())
}

pub fn page_origin() -> String {
    web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default()
}

/// The absolute form of a URL typed into the page (relative to the page itself).
pub fn absolute_url(url: &str) -> Result<String, PageError> {
    let doc_base = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.base_uri().ok().flatten())
        .or_else(|| web_sys::window().and_then(|w| w.location().href().ok()))
        .unwrap_or_default();
    web_sys::Url::new_with_base(url, &doc_base)
        .map(|u| u.href())
        .map_err(|e| {
            PageError::Browser(format!(
                "`{url}` is not a valid URL ({})",
                js_error_text(&e)
            ))
        })
}

/// A query parameter of the page URL (`?name=value`).
pub fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
}

/// Rewrites the page URL's query without reloading (`history.replaceState`): the `owned`
/// parameters are replaced by `pairs`, any other parameter is kept.
pub fn replace_query(owned: &[&str], pairs: &[(&str, String)]) -> Result<(), PageError> {
    let window = window()?;
    let location = window.location();
    let params = web_sys::UrlSearchParams::new_with_str(&location.search().unwrap_or_default())
        .map_err(browser_error)?;
    for key in owned {
        params.delete(key);
    }
    for (key, value) in pairs {
        params.append(key, value);
    }
    let query = String::from(params.to_string());
    let path = location.pathname().unwrap_or_default();
    let url = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    // Through Reflect: web-sys's History feature is not compiled in for this one call.
    let history = Reflect::get(&window, &"history".into()).map_err(browser_error)?;
    let replace = Reflect::get(&history, &"replaceState".into())
        .map_err(browser_error)?
        .dyn_into::<js_sys::Function>()
        .map_err(browser_error)?;
    replace
        .call3(&history, &JsValue::NULL, &"".into(), &url.into())
        .map(|_| ())
        .map_err(browser_error)
}

/// What the browser offers for WebGPU.
#[derive(Debug, Clone, PartialEq)]
pub enum WebGpuStatus {
    /// `navigator.gpu` is missing: an old browser, WebGPU switched off, or not a secure context.
    Missing,
    /// `navigator.gpu` exists but `requestAdapter()` found no adapter.
    NoAdapter,
    /// An adapter, described in words (vendor / architecture, software fallback or not).
    Available { description: String, fallback: bool },
}

/// Asks the browser for a WebGPU adapter (without creating a device).
pub async fn probe_webgpu() -> WebGpuStatus {
    let Some(window) = web_sys::window() else {
        return WebGpuStatus::Missing;
    };
    let navigator: JsValue = window.navigator().into();
    let gpu = Reflect::get(&navigator, &"gpu".into()).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return WebGpuStatus::Missing;
    }
    let request = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call0(&gpu).ok())
        .and_then(|p| p.dyn_into::<Promise>().ok());
    let Some(request) = request else {
        return WebGpuStatus::NoAdapter;
    };
    let adapter = match JsFuture::from(request).await {
        Ok(a) if !a.is_null() && !a.is_undefined() => a,
        _ => return WebGpuStatus::NoAdapter,
    };
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let field = |name: &str| {
        Reflect::get(&info, &name.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let fallback = Reflect::get(&info, &"isFallbackAdapter".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let parts: Vec<String> = [field("vendor"), field("architecture"), field("description")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let description = if parts.is_empty() {
        "unnamed adapter".to_string()
    } else {
        parts.join(" / ")
    };
    WebGpuStatus::Available {
        description,
        fallback,
    }
}

/// Lower-case hex SHA-256 of `bytes`: `crypto.subtle` when the page has it (async, off the
/// main thread), otherwise the core crate's implementation in wasm.
pub async fn sha256_hex(bytes: &Uint8Array) -> Result<String, PageError> {
    let subtle = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .map(|c| c.subtle());
    // `crypto.subtle` is undefined outside a secure context even though `crypto` exists.
    let subtle = subtle.filter(|s| !JsValue::from(s.clone()).is_undefined());
    match subtle {
        Some(subtle) => {
            let promise = subtle
                .digest_with_str_and_js_u8_array("SHA-256", bytes)
                .map_err(browser_error)?;
            let digest = JsFuture::from(promise).await.map_err(browser_error)?;
            let digest = Uint8Array::new(&digest).to_vec();
            Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
        }
        None => Ok(bd3lm::package::sha256_hex(&bytes.to_vec())),
    }
}

/// Puts text on the clipboard.
pub async fn copy_text(text: &str) -> Result<(), PageError> {
    let clipboard = window()?.navigator().clipboard();
    if JsValue::from(clipboard.clone()).is_undefined() {
        return Err(PageError::Browser(
            "this browser gives the page no clipboard (it needs https or localhost)".into(),
        ));
    }
    JsFuture::from(clipboard.write_text(text))
        .await
        .map(|_| ())
        .map_err(browser_error)
}

/// A random 32-bit seed (kept small so it is easy to read and retype).
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u32::from_le_bytes(bytes) as u64,
        Err(_) => (js_sys::Math::random() * u32::MAX as f64) as u64,
    }
}

/// Logs to the browser console (for the e2e test and for people debugging the page).
pub fn log(message: &str) {
    web_sys::console::log_1(&message.into());
}
