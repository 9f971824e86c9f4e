//! The few DOM calls the page makes, and its error type: any failure, from the crate or from
//! the browser, becomes one line of text that the page shows.

use std::fmt;
use std::future::Future;

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Document, Element, Window};

/// What went wrong, in words the page can show.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<gpu_activations::Error> for Failure {
    fn from(e: gpu_activations::Error) -> Failure {
        Failure(e.to_string())
    }
}

impl From<JsValue> for Failure {
    /// A JavaScript exception or rejection: its message where it has one.
    fn from(v: JsValue) -> Failure {
        let message = js_sys::Reflect::get(&v, &"message".into())
            .ok()
            .and_then(|m| m.as_string());
        Failure(
            message
                .or_else(|| v.as_string())
                .unwrap_or_else(|| format!("{v:?}")),
        )
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Failure {
        Failure(s.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

pub fn window() -> Result<Window> {
    web_sys::window().ok_or_else(|| "no window: the page runs in a browser tab".into())
}

pub fn document() -> Result<Document> {
    window()?
        .document()
        .ok_or_else(|| "the window has no document".into())
}

/// The element with this id, as the type `T` the page's HTML gives it.
pub fn by_id<T: JsCast>(id: &str) -> Result<T> {
    document()?
        .get_element_by_id(id)
        .ok_or_else(|| Failure(format!("the page has no #{id}")))?
        .dyn_into::<T>()
        .map_err(|_| Failure(format!("#{id} is not the element the page expects")))
}

/// Sets the text of the element `id`.
pub fn set_text(id: &str, text: &str) -> Result<()> {
    by_id::<Element>(id)?.set_text_content(Some(text));
    Ok(())
}

/// Sets `window.result`, what a test of the page waits for, to an object of `fields`.
pub fn publish(fields: &[(&str, JsValue)]) -> Result<()> {
    let result = js_sys::Object::new();
    for (name, value) in fields {
        js_sys::Reflect::set(&result, &(*name).into(), value)?;
    }
    js_sys::Reflect::set(window()?.as_ref(), &"result".into(), &result)?;
    Ok(())
}

/// Milliseconds since the page opened.
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

/// Lets the browser run its event loop (input, drawing) before the page goes on: a zero
/// timeout, which unlike an animation frame also fires in a background tab.
pub async fn yield_to_browser() -> Result<()> {
    let mut resolve = None;
    // The executor runs at once, inside `Promise::new`.
    let promise = js_sys::Promise::new(&mut |r, _| resolve = Some(r));
    let resolve = resolve.ok_or("the promise's executor did not run")?;
    window()?.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0)?;
    JsFuture::from(promise).await?;
    Ok(())
}

/// The text of `url`, fetched from the page's origin.
pub async fn fetch_text(url: &str) -> Result<String> {
    let response: web_sys::Response = JsFuture::from(window()?.fetch_with_str(url))
        .await?
        .dyn_into()?;
    if !response.ok() {
        return Err(Failure(format!("{url}: HTTP {}", response.status())));
    }
    let text = JsFuture::from(response.text()?).await?;
    text.as_string()
        .ok_or_else(|| Failure(format!("{url}: not text")))
}

/// Runs `task` without waiting for it; `report` shows its failure, if any, in the page.
pub fn spawn(task: impl Future<Output = Result<()>> + 'static, report: fn(&Failure) -> Result<()>) {
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = task.await
            && report(&e).is_err()
        {
            // The page itself is broken: the console is all that is left.
            web_sys::console::error_1(&e.0.into());
        }
    });
}
