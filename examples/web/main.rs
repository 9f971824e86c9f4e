//! A page that shows the note live, computed by the crate on the visitor's GPU through the
//! browser's WebGPU: every activation and its derivative, plotted from the GPU's answers (one
//! op from a list, its parameters adjustable), and softmax regression on the digits trained
//! in the page, its loss and test accuracy drawn as it trains.
//!
//! `scripts/web-demo.sh` builds it (`wasm-bindgen --target web`) and serves it on 127.0.0.1;
//! `scripts/web-test.sh` runs it in headless Chromium against the CPU reference and the
//! command line's `train`. In a browser only the crate's async calls are used
//! (`Context::with_options_async`, `Tensor::to_vec_async`): nothing blocks the event loop.
//! Natively this example builds as an empty library.
#![cfg(target_arch = "wasm32")]

mod adapter;
mod chart;
mod curves;
mod digits;
mod dom;
mod training;

use gpu_activations::{Backend, Context, ContextOptions, Error};
use wasm_bindgen::prelude::wasm_bindgen;
use web_sys::Element;

use dom::{Failure, Result, set_text};

/// Runs when the module loads.
#[wasm_bindgen(start)]
pub fn start() {
    dom::spawn(run(), report);
}

async fn run() -> Result<()> {
    set_text("status", "opening the GPU")?;
    // WebGPU or nothing: the page is about the GPU, so no CPU fallback.
    let options = ContextOptions {
        backend: Some(Backend::WebGpu),
        ..Default::default()
    };
    let ctx = Context::with_options_async(options)
        .await
        .map_err(|e| match e {
            Error::NoAdapter { .. } => Failure(
                "this browser offers no WebGPU adapter (in Chrome or Edge it is on by default \
                 on most machines; Chromium without a GPU needs --enable-unsafe-webgpu)"
                    .into(),
            ),
            e => e.into(),
        })?;
    let adapter = adapter::describe(&ctx).await;
    set_text("adapter", &adapter)?;
    curves::install(&ctx)?;
    training::run(&ctx, &adapter).await
}

/// A failure of the page as a whole: `#status` and `window.result` say what it was.
fn report(e: &Failure) -> Result<()> {
    let status: Element = dom::by_id("status")?;
    status.set_text_content(Some(&format!("error: {e}")));
    status.set_class_name("error");
    dom::publish(&[("error", e.0.as_str().into())])
}
