//! Logistic regression on the handwritten digits, one-vs-rest, trained end to end on the GPU:
//! ten binary classifiers `h_c = σ(w_c·x + b_c)` ("is it digit c?") at once as one linear layer
//! with the fused BCE with logits, whose gradient is the note's `(h − y)/m` (here divided by
//! the 10·m terms of the mean), by full-batch Adam with an L2 term. The prediction is the most
//! confident classifier. Compare with scikit-learn (`scripts/compare_sklearn.py`).
//!
//! Run with `cargo run --release --example logistic_regression`.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use gpu_activations::{Adam, AdamState, BceOptions, Context, Tensor};

const EPOCHS: usize = 600;
const CLASSES: usize = 10;
const FEATURES: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter_info());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut train, mut test) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for (i, line) in text.lines().skip(1).enumerate() {
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: line {}: {e}", path.display(), i + 2))?;
        if values.len() != FEATURES + 1 {
            return Err(format!("{}: line {}: expected 65 values", path.display(), i + 2).into());
        }
        let part: &mut (Vec<f32>, Vec<usize>) = if i % 5 == 4 { &mut test } else { &mut train };
        part.0.extend(values[..FEATURES].iter().map(|v| v / 16.0));
        part.1.push(values[FEATURES] as usize);
    }
    let (m, m_test) = (train.1.len(), test.1.len());
    // One-hot targets: classifier c's label is 1 for digit c, 0 for the rest.
    let mut y = vec![0.0f32; m * CLASSES];
    for (r, &label) in train.1.iter().enumerate() {
        y[r * CLASSES + label] = 1.0;
    }
    let x = Tensor::from_slice(&ctx, &train.0, &[m, FEATURES])?;
    let yt = Tensor::from_slice(&ctx, &y, &[m, CLASSES])?;
    let w = Tensor::zeros(&ctx, &[CLASSES, FEATURES])?;
    let b = Tensor::zeros(&ctx, &[CLASSES])?;
    let adam_w = Adam {
        lr: 0.05,
        weight_decay: 1e-4,
        ..Default::default()
    };
    let adam_b = Adam {
        lr: 0.05,
        ..Default::default()
    };
    let (mut state_w, mut state_b) = (AdamState::new(&w)?, AdamState::new(&b)?);
    let progress = ProgressBar::new(EPOCHS as u64).with_style(ProgressStyle::with_template(
        "{bar:40} epoch {pos}/{len} {msg}",
    )?);
    for epoch in 1..=EPOCHS {
        let out = x
            .linear(&w, Some(&b))?
            .bce_with_logits(&yt, &BceOptions::default())?;
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
    let x_test = Tensor::from_slice(&ctx, &test.0, &[m_test, FEATURES])?;
    let scores = x_test.linear(&w, Some(&b))?.to_vec()?;
    let correct = scores
        .chunks(CLASSES)
        .zip(&test.1)
        .filter(|(row, label)| {
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
            best.map(|(c, _)| c) == Some(**label)
        })
        .count();
    println!(
        "test accuracy (one-vs-rest): {:.2} % ({correct} of {m_test})",
        100.0 * correct as f64 / m_test as f64
    );
    Ok(())
}
