//! Softmax regression on the handwritten digits, trained end to end on the GPU: the note's
//! model `p = softmax(W·x + b)` with the gradient `∇_W J = (1/m)·(p − Y)ᵀ·X + λW`, by full-batch
//! Adam. Each epoch runs the linear layer, the fused cross-entropy (its gradient is
//! `(p − Y)/m`), the linear layer's backward and the Adam steps on the device; only the loss is
//! read back. The test accuracy at the end compares with scikit-learn's
//! `LogisticRegression` on the same split (`scripts/compare_sklearn.py`).
//!
//! Run with `cargo run --release --example softmax_regression` (set `GPU_ACTIVATIONS_BACKEND`
//! to choose the adapter).

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use gpu_activations::{Adam, AdamState, Context, CrossEntropyOptions, Targets, Tensor};

const EPOCHS: usize = 300;
const CLASSES: usize = 10;
const FEATURES: usize = 64;

/// Images (pixels scaled to [0, 1]) and labels of `data/digits.csv`, split as
/// `data/README.md` says: row i is a test row when i % 5 == 4.
struct Split {
    train: (Vec<f32>, Vec<i64>),
    test: (Vec<f32>, Vec<i64>),
}

fn load(path: &Path) -> Result<Split, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut split = Split {
        train: (Vec::new(), Vec::new()),
        test: (Vec::new(), Vec::new()),
    };
    for (i, line) in text.lines().skip(1).enumerate() {
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: line {}: {e}", path.display(), i + 2))?;
        if values.len() != FEATURES + 1 {
            return Err(format!(
                "{}: line {}: {} values, expected 65",
                path.display(),
                i + 2,
                values.len()
            )
            .into());
        }
        let part = if i % 5 == 4 {
            &mut split.test
        } else {
            &mut split.train
        };
        part.0.extend(values[..FEATURES].iter().map(|v| v / 16.0));
        part.1.push(values[FEATURES] as i64);
    }
    Ok(split)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter_info());
    let data = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv"))?;
    let (m, m_test) = (data.train.1.len(), data.test.1.len());
    println!("digits: {m} training and {m_test} test images of {FEATURES} pixels");

    let x = Tensor::from_slice(&ctx, &data.train.0, &[m, FEATURES])?;
    let w = Tensor::zeros(&ctx, &[CLASSES, FEATURES])?;
    let b = Tensor::zeros(&ctx, &[CLASSES])?;
    let adam_w = Adam {
        lr: 0.05,
        weight_decay: 1e-3,
        ..Default::default()
    };
    let adam_b = Adam {
        lr: 0.05,
        ..Default::default()
    };
    let (mut state_w, mut state_b) = (AdamState::new(&w)?, AdamState::new(&b)?);
    let labels = Targets::Indices(&data.train.1);
    let options = CrossEntropyOptions::default();
    let progress = ProgressBar::new(EPOCHS as u64).with_style(ProgressStyle::with_template(
        "{bar:40} epoch {pos}/{len} {msg}",
    )?);
    for epoch in 1..=EPOCHS {
        let logits = x.linear(&w, Some(&b))?;
        let out = logits.cross_entropy(labels, &options)?;
        let (dw, db) = x.linear_param_backward(&w, &out.grad)?;
        adam_w.step(&w, &dw, &mut state_w)?;
        adam_b.step(&b, &db, &mut state_b)?;
        // Reading the loss back waits for the epoch's work; the bar shows it on a terminal.
        let loss = out.loss.to_vec()?[0];
        let line = format!("epoch {epoch:>4}: loss {loss:.5}");
        if progress.is_hidden() {
            println!("{line}");
        } else {
            progress.println(line);
        }
        progress.set_message(format!("loss {loss:.5}"));
        progress.inc(1);
    }
    progress.finish();

    let x_test = Tensor::from_slice(&ctx, &data.test.0, &[m_test, FEATURES])?;
    let scores = x_test.linear(&w, Some(&b))?.to_vec()?;
    let correct = scores
        .chunks(CLASSES)
        .zip(&data.test.1)
        .filter(|(row, y)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(c, _)| c);
            best as i64 == **y
        })
        .count();
    println!(
        "test accuracy: {:.2} % ({correct} of {m_test})",
        100.0 * correct as f64 / m_test as f64
    );
    Ok(())
}
