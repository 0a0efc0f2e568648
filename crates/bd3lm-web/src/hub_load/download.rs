//! The checkpoint's bytes from the Hub into the hash and the converter, resuming a broken
//! connection with Range requests.

use super::{drain, hub_err, hub_fetch, HubInfo, Outbox, MAX_RESUMES, MAX_SLICE_MS};
use crate::browser::{self, js_error_text, now_ms, yield_to_browser};
use crate::cache::PackageCache;
use crate::page_engine::ModelSink;
use crate::page_error::PageError;
use crate::progress::DownloadProgress;
use bd3lm::hub::{self, HubError};
use bd3lm::stream_convert::StreamingConverter;
use js_sys::{Reflect, Uint8Array};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::ReadableStreamDefaultReader;

/// The bytes of a fetch body, chunk by chunk.
struct ByteStream {
    reader: ReadableStreamDefaultReader,
    url: String,
}

impl ByteStream {
    async fn next(&mut self) -> Result<Option<Uint8Array>, String> {
        let step = JsFuture::from(self.reader.read())
            .await
            .map_err(|e| js_error_text(&e))?;
        let done = Reflect::get(&step, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            return Ok(None);
        }
        Reflect::get(&step, &"value".into())
            .ok()
            .and_then(|v| v.dyn_into::<Uint8Array>().ok())
            .map(Some)
            .ok_or_else(|| format!("{}: the stream gave something that is not bytes", self.url))
    }
}

/// Opens the checkpoint at byte `start` (a Range request past 0). Returns the stream and how
/// many leading bytes to skip (a server that ignored the Range sends the whole file).
async fn open_checkpoint(
    info: &HubInfo,
    url: &str,
    start: u64,
) -> Result<(ByteStream, u64), PageError> {
    let response = hub_fetch(
        &info.id,
        &info.endpoint,
        url,
        Some(hub::CHECKPOINT_FILE),
        start,
    )
    .await?;
    let skip = if start > 0 && response.status() == 200 {
        start
    } else {
        0
    };
    let body = response.body().ok_or_else(|| {
        hub_err(HubError::Unreachable {
            url: url.to_string(),
            detail: "the answer has no body".into(),
        })
    })?;
    let reader: ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|object| browser::browser_error(object.into()))?;
    Ok((
        ByteStream {
            reader,
            url: response.url(),
        },
        skip,
    ))
}

/// Streams the checkpoint through the hash and the converter, resuming a broken connection
/// with Range requests (at most [`MAX_RESUMES`] times).
#[allow(clippy::too_many_arguments)]
pub(super) async fn stream_checkpoint<S: FnMut(&str, Vec<u8>) -> bd3lm::Result<()>>(
    info: &HubInfo,
    lfs: &hub::LfsInfo,
    converter: &mut StreamingConverter<S>,
    hasher: &mut Sha256,
    outbox: &Rc<RefCell<Outbox>>,
    base_url: &str,
    staging: &PackageCache,
    sink: &mut ModelSink,
    progress: &mut DownloadProgress,
    on_progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<(), PageError> {
    let repo = info.id.repo();
    let mut url = hub::resolve_url(&info.endpoint, &repo, &info.commit, hub::CHECKPOINT_FILE);
    let small_files = progress.done_bytes;
    let stage = |converter: &StreamingConverter<S>| match converter.current_tensor() {
        Some(t) => format!("downloading and converting {t} → {}", info.format.name()),
        None => "downloading model.safetensors".to_string(),
    };
    let mut resumes = 0;
    let mut last_paint = 0.0;
    while converter.position() < lfs.size {
        let at = converter.position();
        let opened = open_checkpoint(info, &url, at).await;
        let (mut stream, mut skip) = match opened {
            Ok(s) => s,
            Err(PageError::Hub(HubError::Unreachable { detail, .. }))
                if at > 0 && resumes < MAX_RESUMES =>
            {
                resumes += 1;
                progress.activity = format!(
                    "the connection broke at {} ({detail}); resuming, attempt {resumes} of {MAX_RESUMES}",
                    crate::format::bytes(at)
                );
                on_progress(progress);
                yield_to_browser(500 * resumes as i32).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        // Later attempts go straight to where the redirect led (the CDN).
        url = stream.url.clone();
        let t0 = now_ms();
        let network0 = (progress.network_bytes, progress.network_ms);
        let mut last_yield = now_ms();
        let broke = loop {
            if now_ms() - last_yield > MAX_SLICE_MS {
                yield_to_browser(0).await;
                last_yield = now_ms();
            }
            let chunk = match stream.next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break None,
                Err(why) => break Some(why),
            };
            let mut bytes = chunk.to_vec();
            if skip > 0 {
                let n = (skip as usize).min(bytes.len());
                bytes.drain(..n);
                skip -= n as u64;
            }
            let room = (lfs.size - converter.position()) as usize;
            if bytes.len() > room {
                return Err(hub_err(HubError::SizeMismatch {
                    repo: repo.clone(),
                    file: hub::CHECKPOINT_FILE.into(),
                    expected: lfs.size,
                    found: converter.position() + bytes.len() as u64,
                }));
            }
            hasher.update(&bytes);
            converter.push(&bytes).map_err(PageError::Package)?;
            drop(bytes);
            drain(outbox, base_url, staging, sink).await?;
            let done = converter.position();
            progress.done_bytes = small_files + done;
            progress.network_bytes = network0.0 + (done - at);
            progress.network_ms = network0.1 + (now_ms() - t0);
            if progress.network_ms - last_paint >= 100.0 || done == lfs.size {
                last_paint = progress.network_ms;
                progress.activity = stage(converter);
                on_progress(progress);
            }
        };
        if converter.position() >= lfs.size {
            break;
        }
        let detail = broke.unwrap_or_else(|| "the server closed the connection early".into());
        if resumes >= MAX_RESUMES {
            return Err(hub_err(HubError::Interrupted {
                repo,
                file: hub::CHECKPOINT_FILE.into(),
                at: converter.position(),
                total: lfs.size,
                detail,
            }));
        }
        resumes += 1;
        browser::log(&format!(
            "bd3lm: {} broke off at byte {} ({detail}); resuming with a Range request",
            hub::CHECKPOINT_FILE,
            converter.position()
        ));
        progress.activity = format!(
            "the connection broke at {}; resuming, attempt {resumes} of {MAX_RESUMES}",
            crate::format::bytes(converter.position())
        );
        on_progress(progress);
        yield_to_browser(300 * resumes as i32).await;
    }
    Ok(())
}
