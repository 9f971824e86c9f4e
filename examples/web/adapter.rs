//! The adapter in words. wgpu names a browser's adapter by its description, which Chromium
//! leaves empty; the browser's own `GPUAdapterInfo` then gives its vendor and architecture.

use gpu_activations::Context;
use gpu_activations::wgpu::DeviceType;
use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::dom::{Result, window};

/// The context's adapter, e.g. `google swiftshader (WebGPU, a software adapter)`.
pub async fn describe(ctx: &Context) -> String {
    let info = ctx.adapter_info();
    let name = if info.name.is_empty() {
        browser_info()
            .await
            .unwrap_or_else(|e| format!("an adapter the browser does not name ({e})"))
    } else {
        info.name.clone()
    };
    let kind = if info.device_type == DeviceType::Cpu {
        ", a software adapter"
    } else {
        ""
    };
    format!("{name} (WebGPU{kind})")
}

/// Vendor, architecture and description of the adapter `navigator.gpu` offers (the one
/// wgpu took: the page asks for no particular one).
async fn browser_info() -> Result<String> {
    let gpu = Reflect::get(&window()?.navigator(), &"gpu".into())?;
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into())?.dyn_into()?;
    let promise: js_sys::Promise = request.call0(&gpu)?.dyn_into()?;
    let adapter = JsFuture::from(promise).await?;
    let info = Reflect::get(&adapter, &"info".into())?;
    let words: Vec<String> = ["vendor", "architecture", "description"]
        .into_iter()
        .filter_map(|key| Reflect::get(&info, &key.into()).ok()?.as_string())
        .filter(|word| !word.is_empty())
        .collect();
    if words.is_empty() {
        return Err("the browser gives no vendor, architecture or description".into());
    }
    Ok(words.join(" "))
}
