//! The activations and their derivatives: one op chosen from every [`Activation`] the crate
//! has, its parameters in number fields (from the op's own table), f(x) from the forward kernel
//! and f′(x) from the backward kernel with an upstream gradient of ones, computed on the GPU,
//! read back and drawn, again on every change. `#curve` carries what it shows: `data-op`,
//! `data-params`, and the x values with the GPU's f(x) and f′(x) (`data-x`, `data-y`,
//! `data-dy`, JSON arrays).

use std::cell::Cell;
use std::rc::Rc;

use gpu_activations::{Activation, Context, Tensor};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{Element, Event, HtmlInputElement, HtmlSelectElement};

use crate::chart::{Chart, Series, range_of};
use crate::dom::{self, Failure, Result, by_id};

/// Points on the x axis, 0 among them.
const POINTS: usize = 401;
const X_RANGE: (f32, f32) = (-6.0, 6.0);

/// What the listeners share: the GPU, and which drawing is the latest (a slower, earlier one
/// that finishes after it is dropped).
struct Curves {
    ctx: Context,
    latest: Cell<u64>,
}

/// Fills the op list, shows the first op's parameters, listens for changes and draws.
pub fn install(ctx: &Context) -> Result<()> {
    let select: HtmlSelectElement = by_id("op")?;
    let options: String = Activation::ALL
        .iter()
        .map(|a| format!(r#"<option value="{0}">{0}</option>"#, a.name()))
        .collect();
    select.set_inner_html(&options);
    show_parameters(Activation::ALL[0])?;
    let curves = Rc::new(Curves {
        ctx: ctx.clone(),
        latest: Cell::new(0),
    });
    let on_op = {
        let curves = curves.clone();
        move |_: Event| {
            let shown = chosen_op().and_then(show_parameters);
            match shown {
                Ok(()) => redraw(&curves),
                Err(e) => {
                    let _ = report(&e);
                }
            }
        }
    };
    listen(select.unchecked_ref(), "change", on_op)?;
    let on_parameter = {
        let curves = curves.clone();
        move |_: Event| redraw(&curves)
    };
    listen(&by_id("params")?, "input", on_parameter)?;
    redraw(&curves);
    Ok(())
}

/// Calls `handler` on every `event` at `target` for the life of the page.
fn listen(target: &Element, event: &str, handler: impl FnMut(Event) + 'static) -> Result<()> {
    let closure = Closure::<dyn FnMut(Event)>::new(handler);
    target.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())?;
    // The page keeps its listeners until it closes.
    closure.forget();
    Ok(())
}

/// The op the list shows, with its default parameters.
fn chosen_op() -> Result<Activation> {
    let name = by_id::<HtmlSelectElement>("op")?.value();
    Ok(name.parse::<Activation>()?)
}

/// One number field per parameter of `act`, holding its default.
fn show_parameters(act: Activation) -> Result<()> {
    let fields: String = act
        .parameters()
        .iter()
        .map(|(name, value)| {
            format!(
                r#"<label>{name} <input type="number" step="0.1" id="param-{name}" value="{value}"></label>"#
            )
        })
        .collect();
    let none = r#"<span class="quiet">no parameters</span>"#;
    by_id::<Element>("params")?.set_inner_html(if fields.is_empty() { none } else { &fields });
    Ok(())
}

/// The chosen op with the parameters in its fields.
fn chosen() -> Result<Activation> {
    let mut act = chosen_op()?;
    for (name, _) in act.parameters() {
        let text = by_id::<HtmlInputElement>(&format!("param-{name}"))?.value();
        let value: f32 = text
            .trim()
            .parse()
            .map_err(|_| Failure(format!("{name}: enter a number")))?;
        act = act.with_parameter(name, value)?;
    }
    Ok(act)
}

/// Draws the chosen op, dropping any drawing still under way and its error, if shown.
fn redraw(curves: &Rc<Curves>) {
    let generation = curves.latest.get() + 1;
    curves.latest.set(generation);
    let _ = dom::set_text("curve-error", "");
    let curves = curves.clone();
    dom::spawn(
        async move {
            let drawn = async {
                let act = chosen()?;
                Ok::<_, Failure>((act, compute(&curves.ctx, act).await?))
            }
            .await;
            if curves.latest.get() != generation {
                return Ok(());
            }
            let (act, (x, y, dy)) = drawn?;
            show(act, &x, &y, &dy)
        },
        report,
    );
}

/// f(x) and f′(x) on the GPU for the x axis's points.
async fn compute(ctx: &Context, act: Activation) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let (lo, hi) = X_RANGE;
    let x: Vec<f32> = (0..POINTS)
        .map(|i| lo + (hi - lo) * i as f32 / (POINTS - 1) as f32)
        .collect();
    let xs = Tensor::from_slice(ctx, &x, &[POINTS])?;
    let ones = Tensor::from_slice(ctx, &[1.0; POINTS], &[POINTS])?;
    let y = xs.activation(act)?;
    let dy = xs.activation_backward(act, &ones)?;
    Ok((x, y.to_vec_async().await?, dy.to_vec_async().await?))
}

/// Draws f and f′ into `#curve` and records what it drew there.
fn show(act: Activation, x: &[f32], y: &[f32], dy: &[f32]) -> Result<()> {
    let points = |v: &[f32]| -> Vec<(f64, f64)> {
        x.iter()
            .zip(v)
            .map(|(&a, &b)| (f64::from(a), f64::from(b)))
            .collect()
    };
    let (f, df) = (points(y), points(dy));
    let (lo, hi) = X_RANGE;
    let name = act.name();
    let derivative = format!("{name}′(x)");
    let value = format!("{name}(x)");
    let svg = Chart {
        id: "curve-chart",
        width: 640.0,
        height: 360.0,
        x: (f64::from(lo), f64::from(hi)),
        y: range_of(f.iter().chain(&df).map(|p| p.1).chain([0.0])),
        x_label: "x",
        series: &[
            Series {
                label: &value,
                colour: "#1f6fb4",
                points: &f,
            },
            Series {
                label: &derivative,
                colour: "#d9591b",
                points: &df,
            },
        ],
    }
    .svg();
    let figure: Element = by_id("curve")?;
    figure.set_inner_html(&svg);
    let params = js_sys::Object::new();
    for (p, v) in act.parameters() {
        js_sys::Reflect::set(&params, &p.into(), &f64::from(v).into())?;
    }
    figure.set_attribute("data-op", name)?;
    figure.set_attribute("data-params", &json(&params)?)?;
    for (attribute, values) in [("data-x", x), ("data-y", y), ("data-dy", dy)] {
        let array: js_sys::Array = values
            .iter()
            .map(|&v| wasm_bindgen::JsValue::from(f64::from(v)))
            .collect();
        figure.set_attribute(attribute, &json(&array)?)?;
    }
    Ok(())
}

/// JSON text of a JavaScript value (exact for every f32: JavaScript prints the shortest
/// decimal that reads back as the same double).
fn json(value: &wasm_bindgen::JsValue) -> Result<String> {
    js_sys::JSON::stringify(value)?
        .as_string()
        .ok_or_else(|| "JSON.stringify gave no text".into())
}

/// A failure to draw shows under the chart; the chart before it stays.
fn report(e: &Failure) -> Result<()> {
    dom::set_text("curve-error", &e.0)
}
