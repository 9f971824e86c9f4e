//! The handwritten digits of `data/digits.csv` (a header, then 64 pixel values 0–16 and the
//! label on each line), split as `data/README.md` says: row i is a test row when i % 5 == 4.

use crate::dom::{Failure, Result};

pub const FEATURES: usize = 64;
pub const CLASSES: usize = 10;

/// Pixels scaled to [0, 1], row after row, and the labels.
pub struct Images {
    pub pixels: Vec<f32>,
    pub labels: Vec<i64>,
}

pub struct Split {
    pub train: Images,
    pub test: Images,
}

/// The split of the CSV `text` (`name` names the file in messages).
pub fn parse(name: &str, text: &str) -> Result<Split> {
    let empty = || Images {
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    let mut split = Split {
        train: empty(),
        test: empty(),
    };
    for (i, line) in text.lines().skip(1).enumerate() {
        let bad = |what: String| Failure(format!("{name}: line {}: {what}", i + 2));
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("not a number ({e})")))?;
        let [pixels @ .., label] = values.as_slice() else {
            return Err(bad("an empty line".into()));
        };
        if pixels.len() != FEATURES {
            return Err(bad(format!("{} values, expected 65", values.len())));
        }
        if !(label.fract() == 0.0 && (0.0..CLASSES as f32).contains(label)) {
            return Err(bad(format!("label {label} is not a digit 0–9")));
        }
        let part = if i % 5 == 4 {
            &mut split.test
        } else {
            &mut split.train
        };
        part.pixels.extend(pixels.iter().map(|v| v / 16.0));
        part.labels.push(*label as i64);
    }
    if split.train.labels.is_empty() || split.test.labels.is_empty() {
        return Err(Failure(format!(
            "{name}: too few rows for a training and a test split"
        )));
    }
    Ok(split)
}

/// How many rows of `scores` (CLASSES per row) have their highest score at their label.
pub fn correct(scores: &[f32], labels: &[i64]) -> usize {
    scores
        .chunks(CLASSES)
        .zip(labels)
        .filter(|(row, label)| {
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
            best.map(|(c, _)| c as i64) == Some(**label)
        })
        .count()
}
