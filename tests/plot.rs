//! The pictures, made by the `gpu-activations` binary as a user would: `plot`, `train --plot`
//! and `bench --chart` write well-formed SVG and PNG files holding one curve or bar per op
//! asked for, and every bad input fails with one stderr line naming the problem and leaves no
//! file behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-activations"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn succeeds(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

struct Dir {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().to_path_buf();
        Dir { _dir: dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// The names in the directory, sorted (temporary files included).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// What a test reads from an SVG picture.
struct Svg {
    width: u32,
    height: u32,
    /// (stroke colour, number of points) of each polyline.
    polylines: Vec<(String, usize)>,
    /// The fill colour of each rectangle.
    rect_fills: Vec<String>,
    /// Each text element's text, trimmed.
    texts: Vec<String>,
}

impl Svg {
    /// Parses the file as XML and checks that its root is an `<svg>` element.
    fn read(path: &Path) -> Svg {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{}: not well-formed XML: {e}", path.display()));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg", "{}", path.display());
        let number = |name| {
            root.attribute(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{}: <svg {name}>", path.display()))
        };
        let elements = || root.descendants().filter(|n| n.is_element());
        let named = |name: &'static str| elements().filter(move |n| n.tag_name().name() == name);
        Svg {
            width: number("width"),
            height: number("height"),
            polylines: named("polyline")
                .map(|n| {
                    let points = n.attribute("points").unwrap_or("").split_whitespace();
                    (
                        n.attribute("stroke").unwrap_or("").to_string(),
                        points.count(),
                    )
                })
                .collect(),
            rect_fills: named("rect")
                .map(|n| n.attribute("fill").unwrap_or("").to_string())
                .collect(),
            texts: named("text")
                .map(|n| n.text().unwrap_or("").trim().to_string())
                .collect(),
        }
    }

    /// The curves: polylines of more than two points (axes, ticks and legend marks have two).
    fn curves(&self) -> Vec<&(String, usize)> {
        self.polylines.iter().filter(|(_, n)| *n > 2).collect()
    }

    fn has_text(&self, text: &str) -> bool {
        self.texts.iter().any(|t| t == text)
    }

    fn text_containing(&self, part: &str) -> Option<&String> {
        self.texts.iter().find(|t| t.contains(part))
    }
}

/// The curves' colours (chart.rs): the function and its derivative.
const F: &str = "#0072B2";
const DF: &str = "#E69F00";

/// A PNG's size and pixels (RGB or RGBA, 8 bits).
struct Png {
    width: u32,
    height: u32,
    channels: usize,
    pixels: Vec<u8>,
}

impl Png {
    fn read(path: &Path) -> Png {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            &bytes[..8],
            b"\x89PNG\r\n\x1a\n",
            "{}: PNG signature",
            path.display()
        );
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut pixels = vec![0; reader.output_buffer_size().expect("a sized image")];
        let frame = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(frame.bit_depth, png::BitDepth::Eight);
        let channels = match frame.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("{}: colour type {other:?}", path.display()),
        };
        pixels.truncate(frame.buffer_size());
        Png {
            width: frame.width,
            height: frame.height,
            channels,
            pixels,
        }
    }

    /// How many pixels of rows `rows` have exactly this colour.
    fn count(&self, rgb: [u8; 3], rows: std::ops::Range<u32>) -> usize {
        let row_bytes = self.width as usize * self.channels;
        self.pixels[rows.start as usize * row_bytes..rows.end as usize * row_bytes]
            .chunks(self.channels)
            .filter(|p| p[..3] == rgb)
            .count()
    }

    /// How many pixels of rows `rows` are dark (text, axes).
    fn dark(&self, rows: std::ops::Range<u32>) -> usize {
        let row_bytes = self.width as usize * self.channels;
        self.pixels[rows.start as usize * row_bytes..rows.end as usize * row_bytes]
            .chunks(self.channels)
            .filter(|p| p[..3].iter().all(|&c| c < 100))
            .count()
    }
}

#[test]
fn plot_draws_each_op_and_its_derivative_as_svg() {
    let d = Dir::new();
    let ops = ["sigmoid", "leaky-relu", "mish", "hardtanh"];
    let mut args = vec!["plot"];
    args.extend(ops);
    let out = d.s("act.svg");
    args.extend(["--output", &out, "--backend", "cpu", "--points", "101"]);
    succeeds(&args);
    let svg = Svg::read(&d.path("act.svg"));
    // Three panels a row: two rows of 400 × 300 under a title band.
    assert_eq!((svg.width, svg.height), (1200, 654));
    let curves = svg.curves();
    assert_eq!(curves.len(), 2 * ops.len(), "{curves:?}");
    assert_eq!(curves.iter().filter(|c| c.0 == F).count(), ops.len());
    assert_eq!(curves.iter().filter(|c| c.0 == DF).count(), ops.len());
    assert!(curves.iter().all(|c| c.1 == 101), "{curves:?}");
    for op in ops {
        assert!(svg.has_text(op), "no panel titled {op}: {:?}", svg.texts);
        assert!(svg.has_text(&format!("{op}(x)")), "no legend for {op}");
        assert!(svg.has_text(&format!("{op}′(x)")), "no legend for {op}′");
    }
    assert!(svg.has_text("x"), "no x axis label");
    assert!(svg.text_containing("by the backward kernel").is_some());
    let note = svg.text_containing("points, x in").expect("a note");
    assert_eq!(
        note,
        "on CPU reference (f64 arithmetic) (cpu), 101 points, x in [-6, 6]"
    );
    assert_eq!(d.names(), ["act.svg"], "only the picture is left");
}

#[test]
fn plot_draws_the_notes_functions_by_default_as_png() {
    let d = Dir::new();
    let out = succeeds(&["plot", "--output", &d.s("act.png"), "--backend", "cpu"]);
    assert!(out.contains("6 panels"), "{out}");
    let png = Png::read(&d.path("act.png"));
    assert_eq!((png.width, png.height), (1200, 654));
    // Each of the six panels' curves, in both colours, and text in the title band: the
    // bundled font draws.
    for (half, rows) in [(0, 54..354), (1, 354..654)] {
        for rgb in [[0, 114, 178], [230, 159, 0]] {
            let n = png.count(rgb, rows.clone());
            assert!(n > 1000, "half {half}: {n} pixels of {rgb:?}");
        }
    }
    assert!(png.dark(0..54) > 300, "no title text");

    // The SVG holds the same six ops, twelve curves.
    succeeds(&["plot", "--output", &d.s("act.svg"), "--backend", "cpu"]);
    let svg = Svg::read(&d.path("act.svg"));
    assert_eq!(svg.curves().len(), 12);
    for op in ["sigmoid", "tanh", "relu", "gelu", "silu", "softplus"] {
        assert!(svg.has_text(&format!("{op}′(x)")), "{op}");
    }
}

#[test]
fn plot_on_the_default_adapter_draws_what_the_kernels_compute() {
    // Fails here when GPU_ACTIVATIONS_REQUIRE_ADAPTER=1 and there is none; otherwise `auto`
    // falls back to the CPU backend.
    let gpus = common::gpus();
    let d = Dir::new();
    let out = succeeds(&[
        "plot",
        "relu",
        "--range=-2,3",
        "--points",
        "51",
        "--output",
        &d.s("relu.svg"),
    ]);
    let adapter = out
        .lines()
        .find_map(|l| l.strip_prefix("adapter: "))
        .unwrap_or_else(|| panic!("no adapter line in {out}"));
    if !gpus.is_empty() {
        let on_a_gpu = gpus
            .iter()
            .any(|g| adapter.contains(&g.adapter_info().name));
        assert!(on_a_gpu, "auto should choose a GPU, not {adapter}");
    }
    let svg = Svg::read(&d.path("relu.svg"));
    let note = svg.text_containing("points, x in").expect("a note");
    let name = adapter.split(" (").next().unwrap_or(adapter);
    assert!(note.contains(name), "{note} should name {name}");
    // relu′ is a step: its curve sits at two heights, 0 and 1; relu itself rises.
    let text = std::fs::read_to_string(d.path("relu.svg")).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let heights = |colour: &str| {
        let line = doc
            .descendants()
            .find(|n| {
                n.tag_name().name() == "polyline"
                    && n.attribute("stroke") == Some(colour)
                    && n.attribute("points").unwrap().split_whitespace().count() == 51
            })
            .unwrap_or_else(|| panic!("no curve of {colour}"));
        let mut ys: Vec<i64> = line
            .attribute("points")
            .unwrap()
            .split_whitespace()
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        ys.sort();
        ys.dedup();
        ys.len()
    };
    assert_eq!(heights(DF), 2);
    assert!(heights(F) > 20);
}

/// Runs a command that must fail: non-zero exit, one stderr line containing `problem`, and the
/// directory as it was (the old picture untouched, no temporary file left).
fn assert_fails(d: &Dir, args: &[&str], problem: &str) {
    let before = d.names();
    let old = std::fs::read(d.path("old.svg")).ok();
    let o = run(args);
    assert!(!o.status.success(), "{args:?} should fail");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one stderr line, got {err:?}");
    assert!(
        lines[0].contains(problem),
        "{args:?}: {:?} should say {problem:?}",
        lines[0]
    );
    assert_eq!(d.names(), before, "{args:?}: files changed");
    assert_eq!(
        std::fs::read(d.path("old.svg")).ok(),
        old,
        "{args:?}: old.svg changed"
    );
}

#[test]
fn bad_plot_input_fails_naming_the_problem_and_writes_nothing() {
    let d = Dir::new();
    std::fs::write(d.path("old.svg"), "an old picture").unwrap();
    std::fs::write(d.path("file.txt"), "not a directory").unwrap();
    std::fs::create_dir(d.path("sub.svg")).unwrap();
    let svg = d.s("new.svg");
    let old = d.s("old.svg");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["nope".into(), "--output".into(), svg.clone()],
            "\"nope\"",
        ),
        (
            vec!["softmax".into(), "--output".into(), svg.clone()],
            "\"softmax\"",
        ),
        (
            vec!["gelu-backward".into(), "--output".into(), old.clone()],
            "gelu-backward",
        ),
        (
            vec!["--range=6,-6".into(), "--output".into(), old.clone()],
            "below the maximum",
        ),
        (
            vec!["--range=1,1".into(), "--output".into(), svg.clone()],
            "below the maximum",
        ),
        (
            vec!["--range=NaN,1".into(), "--output".into(), svg.clone()],
            "finite",
        ),
        (
            vec!["--range=0,inf".into(), "--output".into(), svg.clone()],
            "finite",
        ),
        (
            vec!["--range=-6".into(), "--output".into(), svg.clone()],
            "MIN,MAX",
        ),
        (
            vec!["--range=a,1".into(), "--output".into(), svg.clone()],
            "not a number",
        ),
        (
            vec![
                "--points".into(),
                "1".into(),
                "--output".into(),
                svg.clone(),
            ],
            "--points",
        ),
        (
            vec!["--output".into(), d.s("act.jpg")],
            "act.jpg: unknown picture format",
        ),
        (
            vec!["--output".into(), d.s("act")],
            "must end in .svg or .png",
        ),
        (
            vec!["--output".into(), d.s("missing/act.svg")],
            "missing/act.svg: no directory",
        ),
        (
            vec!["--output".into(), d.s("file.txt/act.svg")],
            "file.txt/act.svg: no directory",
        ),
        (
            vec!["--output".into(), d.s("sub.svg")],
            "sub.svg: is a directory",
        ),
    ];
    for (extra, problem) in cases {
        let mut args = vec!["plot"];
        args.extend(extra.iter().map(String::as_str));
        args.extend(["--backend", "cpu"]);
        assert_fails(&d, &args, problem);
    }
}

#[test]
fn train_plots_the_loss_and_the_test_accuracy_per_epoch() {
    let d = Dir::new();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv");
    let data = data.to_string_lossy();
    let out = succeeds(&[
        "train",
        "--epochs",
        "12",
        "--data",
        &data,
        "--plot",
        &d.s("t.svg"),
        "--backend",
        "cpu",
    ]);
    let svg = Svg::read(&d.path("t.svg"));
    let curves = svg.curves();
    assert_eq!(curves.len(), 2, "{curves:?}");
    assert!(
        curves.iter().all(|c| c.1 == 12),
        "one point per epoch: {curves:?}"
    );
    for text in ["epoch", "mean cross-entropy", "% of the test images right"] {
        assert!(svg.has_text(text), "no {text:?} in {:?}", svg.texts);
    }
    // The accuracy curve ends at the accuracy the command prints.
    let printed = out
        .lines()
        .find_map(|l| l.strip_prefix("test accuracy: "))
        .unwrap_or_else(|| panic!("no accuracy in {out}"));
    let printed = printed.split(" (").next().unwrap();
    let last = format!("epoch 12: {printed} (");
    assert!(
        svg.texts.iter().any(|t| t.starts_with(&last)),
        "{last} not in {:?}",
        svg.texts
    );
    let title = svg.text_containing("softmax regression").expect("a title");
    assert!(title.contains("CPU reference"), "{title}");

    succeeds(&[
        "train",
        "--model",
        "logistic",
        "--epochs",
        "3",
        "--data",
        &data,
        "--plot",
        &d.s("t.png"),
        "--backend",
        "cpu",
    ]);
    let png = Png::read(&d.path("t.png"));
    assert_eq!((png.width, png.height), (1000, 400));
    assert!(png.count([0, 114, 178], 0..400) > 100);
    assert_eq!(d.names(), ["t.png", "t.svg"]);

    // A bad picture name fails before any training.
    assert_fails(
        &d,
        &["train", "--plot", &d.s("t.gif"), "--backend", "cpu"],
        "t.gif: unknown picture format",
    );
}

#[test]
fn bench_charts_each_ops_fraction_of_the_copy_ceiling_by_family() {
    let d = Dir::new();
    let ops = ["copy", "relu", "glu", "softmax", "cross-entropy"];
    let mut args = vec!["bench"];
    for op in &ops {
        args.extend(["--op", op]);
    }
    let (chart, json) = (d.s("b.svg"), d.s("b.json"));
    args.extend(["--shape", "64,100", "--runs", "2", "--warmup", "1"]);
    args.extend(["--chart", &chart, "--json", &json, "--backend", "cpu"]);
    succeeds(&args);
    let svg = Svg::read(&d.path("b.svg"));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("b.json")).unwrap()).unwrap();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), ops.len());
    // One bar per op, in its family's colour, and one legend square per family.
    for colour in ["#787878", "#0072B2", "#CC79A7", "#009E73", "#D55E00"] {
        let n = svg.rect_fills.iter().filter(|f| *f == colour).count();
        assert_eq!(n, 2, "{colour}: {:?}", svg.rect_fills);
    }
    for family in [
        "copy kernel",
        "activations",
        "gated, PReLU",
        "softmax family",
        "losses",
    ] {
        assert!(svg.has_text(family), "no legend entry {family}");
    }
    for r in results {
        let op = r["op"].as_str().unwrap();
        let label = format!("{op}, 64×100");
        assert!(svg.has_text(&label), "no bar labelled {label:?}");
        let percent = format!("{:.0} %", 100.0 * r["fraction_of_copy"].as_f64().unwrap());
        assert!(svg.has_text(&percent), "{op}: no bar reading {percent}");
    }
    let title = svg.text_containing("copy ceiling on").expect("a title");
    assert!(
        title.contains(doc["adapter"]["name"].as_str().unwrap()),
        "{title}"
    );

    std::fs::remove_file(d.path("b.json")).unwrap();
    let png = d.s("b.png");
    succeeds(&[
        "bench",
        "--op",
        "gelu",
        "--shape",
        "1000",
        "--runs",
        "1",
        "--warmup",
        "1",
        "--chart",
        &png,
        "--backend",
        "cpu",
    ]);
    let png = Png::read(&d.path("b.png"));
    assert!(png.count([0, 114, 178], 0..png.height) > 100, "no bar");

    assert_fails(
        &d,
        &[
            "bench",
            "--op",
            "linear",
            "--chart",
            &d.s("l.svg"),
            "--backend",
            "cpu",
        ],
        "FMA peak",
    );
    assert_fails(
        &d,
        &[
            "bench",
            "--op",
            "relu",
            "--chart",
            &d.s("l.pdf"),
            "--backend",
            "cpu",
        ],
        "l.pdf: unknown picture format",
    );
    assert_eq!(d.names(), ["b.png", "b.svg"]);
}

#[test]
fn the_picture_options_have_help() {
    for (args, wanted) in [
        (
            &["plot", "--help"][..],
            &["Example", "--backend", "--range", "--output"][..],
        ),
        (&["train", "--help"], &["--plot"]),
        (&["bench", "--help"], &["--chart"]),
    ] {
        let text = succeeds(args);
        for w in wanted {
            assert!(text.contains(w), "{args:?}: no {w} in {text}");
        }
    }
}
