//! Image folders as classification data, laid out as torchvision's `ImageFolder`: one
//! sub-folder per class, the sorted folder names giving the class indices. Images (PNG,
//! JPEG) are decoded when a batch is drawn, in parallel (rayon), so that a large folder
//! is never held in memory: converted to RGB, resized to the model's input height and
//! width, scaled to [0, 1] and normalized per channel with a mean and a standard deviation.
//!
//! The resize is PIL's bilinear `Image.resize` (what torchvision's `Resize` does on PIL
//! images), reproduced exactly: a triangle filter whose support grows with the
//! downscaling factor (antialiasing), 8-bit fixed-point coefficients, the horizontal pass
//! first, each pass rounded to 8 bits.

use crate::error::{Error, Result};
use crate::exec::GraphInput;
use oto_onnx::DType;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// ImageNet's channel means (RGB), torchvision's usual normalization.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How an image folder is read.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ImageOptions {
    /// Channel means (RGB) subtracted after scaling to [0, 1] [default: ImageNet's].
    pub mean: Option<[f32; 3]>,
    /// Channel standard deviations (RGB) divided by [default: ImageNet's].
    pub std: Option<[f32; 3]>,
    /// Fraction of the images held out for validation (chosen by the seed).
    pub val_split: Option<f64>,
}

/// Which images of a folder with a held-out split a data set takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every image (the split, if any, is ignored).
    All,
    /// The images outside the held-out split.
    Train,
    /// The held-out images.
    Val,
}

/// The file extensions read (lowercase).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// For a model input `[N, C, H, W]` whose height and width are symbolic (a Hugging Face
/// export, `[batch_size, num_channels, height, width]`): the input with the image size
/// of the `preprocessor_config.json` beside `model` (`"size": {"height", "width"}`, or
/// one number for both) and 3 channels, as the model's image processor resizes to;
/// `None` when the input fixes its size or there is no such file.
pub fn size_from_preprocessor(input: &GraphInput, model: &Path) -> Result<Option<GraphInput>> {
    let Some(dims) = input.dims.as_deref() else { return Ok(None) };
    if dims.len() != 4 || (dims[2].is_some() && dims[3].is_some()) {
        return Ok(None);
    }
    let path = model.parent().unwrap_or(Path::new(".")).join("preprocessor_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let data_error = |message: String| Error::Data { path: path.clone(), message };
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| data_error(format!("not JSON: {e}")))?;
    let size = &config["size"];
    let (h, w) = match (size.as_u64(), size["height"].as_u64(), size["width"].as_u64()) {
        (Some(n), _, _) => (n, n),
        (None, Some(h), Some(w)) => (h, w),
        _ => return Err(data_error(format!("\"size\" is {size}, not a number or {{\"height\": H, \"width\": W}}"))),
    };
    let fixed = |given: Option<i64>, from: u64, what: &str| -> Result<Option<i64>> {
        let from = i64::try_from(from).ok().filter(|&v| v > 0).ok_or_else(|| data_error(format!("{what} {from} is not a size")))?;
        match given {
            Some(g) if g != from => Err(data_error(format!("{what} {from}, but model input '{}' has {what} {g}", input.name))),
            _ => Ok(Some(from)),
        }
    };
    let dims = vec![dims[0], dims[1].or(Some(3)), fixed(dims[2], h, "height")?, fixed(dims[3], w, "width")?];
    Ok(Some(GraphInput { name: input.name.clone(), dtype: input.dtype, dims: Some(dims), cache_axis: None }))
}

/// An image folder matched against a model input of shape `[N, 3, H, W]`, or
/// `[N, H, W, 3]` (channels last: a TensorFlow/Keras model converted by tf2onnx) (float32).
#[derive(Debug)]
pub struct ImageFolder {
    /// The image files of this data set (after the split).
    pub files: Vec<PathBuf>,
    /// Their class indices.
    pub labels: Vec<i64>,
    /// The class names (sorted sub-folder names); the index is the label.
    pub classes: Vec<String>,
    height: usize,
    width: usize,
    /// The input is `[N, H, W, 3]`.
    channels_last: bool,
    mean: [f32; 3],
    std: [f32; 3],
}

impl ImageFolder {
    /// Lists `dir` (one sub-folder per class) for the model input `input`; `part` and
    /// `seed` choose the split when `options.val_split` is set.
    pub fn open(dir: &Path, options: &ImageOptions, part: Part, seed: u64, input: &GraphInput) -> Result<ImageFolder> {
        let data_error = |message: String| Error::Data { path: dir.to_path_buf(), message };
        let dims = input.dims.as_deref().unwrap_or_default();
        let (height, width, channels_last) = match dims {
            [_, Some(3), Some(h), Some(w)] if *h > 0 && *w > 0 => (*h as usize, *w as usize, false),
            [_, Some(h), Some(w), Some(3)] if *h > 0 && *w > 0 => (*h as usize, *w as usize, true),
            _ => {
                return Err(data_error(format!(
                    "an image folder needs a model input of shape [N, 3, H, W] or [N, H, W, 3] with fixed H and W \
                     (or a preprocessor_config.json beside the model giving its size); input '{}' has shape {}",
                    input.name,
                    crate::exec::describe_dims(dims)
                )))
            }
        };
        if input.dtype != DType::F32 {
            return Err(data_error(format!("model input '{}' is not float32: images are given as float32", input.name)));
        }
        let std = options.std.unwrap_or(IMAGENET_STD);
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::Config(format!("--std {std:?}: every standard deviation must be positive")));
        }
        let mut classes: Vec<String> = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| data_error(format!("cannot read the folder: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| data_error(format!("cannot read the folder: {e}")))?;
            if entry.path().is_dir() {
                classes.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        classes.sort();
        let mut all = Vec::new();
        for (class, name) in classes.iter().enumerate() {
            let sub = dir.join(name);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
                .map_err(|e| Error::Data { path: sub.clone(), message: format!("cannot read the folder: {e}") })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
                .collect();
            files.sort();
            all.extend(files.into_iter().map(|f| (f, class as i64)));
        }
        if all.is_empty() {
            return Err(data_error(
                "no images: expected one sub-folder per class holding .png/.jpg/.jpeg files (as torchvision's ImageFolder)".into(),
            ));
        }
        let chosen: Vec<(PathBuf, i64)> = match (options.val_split, part) {
            (Some(f), Part::Train | Part::Val) => {
                if !(0.0..1.0).contains(&f) {
                    return Err(Error::Config(format!("--val-split {f}: expected a fraction in [0, 1)")));
                }
                // A seeded permutation; its first `held` entries are the held-out images.
                let order = super::epoch_order(all.len(), seed ^ 0x005E_ED0F_1A4E, 0, true);
                let held = ((all.len() as f64) * f).round() as usize;
                let mut val: Vec<usize> = order.iter().take(held).map(|&i| i as usize).collect();
                val.sort_unstable();
                let keep = |i: usize| val.binary_search(&i).is_ok() == (part == Part::Val);
                all.into_iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, x)| x).collect()
            }
            _ => all,
        };
        if chosen.is_empty() {
            return Err(data_error(format!("--val-split {:?} leaves no images for this part", options.val_split)));
        }
        let (files, labels) = chosen.into_iter().unzip();
        Ok(ImageFolder { files, labels, classes, height, width, channels_last, mean: options.mean.unwrap_or(IMAGENET_MEAN), std })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The images at `indices` decoded in parallel: `[B, 3, H, W]` (`[B, H, W, 3]` for a
    /// channels-last input) float32 on the host.
    pub fn decode(&self, indices: &[i64]) -> Result<Tensor> {
        let (h, w) = (self.height, self.width);
        let pixels: Vec<Vec<f32>> = indices
            .par_iter()
            .map(|&i| {
                let path = usize::try_from(i)
                    .ok()
                    .and_then(|i| self.files.get(i))
                    .ok_or_else(|| Error::Config(format!("image index {i} out of range")))?;
                let rgb = decode_file(path)?;
                let small = resize_bilinear(&rgb, w, h);
                let mut out = vec![0f32; 3 * h * w];
                for (p, px) in small.pixels().enumerate() {
                    for c in 0..3 {
                        let at = if self.channels_last { p * 3 + c } else { c * h * w + p };
                        out[at] = (f32::from(px.0[c]) / 255.0 - self.mean[c]) / self.std[c];
                    }
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        let flat: Vec<f32> = pixels.concat();
        let shape =
            if self.channels_last { [indices.len() as i64, h as i64, w as i64, 3] } else { [indices.len() as i64, 3, h as i64, w as i64] };
        Tensor::from_slice(&flat)
            .f_view(shape)
            .and_then(|t| t.f_to_kind(Kind::Float))
            .map_err(|e| Error::torch("assembling an image batch", e))
    }
}

/// Reads and decodes one image file as 8-bit RGB; errors name the file.
pub fn decode_file(path: &Path) -> Result<image::RgbImage> {
    let error = |message: String| Error::Data { path: path.to_path_buf(), message };
    let reader = image::ImageReader::open(path).map_err(|e| error(format!("cannot read: {e}")))?;
    let reader = reader.with_guessed_format().map_err(|e| error(format!("cannot read: {e}")))?;
    let image = reader.decode().map_err(|e| error(format!("not a readable PNG or JPEG image: {e}")))?;
    Ok(image.to_rgb8())
}

/// PIL's bilinear filter coefficients for resizing `in_size` samples to `out_size`:
/// for each output sample, the first input sample and the 8-bit fixed-point weights.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    const PRECISION_BITS: i32 = 32 - 8 - 2;
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    let ss = 1.0 / filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncation toward zero, as PIL.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let v = w * f64::from(1u32 << PRECISION_BITS);
                    if v < 0.0 {
                        (v - 0.5) as i32
                    } else {
                        (v + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// One 8-bit output sample from fixed-point weights (PIL's rounding and clipping).
fn clip8(acc: i64) -> u8 {
    const PRECISION_BITS: i64 = 32 - 8 - 2;
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes to `width` x `height` exactly as PIL's `Image.resize(..., Image.BILINEAR)`.
pub fn resize_bilinear(src: &image::RgbImage, width: usize, height: usize) -> image::RgbImage {
    let (w0, h0) = (src.width() as usize, src.height() as usize);
    let round = 1i64 << (32 - 8 - 2 - 1);
    let horizontal = if w0 != width {
        let coeffs = coefficients(w0, width);
        let mut out = image::RgbImage::new(width as u32, h0 as u32);
        for y in 0..h0 {
            for (x, (start, k)) in coeffs.iter().enumerate() {
                let mut acc = [round; 3];
                for (j, &kj) in k.iter().enumerate() {
                    let p = src.get_pixel((start + j) as u32, y as u32).0;
                    for c in 0..3 {
                        acc[c] += i64::from(p[c]) * i64::from(kj);
                    }
                }
                out.put_pixel(x as u32, y as u32, image::Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]));
            }
        }
        out
    } else {
        src.clone()
    };
    if h0 == height {
        return horizontal;
    }
    let coeffs = coefficients(h0, height);
    let mut out = image::RgbImage::new(width as u32, height as u32);
    for (y, (start, k)) in coeffs.iter().enumerate() {
        for x in 0..width {
            let mut acc = [round; 3];
            for (j, &kj) in k.iter().enumerate() {
                let p = horizontal.get_pixel(x as u32, (start + j) as u32).0;
                for c in 0..3 {
                    acc[c] += i64::from(p[c]) * i64::from(kj);
                }
            }
            out.put_pixel(x as u32, y as u32, image::Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]));
        }
    }
    out
}
