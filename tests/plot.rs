//! The pictures, made by the `gpu-activations` binary as a user would: `plot` writes
//! well-formed SVG and PNG files holding one curve per op and derivative asked for, and every
//! bad input fails with one stderr line naming the problem and leaves no file behind.

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
fn the_picture_options_have_help() {
    for (args, wanted) in [(
        &["plot", "--help"][..],
        &["Example", "--backend", "--range", "--output"][..],
    )] {
        let text = succeeds(args);
        for w in wanted {
            assert!(text.contains(w), "{args:?}: no {w} in {text}");
        }
    }
}
