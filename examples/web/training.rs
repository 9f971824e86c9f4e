//! Softmax regression on the digits, trained in the page on the GPU as `gpu-activations train`
//! trains it (same split, zero initial weights, full-batch Adam with the same rate and L2
//! term, same number of epochs), so that the figures compare: each epoch runs the linear layer,
//! the fused cross-entropy (its gradient with respect to the logits is the note's a − y, over
//! m), the linear layer's backward and the Adam steps on the device, then reads back the loss
//! and the test images' scores, draws both curves and lets the browser run before the next.
//!
//! At the end `#accuracy` shows the test accuracy (`data-correct`, `data-total`), `#status`
//! becomes `done` and `window.result` holds the figures.

use gpu_activations::{Adam, AdamState, Context, CrossEntropyOptions, Targets, Tensor};
use web_sys::Element;

use crate::chart::{Chart, Series};
use crate::digits::{self, CLASSES, FEATURES};
use crate::dom::{self, Result, by_id, set_text};

/// The data file the command line builds in, served beside the page.
const DATA: &str = "data/digits.csv";
/// `train`'s defaults for softmax regression.
pub const EPOCHS: usize = 300;
const LR: f32 = 0.05;
const WEIGHT_DECAY: f32 = 1e-3;

/// Trains, drawing as it goes, and publishes the result; `adapter` names the GPU.
pub async fn run(ctx: &Context, adapter: &str) -> Result<()> {
    set_text("status", &format!("fetching {DATA}"))?;
    let data = digits::parse(DATA, &dom::fetch_text(DATA).await?)?;
    let (m, m_test) = (data.train.labels.len(), data.test.labels.len());
    set_text(
        "data",
        &format!("{DATA}: {m} training images, {m_test} test images (every fifth row)."),
    )?;
    let x = Tensor::from_slice(ctx, &data.train.pixels, &[m, FEATURES])?;
    let x_test = Tensor::from_slice(ctx, &data.test.pixels, &[m_test, FEATURES])?;
    let w = Tensor::zeros(ctx, &[CLASSES, FEATURES])?;
    let b = Tensor::zeros(ctx, &[CLASSES])?;
    let adam_w = Adam {
        lr: LR,
        weight_decay: WEIGHT_DECAY,
        ..Default::default()
    };
    let adam_b = Adam {
        lr: LR,
        ..Default::default()
    };
    let (mut state_w, mut state_b) = (AdamState::new(&w)?, AdamState::new(&b)?);
    let labels = Targets::Indices(&data.train.labels);
    let options = CrossEntropyOptions::default();
    let (mut losses, mut accuracies) = (Vec::new(), Vec::new());
    let mut correct = 0;
    let start = dom::now_ms();
    for epoch in 1..=EPOCHS {
        set_text("status", &format!("training: epoch {epoch} of {EPOCHS}"))?;
        let logits = x.linear(&w, Some(&b))?;
        let out = logits.cross_entropy(labels, &options)?;
        let (dw, db) = x.linear_param_backward(&w, &out.grad)?;
        adam_w.step(&w, &dw, &mut state_w)?;
        adam_b.step(&b, &db, &mut state_b)?;
        // The loss of this epoch's forward pass (before its step), then the test images
        // scored with the stepped weights, as `train --plot` records them.
        let loss = out.loss.to_vec_async().await?[0];
        let scores = x_test.linear(&w, Some(&b))?.to_vec_async().await?;
        correct = digits::correct(&scores, &data.test.labels);
        let accuracy = 100.0 * correct as f64 / m_test as f64;
        losses.push((epoch as f64, f64::from(loss)));
        accuracies.push((epoch as f64, accuracy));
        draw(&losses, &accuracies)?;
        set_text(
            "progress",
            &format!("epoch {epoch}: loss {loss:.5}, test accuracy {accuracy:.2} %"),
        )?;
        dom::yield_to_browser().await?;
    }
    let seconds = (dom::now_ms() - start) / 1000.0;
    let accuracy = 100.0 * correct as f64 / m_test as f64;
    let shown: Element = by_id("accuracy")?;
    shown.set_text_content(Some(&format!(
        "{accuracy:.2} % ({correct} of {m_test}) after {EPOCHS} epochs, {seconds:.1} s"
    )));
    shown.set_attribute("data-correct", &correct.to_string())?;
    shown.set_attribute("data-total", &m_test.to_string())?;
    let loss = losses.last().map_or(f64::NAN, |p| p.1);
    dom::publish(&[
        ("adapter", adapter.into()),
        ("epochs", (EPOCHS as f64).into()),
        ("train_images", (m as f64).into()),
        ("test_images", (m_test as f64).into()),
        ("correct", (correct as f64).into()),
        ("accuracy", accuracy.into()),
        ("loss", loss.into()),
        (
            "first_loss",
            losses.first().map_or(f64::NAN, |p| p.1).into(),
        ),
        ("seconds", seconds.into()),
    ])?;
    set_text("status", "done")
}

/// The loss and the test accuracy so far, epoch by epoch.
fn draw(losses: &[(f64, f64)], accuracies: &[(f64, f64)]) -> Result<()> {
    let x = (0.0, EPOCHS as f64);
    let top = losses.first().map_or(1.0, |p| p.1 * 1.05);
    let loss = Chart {
        id: "loss-chart",
        width: 420.0,
        height: 260.0,
        x,
        y: (0.0, top),
        x_label: "epoch",
        series: &[Series {
            label: "mean cross-entropy (training)",
            colour: "#1f6fb4",
            points: losses,
        }],
    };
    let accuracy = Chart {
        id: "accuracy-chart",
        width: 420.0,
        height: 260.0,
        x,
        y: (0.0, 100.0),
        x_label: "epoch",
        series: &[Series {
            label: "test accuracy (%)",
            colour: "#2a9d4b",
            points: accuracies,
        }],
    };
    by_id::<Element>("loss")?.set_inner_html(&loss.svg());
    by_id::<Element>("test-accuracy")?.set_inner_html(&accuracy.svg());
    Ok(())
}
