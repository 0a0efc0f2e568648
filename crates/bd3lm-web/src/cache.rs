//! The browser's Cache API as the package store: one entry per file, keyed by the file's
//! absolute URL. Entries are only written after they passed verification and are verified
//! again when read, so a damaged entry is noticed, evicted and downloaded again.
//!
//! Without a secure context there is no Cache API; the store then reports itself unavailable
//! and every call is a no-op, so the page still works (downloading every time).

use crate::browser::js_error_text;
use js_sys::Uint8Array;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::Response;

/// Bump when the way files are stored changes, so old entries are not read back.
pub const CACHE_NAME: &str = "bd3lm-packages-v1";
/// Where a package converted from a Hub checkpoint waits until the checkpoint's SHA-256
/// verified; then its files move into [`CACHE_NAME`] (so that one only ever holds verified
/// packages). Cleared on the next conversion, so a closed tab leaves nothing for long.
pub const STAGING_CACHE_NAME: &str = "bd3lm-staging-v1";

pub struct PackageCache {
    cache: Option<web_sys::Cache>,
    /// Why there is no cache, in words (shown in the page).
    pub unavailable: Option<String>,
}

impl PackageCache {
    pub async fn open() -> PackageCache {
        Self::open_named(CACHE_NAME).await
    }

    /// The cache of that name (see [`STAGING_CACHE_NAME`]).
    pub async fn open_named(name: &str) -> PackageCache {
        let unavailable = |why: String| PackageCache {
            cache: None,
            unavailable: Some(why),
        };
        let Some(window) = web_sys::window() else {
            return unavailable("no window".into());
        };
        if !window.is_secure_context() {
            return unavailable("the Cache API needs https or localhost".into());
        }
        let storage = match window.caches() {
            Ok(storage) => storage,
            Err(e) => {
                return unavailable(format!(
                    "the browser refused the Cache API ({})",
                    js_error_text(&e)
                ))
            }
        };
        match JsFuture::from(storage.open(name))
            .await
            .and_then(|c| c.dyn_into::<web_sys::Cache>())
        {
            Ok(cache) => PackageCache {
                cache: Some(cache),
                unavailable: None,
            },
            // e.g. private windows with storage switched off
            Err(e) => unavailable(format!(
                "the browser refused to open the cache ({})",
                js_error_text(&e)
            )),
        }
    }

    async fn response(&self, url: &str) -> Option<Response> {
        let cache = self.cache.as_ref()?;
        let found = JsFuture::from(cache.match_with_str(url)).await.ok()?;
        found.dyn_into::<Response>().ok()
    }

    pub async fn contains(&self, url: &str) -> bool {
        self.response(url).await.is_some()
    }

    /// The stored bytes, or `None` when absent or unreadable.
    pub async fn get(&self, url: &str) -> Option<Uint8Array> {
        let response = self.response(url).await?;
        let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
        Some(Uint8Array::new(&buffer))
    }

    pub async fn get_text(&self, url: &str) -> Option<String> {
        let response = self.response(url).await?;
        JsFuture::from(response.text().ok()?)
            .await
            .ok()?
            .as_string()
    }

    /// Stores bytes; an error (quota, storage switched off) is returned as words.
    pub async fn put(&self, url: &str, data: &Uint8Array) -> Result<(), String> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let response =
            Response::new_with_opt_js_u8_array(Some(data)).map_err(|e| js_error_text(&e))?;
        JsFuture::from(cache.put_with_str(url, &response))
            .await
            .map(|_| ())
            .map_err(|e| js_error_text(&e))
    }

    /// Stores bytes held in wasm memory without a JS copy of them: the `Response`
    /// constructor copies a BufferSource's bytes (Fetch, "extract a body"), so a view into
    /// wasm memory is enough and `bytes` is freed before the write completes.
    pub async fn put_bytes(&self, url: &str, bytes: Vec<u8>) -> Result<(), String> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let response = {
            // SAFETY: the view is read only by the constructor below, during which nothing
            // allocates in wasm memory (which could move or detach it).
            let view = unsafe { Uint8Array::view(&bytes) };
            Response::new_with_opt_js_u8_array(Some(&view)).map_err(|e| js_error_text(&e))?
        };
        drop(bytes);
        JsFuture::from(cache.put_with_str(url, &response))
            .await
            .map(|_| ())
            .map_err(|e| js_error_text(&e))
    }

    pub async fn put_text(&self, url: &str, text: &str) -> Result<(), String> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let response = Response::new_with_opt_str(Some(text)).map_err(|e| js_error_text(&e))?;
        JsFuture::from(cache.put_with_str(url, &response))
            .await
            .map(|_| ())
            .map_err(|e| js_error_text(&e))
    }

    /// Moves the entry `url` from `staging` into this cache without reading it into memory.
    pub async fn move_from(&self, staging: &PackageCache, url: &str) -> Result<(), String> {
        let (Some(cache), Some(response)) = (&self.cache, staging.response(url).await) else {
            return Ok(());
        };
        JsFuture::from(cache.put_with_str(url, &response))
            .await
            .map_err(|e| js_error_text(&e))?;
        staging.delete(url).await;
        Ok(())
    }

    /// Deletes every entry whose URL starts with `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) {
        let Some(cache) = &self.cache else { return };
        let Ok(keys) = JsFuture::from(cache.keys()).await else {
            return;
        };
        for request in js_sys::Array::from(&keys).iter() {
            if let Ok(request) = request.dyn_into::<web_sys::Request>() {
                if request.url().starts_with(prefix) {
                    self.delete(&request.url()).await;
                }
            }
        }
    }

    pub async fn delete(&self, url: &str) {
        if let Some(cache) = &self.cache {
            let _ = JsFuture::from(cache.delete_with_str(url)).await;
        }
    }
}
