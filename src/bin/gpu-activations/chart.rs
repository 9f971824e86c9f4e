//! The command's pictures: SVG or PNG by the output's extension, drawn with plotters in memory
//! and written beside the target, then renamed over it, so that a failure leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gpu_activations::npy::{self, file_error};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub type BoxError = Box<dyn std::error::Error>;

/// The family every picture's text names; the bundled font is registered under it.
pub const FONT: &str = "sans-serif";

/// DejaVu Sans, cut down (fonts/README.md says how; fonts/LICENSE holds its licence). plotters
/// lays out text with it, and draws PNG text with it, so no system font library is needed.
static FONT_BYTES: &[u8] = include_bytes!("fonts/DejaVuSans-subset.ttf");

/// Colours that stay apart for most readers (Okabe and Ito's palette).
pub const BLUE: RGBColor = RGBColor(0, 114, 178);
pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
pub const GREEN: RGBColor = RGBColor(0, 158, 115);
pub const VERMILION: RGBColor = RGBColor(213, 94, 0);
pub const PURPLE: RGBColor = RGBColor(204, 121, 167);
pub const GREY: RGBColor = RGBColor(120, 120, 120);

/// A picture's file format, chosen by the extension.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Svg,
    Png,
}

/// Where a picture goes: a path whose extension names a format, in a directory that exists.
/// Checked before any work, so that a bad path fails at once.
pub struct Target {
    path: PathBuf,
    format: Format,
}

impl Target {
    pub fn new(path: &Path) -> Result<Target, BoxError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match ext.as_deref() {
            Some("svg") => Format::Svg,
            Some("png") => Format::Png,
            _ => {
                return Err(file_error(
                    path,
                    "unknown picture format: the name must end in .svg or .png",
                )
                .into());
            }
        };
        npy::check_targets(&[path])?;
        Ok(Target {
            path: path.to_path_buf(),
            format,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Draws `picture` in memory, then writes it to a temporary file beside the target and
    /// renames that over the target.
    pub fn write(&self, picture: &impl Picture) -> Result<(), BoxError> {
        Ok(self.stage(picture)?.commit()?)
    }

    /// Draws `picture` in memory and writes it beside the target, for the caller to commit
    /// with its other outputs.
    pub fn stage(&self, picture: &impl Picture) -> Result<npy::Staged, BoxError> {
        let bytes = render(picture, self.format)
            .map_err(|e| file_error(&self.path, format!("cannot draw the picture ({e})")))?;
        Ok(npy::stage_bytes(&self.path, &bytes)?)
    }
}

/// Something to draw: its size in pixels and how to draw it on any plotters backend.
pub trait Picture {
    fn size(&self) -> (u32, u32);

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), BoxError>
    where
        DB::ErrorType: 'static;
}

/// Registers the bundled font once; plotters needs it to lay out any text.
fn register_font() -> Result<(), BoxError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err("the bundled font does not load".into())
    }
}

/// The picture's file contents.
fn render(picture: &impl Picture, format: Format) -> Result<Vec<u8>, BoxError> {
    register_font()?;
    let (width, height) = picture.size();
    match format {
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
                picture.draw(&root)?;
                root.present()?;
            }
            Ok(svg.into_bytes())
        }
        Format::Png => {
            let mut rgb = vec![0u8; width as usize * height as usize * 3];
            {
                let root =
                    BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
                picture.draw(&root)?;
                root.present()?;
            }
            let mut bytes = Vec::new();
            let mut encoder = png::Encoder::new(&mut bytes, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_compression(png::Compression::High);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&rgb)?;
            writer.finish()?;
            Ok(bytes)
        }
    }
}

/// The smallest and largest finite values, widened so that a flat curve still has a range and
/// nothing touches the frame.
pub fn bounds<'a>(values: impl IntoIterator<Item = &'a f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (-1.0, 1.0);
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1.0)
    };
    (lo - pad, hi + pad)
}

/// The runs of consecutive points whose coordinates are both finite: a curve is drawn as these
/// pieces, with gaps where the values are NaN or infinite.
pub fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    points
        .split(|(x, y)| !(x.is_finite() && y.is_finite()))
        .filter(|run| !run.is_empty())
        .map(<[(f64, f64)]>::to_vec)
        .collect()
}

/// An axis label: at most three decimals, without trailing zeros (`-6`, `0.25`, `1e-5`).
pub fn tick(v: &f64) -> String {
    let v = *v;
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Draws `heading` centred in a band at the top of `root` (and `note` under it, smaller);
/// returns the area below.
pub fn title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    heading: &str,
    note: Option<&str>,
) -> Result<DrawingArea<DB, Shift>, BoxError>
where
    DB::ErrorType: 'static,
{
    let height = if note.is_some() {
        TITLE_WITH_NOTE
    } else {
        TITLE
    };
    let (top, body) = root.split_vertically(height);
    let (width, _) = top.dim_in_pixel();
    let centre = |y| (width as i32 / 2, y);
    let style = |size| text(size).pos(Pos::new(HPos::Center, VPos::Center));
    top.draw(&Text::new(heading.to_string(), centre(18), style(16.0)))?;
    if let Some(note) = note {
        top.draw(&Text::new(note.to_string(), centre(40), style(12.0)))?;
    }
    Ok(body)
}

/// The height of a title band, and of one with a note under the title.
pub const TITLE: u32 = 34;
pub const TITLE_WITH_NOTE: u32 = 54;

/// A text style of the bundled font.
pub fn text(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_widen_flat_and_empty_ranges() {
        assert_eq!(bounds(&[0.0, 1.0, f64::NAN]), (-0.05, 1.05));
        assert_eq!(bounds(&[2.0, 2.0]), (1.0, 3.0));
        assert_eq!(bounds(&[f64::NAN]), (-1.0, 1.0));
    }

    #[test]
    fn ticks_are_short() {
        let ticks: Vec<String> = [-6.0, 0.25, 1.0 / 3.0, -0.0, 1e-5, 2.5e7]
            .iter()
            .map(tick)
            .collect();
        assert_eq!(ticks, ["-6", "0.25", "0.333", "0", "1.0e-5", "2.5e7"]);
    }

    #[test]
    fn curves_break_at_non_finite_values() {
        let p = [(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0), (3.0, 3.0)];
        assert_eq!(
            finite_runs(&p),
            vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]
        );
    }

    #[test]
    fn the_extension_chooses_the_format() {
        let dir = std::env::temp_dir();
        assert_eq!(Target::new(&dir.join("a.SVG")).unwrap().format, Format::Svg);
        assert_eq!(Target::new(&dir.join("a.png")).unwrap().format, Format::Png);
        assert!(Target::new(&dir.join("a.jpg")).is_err());
        assert!(Target::new(&dir.join("a")).is_err());
        assert!(Target::new(&dir.join("missing-dir/a.svg")).is_err());
    }
}
