//! `gpu-activations train`: the note's models on the handwritten digits, trained end to end on
//! the adapter: softmax regression (the fused cross-entropy) or one-vs-rest logistic
//! regression (BCE with logits), full-batch Adam with an L2 term, the loss shown each epoch
//! and the test accuracy at the end; with `--plot`, a picture of the loss and the test
//! accuracy epoch by epoch.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gpu_activations::npy::file_error;
use gpu_activations::{Adam, AdamState, BceOptions, CrossEntropyOptions, Targets, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::BackendArg;
use crate::chart::Target;
use crate::figures::Training;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Model {
    /// p = softmax(W·x + b), the cross-entropy.
    Softmax,
    /// Ten classifiers σ(w_c·x + b_c), one per digit against the rest, BCE with logits.
    Logistic,
}

#[derive(Args)]
pub struct TrainArgs {
    /// The model.
    #[arg(long, value_enum, default_value = "softmax")]
    model: Model,
    /// The data: a CSV with a header, 64 pixel values (0–16) then the label on each line
    /// (default: the digits of data/digits.csv, built into the command).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Full-batch epochs (default: 300 for softmax, 600 for logistic).
    #[arg(long)]
    epochs: Option<usize>,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.05, allow_hyphen_values = true)]
    lr: f32,
    /// λ of the L2 term on the weights (default: 1e-3 for softmax, 1e-4 for logistic).
    #[arg(long, allow_hyphen_values = true)]
    weight_decay: Option<f32>,
    /// Draw the training loss and the test accuracy, epoch by epoch, to this .svg or .png file
    /// (the test images are then scored after every epoch, not only at the end).
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArg,
}

type BoxError = Box<dyn std::error::Error>;

const FEATURES: usize = 64;
const CLASSES: usize = 10;

/// Pixels scaled to [0, 1] and labels, split as data/README.md says (row i is a test row when
/// i % 5 == 4).
struct Data {
    train: (Vec<f32>, Vec<usize>),
    test: (Vec<f32>, Vec<usize>),
}

/// scikit-learn's digits (data/README.md), built in so that `train` runs from any directory.
const DIGITS: &str = include_str!("../../../data/digits.csv");

/// The digits of `--data`, or the built-in ones.
fn load(given: Option<&std::path::Path>) -> Result<Data, BoxError> {
    match given {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| file_error(path, format!("{e} (the file of --data)")))?;
            parse(path, &text)
        }
        None => parse(std::path::Path::new("data/digits.csv (built in)"), DIGITS),
    }
}

/// The digits of a CSV's `text`; `path` names it in messages.
fn parse(path: &std::path::Path, text: &str) -> Result<Data, BoxError> {
    let mut data = Data {
        train: (Vec::new(), Vec::new()),
        test: (Vec::new(), Vec::new()),
    };
    for (i, line) in text.lines().skip(1).enumerate() {
        let bad = |what: String| file_error(path, format!("line {}: {what}", i + 2));
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("not a number ({e})")))?;
        if values.len() != FEATURES + 1 {
            return Err(bad(format!(
                "{} values, expected 64 pixels and a label",
                values.len()
            ))
            .into());
        }
        let label = values[FEATURES];
        if !(label.fract() == 0.0 && (0.0..CLASSES as f32).contains(&label)) {
            return Err(bad(format!("label {label} is not a digit 0–9")).into());
        }
        let part = if i % 5 == 4 {
            &mut data.test
        } else {
            &mut data.train
        };
        part.0.extend(values[..FEATURES].iter().map(|v| v / 16.0));
        part.1.push(label as usize);
    }
    if data.train.1.is_empty() || data.test.1.is_empty() {
        return Err(file_error(path, "too few rows for a training and a test split").into());
    }
    Ok(data)
}

pub fn run(args: &TrainArgs) -> Result<ExitCode, BoxError> {
    if !args.lr.is_finite() || args.lr <= 0.0 {
        return Err(format!("--lr {} must be a positive number", args.lr).into());
    }
    if args.epochs == Some(0) {
        return Err("--epochs 0: train at least one epoch".into());
    }
    let target = args.plot.as_deref().map(Target::new).transpose()?;
    let data = load(args.data.as_deref())?;
    let ctx = args.backend.context()?;
    let (m, m_test) = (data.train.1.len(), data.test.1.len());
    let (epochs, weight_decay) = match args.model {
        Model::Softmax => (
            args.epochs.unwrap_or(300),
            args.weight_decay.unwrap_or(1e-3),
        ),
        Model::Logistic => (
            args.epochs.unwrap_or(600),
            args.weight_decay.unwrap_or(1e-4),
        ),
    };
    say!("adapter: {}", ctx.adapter_info());
    say!(
        "data:    {m} training and {m_test} test images ({})",
        args.data
            .as_deref()
            .map_or("data/digits.csv, built in".into(), |p| p
                .display()
                .to_string())
    );
    let x = Tensor::from_slice(&ctx, &data.train.0, &[m, FEATURES])?;
    let labels: Vec<i64> = data.train.1.iter().map(|&c| c as i64).collect();
    let mut one_hot = vec![0.0f32; m * CLASSES];
    for (r, &c) in data.train.1.iter().enumerate() {
        one_hot[r * CLASSES + c] = 1.0;
    }
    let y = Tensor::from_slice(&ctx, &one_hot, &[m, CLASSES])?;
    let w = Tensor::zeros(&ctx, &[CLASSES, FEATURES])?;
    let b = Tensor::zeros(&ctx, &[CLASSES])?;
    let adam_w = Adam {
        lr: args.lr,
        weight_decay,
        ..Default::default()
    };
    let adam_b = Adam {
        lr: args.lr,
        ..Default::default()
    };
    let (mut state_w, mut state_b) = (AdamState::new(&w)?, AdamState::new(&b)?);
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(epochs as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} epoch {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let x_test = Tensor::from_slice(&ctx, &data.test.0, &[m_test, FEATURES])?;
    let (mut losses, mut correct_by_epoch) = (Vec::new(), Vec::new());
    let mut last = f32::NAN;
    for epoch in 1..=epochs {
        let logits = x.linear(&w, Some(&b))?;
        let out = match args.model {
            Model::Softmax => {
                logits.cross_entropy(Targets::Indices(&labels), &CrossEntropyOptions::default())?
            }
            Model::Logistic => logits.bce_with_logits(&y, &BceOptions::default())?,
        };
        let (dw, db) = x.linear_param_backward(&w, &out.grad)?;
        adam_w.step(&w, &dw, &mut state_w)?;
        adam_b.step(&b, &db, &mut state_b)?;
        last = out.loss.to_vec()?[0];
        if target.is_some() {
            losses.push(last);
            correct_by_epoch.push(correct(&x_test, &w, &b, &data.test.1)?);
        }
        // Every epoch's loss: above the bar on a terminal, one line each otherwise.
        let line = format!("epoch {epoch:>5}: loss {last:.5}");
        if progress.is_hidden() {
            say!("{line}");
        } else {
            progress.println(line);
        }
        progress.set_message(format!("loss {last:.5}"));
        progress.inc(1);
    }
    progress.finish();
    let correct = correct(&x_test, &w, &b, &data.test.1)?;
    say!("final loss {last:.5}");
    say!(
        "test accuracy: {:.2} % ({correct} of {m_test})",
        100.0 * correct as f64 / m_test as f64
    );
    if let Some(target) = target {
        let (model, loss_name) = match args.model {
            Model::Softmax => ("softmax regression", "mean cross-entropy"),
            Model::Logistic => ("one-vs-rest logistic regression", "mean BCE with logits"),
        };
        let info = ctx.adapter_info();
        target.write(&Training {
            title: format!(
                "{model} on the digits ({m} training images): full-batch Adam, lr {}, L2 {}, \
                 on {} ({})",
                args.lr, weight_decay, info.name, info.backend
            ),
            loss_name: loss_name.into(),
            losses,
            correct: correct_by_epoch,
            test_images: m_test,
        })?;
        say!("wrote {}", target.path().display());
    }
    Ok(ExitCode::SUCCESS)
}

/// How many test images the model `x·Wᵀ + b` classifies right (the highest score wins).
fn correct(x_test: &Tensor, w: &Tensor, b: &Tensor, labels: &[usize]) -> Result<usize, BoxError> {
    let scores = x_test.linear(w, Some(b))?.to_vec()?;
    Ok(scores
        .chunks(CLASSES)
        .zip(labels)
        .filter(|(row, label)| {
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
            best.map(|(c, _)| c) == Some(**label)
        })
        .count())
}
