//! Network reads: the manifest as text and files streamed chunk by chunk into one JS buffer
//! of the size the manifest promises, reporting every chunk so the progress bar moves.

use crate::browser::{self, js_error_text, now_ms};
use crate::page_error::PageError;
use bd3lm::package::url::origin_of;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, RequestCache, RequestInit, Response};

/// Longest stretch of reading before the download loop yields to the event loop.
const MAX_READ_SLICE_MS: f64 = 16.0;

/// How a request may use the browser's HTTP cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpCache {
    /// The browser's default (shards are immutable, so a cached HTTP response is fine).
    Default,
    /// Revalidate with the server (the manifest: a package may have been updated).
    Revalidate,
    /// Ignore any stored HTTP response (a re-download after a failed verification).
    Bypass,
}

async fn request(url: &str, http_cache: HttpCache) -> Result<Response, PageError> {
    let init = RequestInit::new();
    match http_cache {
        HttpCache::Default => {}
        HttpCache::Revalidate => init.set_cache(RequestCache::NoCache),
        HttpCache::Bypass => init.set_cache(RequestCache::Reload),
    }
    let window = browser::window()?;
    let response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| {
            let page = browser::page_origin();
            let other_site = origin_of(url)
                .filter(|origin| !page.is_empty() && *origin != page.to_ascii_lowercase());
            PageError::Unreachable {
                url: url.to_string(),
                other_site,
                detail: js_error_text(&e),
            }
        })?;
    let response: Response = response.dyn_into().map_err(browser::browser_error)?;
    if !response.ok() {
        return Err(PageError::Http {
            url: url.to_string(),
            status: response.status(),
            status_text: response.status_text(),
        });
    }
    Ok(response)
}

pub async fn fetch_text(url: &str) -> Result<String, PageError> {
    let response = request(url, HttpCache::Revalidate).await?;
    let text = JsFuture::from(response.text().map_err(browser::browser_error)?)
        .await
        .map_err(|e| PageError::Interrupted {
            url: url.to_string(),
            detail: js_error_text(&e),
        })?;
    Ok(text.as_string().unwrap_or_default())
}

/// A file read from the network.
pub struct Fetched {
    /// The first `expected` bytes received (zero-filled if the body was shorter).
    pub data: Uint8Array,
    /// Bytes the server actually sent (compare with the manifest before using `data`).
    pub received: u64,
    /// Milliseconds from the request to the last byte.
    pub elapsed_ms: f64,
}

/// Streams `url` into a buffer of `expected` bytes, calling `on_chunk(received_so_far)` as
/// bytes arrive. A body longer than `expected` is counted but not stored.
pub async fn fetch_bytes(
    url: &str,
    expected: u64,
    http_cache: HttpCache,
    on_chunk: &mut dyn FnMut(u64),
) -> Result<Fetched, PageError> {
    let started = now_ms();
    let response = request(url, http_cache).await?;
    let interrupted = |e: wasm_bindgen::JsValue| PageError::Interrupted {
        url: url.to_string(),
        detail: js_error_text(&e),
    };
    let capacity = u32::try_from(expected).map_err(|_| {
        PageError::Package(bd3lm::Error::package(
            url,
            "a file over 4 GB cannot be loaded in a browser",
        ))
    })?;
    let data = Uint8Array::new_with_length(capacity);
    let Some(body) = response.body() else {
        // No stream (an empty body): nothing arrives.
        return Ok(Fetched {
            data,
            received: 0,
            elapsed_ms: now_ms() - started,
        });
    };
    let reader: ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|object| browser::browser_error(object.into()))?;
    let mut received: u64 = 0;
    let mut last_yield = now_ms();
    loop {
        // When the network is faster than the page, every `read()` is already resolved and
        // the loop would run as one long task: give the event loop a turn now and then.
        if now_ms() - last_yield > MAX_READ_SLICE_MS {
            browser::yield_to_browser(0).await;
            last_yield = now_ms();
        }
        let step = JsFuture::from(reader.read()).await.map_err(interrupted)?;
        let done = Reflect::get(&step, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        let Ok(chunk) =
            Reflect::get(&step, &"value".into()).and_then(|v| v.dyn_into::<Uint8Array>())
        else {
            return Err(PageError::Browser(format!(
                "{url}: the download stream returned something that is not bytes"
            )));
        };
        let len = chunk.length() as u64;
        if received < expected {
            let room = (expected - received).min(len) as u32;
            let part = if room as u64 == len {
                chunk
            } else {
                chunk.subarray(0, room)
            };
            data.set(&part, received as u32);
        }
        received += len;
        on_chunk(received);
    }
    Ok(Fetched {
        data,
        received,
        elapsed_ms: now_ms() - started,
    })
}
