//! Reading and writing `.npy` files (with npyz), as the command line does: float16/float32/
//! float64 arrays of either byte order in C order as f32 (float16 widened exactly), integer
//! arrays of any width as class indices, and atomic writes of float32 or float16 (a temporary
//! file beside the target, renamed into place) so that a failed run leaves no partial output;
//! the same staging ([`stage_bytes`], [`check_targets`], [`commit_all`]) writes the command's
//! pictures and reports.
//! Every problem is a [`FileError`] naming the file. numpy has no bfloat16: bfloat16 data is
//! read and written as float32 holding bfloat16 values.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use npyz::{DType, Order, TypeChar, WriterBuilder};

/// A problem with one file, reported as `FILE: problem`.
#[derive(Debug)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for FileError {}

/// A [`FileError`] for `path`.
pub fn file_error(path: &Path, problem: impl Into<String>) -> FileError {
    FileError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// An array read from a file: its values and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array<T> {
    /// The values in C order.
    pub values: Vec<T>,
    /// The shape (empty for a 0-d array).
    pub shape: Vec<usize>,
}

/// The values of an .npy file, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// float16, widened to f32 (exactly).
    F16(Array<f32>),
    /// float32.
    F32(Array<f32>),
    /// float64.
    F64(Array<f64>),
    /// Any signed or unsigned integer width (u64 above i64::MAX saturates).
    Int(Array<i64>),
}

/// Reads any float or integer array from a file.
pub fn read(path: &Path) -> Result<Values, FileError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    parse(path, &bytes)
}

/// Parses the bytes of an .npy file; `path` only names it in errors. Never panics, whatever
/// the bytes.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Values, FileError> {
    // A header's parse error spans several lines (it draws the text): its first says enough.
    let npy = npyz::NpyFile::new(bytes).map_err(|e| {
        let e = e.to_string();
        let first = e.lines().next().unwrap_or("").trim().trim_end_matches(':');
        file_error(path, format!("not a valid .npy file ({first})"))
    })?;
    if npy.order() == Order::Fortran {
        return Err(file_error(
            path,
            "Fortran-order arrays are not supported; save it in C order (np.ascontiguousarray)",
        ));
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let declared = count.and_then(|n| n.checked_mul(npy.dtype().num_bytes().unwrap_or(usize::MAX)));
    match declared {
        Some(b) if b <= bytes.len() => {}
        _ => {
            return Err(file_error(
                path,
                format!("the header declares shape {shape:?}, more data than the file holds"),
            ));
        }
    }
    let DType::Plain(t) = npy.dtype() else {
        return Err(file_error(path, "structured arrays are not supported"));
    };
    let bad = |e: std::io::Error| file_error(path, format!("cannot read the data ({e})"));
    let unsupported = || file_error(path, format!("unsupported dtype {t}"));
    let array = |values| Array {
        values,
        shape: shape.clone(),
    };
    Ok(match (t.type_char(), t.size_field()) {
        (TypeChar::Float, 2) => Values::F16(Array {
            values: npy
                .into_vec::<npyz::half::f16>()
                .map_err(bad)?
                .into_iter()
                .map(f32::from)
                .collect(),
            shape,
        }),
        (TypeChar::Float, 4) => Values::F32(Array {
            values: npy.into_vec::<f32>().map_err(bad)?,
            shape,
        }),
        (TypeChar::Float, 8) => Values::F64(Array {
            values: npy.into_vec::<f64>().map_err(bad)?,
            shape,
        }),
        (TypeChar::Int, size) => Values::Int(array(match size {
            1 => widen(npy.into_vec::<i8>().map_err(bad)?),
            2 => widen(npy.into_vec::<i16>().map_err(bad)?),
            4 => widen(npy.into_vec::<i32>().map_err(bad)?),
            8 => npy.into_vec::<i64>().map_err(bad)?,
            _ => return Err(unsupported()),
        })),
        (TypeChar::Uint, size) => Values::Int(array(match size {
            1 => widen(npy.into_vec::<u8>().map_err(bad)?),
            2 => widen(npy.into_vec::<u16>().map_err(bad)?),
            4 => widen(npy.into_vec::<u32>().map_err(bad)?),
            8 => npy
                .into_vec::<u64>()
                .map_err(bad)?
                .into_iter()
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
                .collect(),
            _ => return Err(unsupported()),
        })),
        _ => {
            return Err(file_error(
                path,
                format!(
                    "unsupported dtype {t}; expected float16, float32, float64 or an integer type"
                ),
            ));
        }
    })
}

fn widen<T: Into<i64>>(v: Vec<T>) -> Vec<i64> {
    v.into_iter().map(Into::into).collect()
}

impl Values {
    /// The values as f32 (float arrays only; float16 is widened exactly, float64 rounded).
    pub fn into_f32(self, path: &Path) -> Result<Array<f32>, FileError> {
        match self {
            Values::F16(a) | Values::F32(a) => Ok(a),
            Values::F64(a) => Ok(Array {
                values: a.values.into_iter().map(|v| v as f32).collect(),
                shape: a.shape,
            }),
            Values::Int(_) => Err(file_error(
                path,
                "integer array where float16, float32 or float64 was expected",
            )),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Values::F16(a) | Values::F32(a) => &a.shape,
            Values::F64(a) => &a.shape,
            Values::Int(a) => &a.shape,
        }
    }

    /// Whether the file holds float16.
    pub fn is_f16(&self) -> bool {
        matches!(self, Values::F16(_))
    }
}

/// Reads a float16, float32 or float64 array as f32.
pub fn read_f32(path: &Path) -> Result<Array<f32>, FileError> {
    read(path)?.into_f32(path)
}

/// The element type of a written array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// float32.
    F32,
    /// float16 (each value rounded to nearest, ties to even).
    F16,
}

/// Serialises an f32 array as float32 .npy bytes.
pub fn encode(values: &[f32], shape: &[usize]) -> std::io::Result<Vec<u8>> {
    encode_as(values, shape, FileType::F32)
}

/// Serialises an f32 array as .npy bytes of `file_type`.
pub fn encode_as(values: &[f32], shape: &[usize], file_type: FileType) -> std::io::Result<Vec<u8>> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    match file_type {
        FileType::F32 => write_npy(values.iter().copied(), &shape),
        FileType::F16 => write_npy(values.iter().map(|&v| npyz::half::f16::from_f32(v)), &shape),
    }
}

fn write_npy<T: npyz::AutoSerialize>(
    values: impl Iterator<Item = T>,
    shape: &[u64],
) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut bytes)
        .begin_nd()?;
    writer.extend(values)?;
    writer.finish()?;
    Ok(bytes)
}

/// An output staged beside its target, renamed into place by [`Staged::commit`]; dropping it
/// uncommitted removes the temporary file and leaves the target untouched.
pub struct Staged {
    file: tempfile::NamedTempFile,
    target: PathBuf,
}

/// Checks, before anything is computed or written, that each of a run's `targets` can be
/// written: its directory exists, it is not a directory, and no two of them name the same file
/// (the second would silently replace the first).
pub fn check_targets(targets: &[&Path]) -> Result<(), FileError> {
    let mut seen: Vec<(PathBuf, &Path)> = Vec::with_capacity(targets.len());
    for &target in targets {
        let dir = parent_dir(target);
        if !dir.is_dir() {
            return Err(file_error(
                target,
                format!("no directory {}", dir.display()),
            ));
        }
        let name = match target.file_name() {
            Some(name) if !target.is_dir() => name,
            _ => return Err(file_error(target, "is a directory, not a file name")),
        };
        let resolved = dir.canonicalize().unwrap_or(dir).join(name);
        if let Some((_, first)) = seen.iter().find(|(r, _)| *r == resolved) {
            return Err(file_error(
                target,
                format!("names the same file as {} (two outputs)", first.display()),
            ));
        }
        seen.push((resolved, target));
    }
    Ok(())
}

fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `values` as float32 to a temporary file beside `target`.
pub fn stage(target: &Path, values: &[f32], shape: &[usize]) -> Result<Staged, FileError> {
    stage_as(target, values, shape, FileType::F32)
}

/// Writes `values` as `file_type` to a temporary file beside `target`.
pub fn stage_as(
    target: &Path,
    values: &[f32],
    shape: &[usize],
    file_type: FileType,
) -> Result<Staged, FileError> {
    let bytes =
        encode_as(values, shape, file_type).map_err(|e| file_error(target, e.to_string()))?;
    stage_bytes(target, &bytes)
}

/// Writes `bytes` (any file: an array, a picture, a report) to a temporary file beside
/// `target`, readable as a newly created file would be (0666 less the umask on Unix, not a
/// temporary file's 0600).
pub fn stage_bytes(target: &Path, bytes: &[u8]) -> Result<Staged, FileError> {
    let dir = parent_dir(target);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".gpu-activations-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut file = builder.tempfile_in(&dir).map_err(|e| {
        file_error(
            target,
            format!("cannot create a file in {} ({e})", dir.display()),
        )
    })?;
    file.write_all(bytes)
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| file_error(target, format!("cannot write ({e})")))?;
    Ok(Staged {
        file,
        target: target.to_path_buf(),
    })
}

impl Staged {
    /// Renames the staged file over the target.
    pub fn commit(self) -> Result<(), FileError> {
        let target = self.target;
        self.file
            .persist(&target)
            .map(|_| ())
            .map_err(|e| file_error(&target, format!("cannot write ({})", e.error)))
    }
}

/// Commits every staged file, in order: `staged` is first checked with [`check_targets`], so a
/// rename can only fail for a reason that arose in between.
pub fn commit_all(staged: Vec<Staged>) -> Result<(), FileError> {
    let targets: Vec<&Path> = staged.iter().map(|s| s.target.as_path()).collect();
    check_targets(&targets)?;
    for s in staged {
        s.commit()?;
    }
    Ok(())
}
