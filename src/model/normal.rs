//! "What normal looks like" as a few k-means centroids (linfa), shared by the models that
//! judge a vector per window: the log-pattern model (template counts) and the
//! service-signals model (a service's signals together).
//!
//! A window is unusual when its distance to the nearest centroid is over a threshold
//! learnt in training: the 99.5th percentile of the training windows' distances, times
//! 1.5, and at least `floor`. Centroids and threshold are rounded to 1e-6 so that short
//! decimals read back as the very same floats and a model file's checksum holds.

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;

/// Centroids and threshold fitted on training rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Normal {
    pub centroids: Vec<Vec<f64>>,
    pub threshold: f64,
    /// Training rows over the threshold.
    pub exceed: usize,
}

/// Fits at most `k` clusters (fewer than one per ten rows) to `rows`, all of one width.
pub fn fit(rows: &[Vec<f64>], k: usize, floor: f64) -> Result<Normal, String> {
    let width = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || width == 0 {
        return Err("no training rows".into());
    }
    let data = Array2::from_shape_vec((rows.len(), width), rows.concat()).map_err(|e| e.to_string())?;
    let k = k.min(rows.len() / 10).max(1);
    let fitted = KMeans::params(k)
        .n_runs(4)
        .max_n_iterations(200)
        .tolerance(1e-6)
        .fit(&DatasetBase::from(data))
        .map_err(|e| format!("k-means: {e}"))?;
    let centroids: Vec<Vec<f64>> = fitted
        .centroids()
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&x| micro(x)).collect())
        .collect();
    let mut d: Vec<f64> = rows.iter().map(|r| nearest(&centroids, r).1).collect();
    d.sort_by(f64::total_cmp);
    let q = d[((d.len() as f64 * 0.995) as usize).min(d.len() - 1)];
    let threshold = micro((q * 1.5).max(floor));
    let exceed = d.iter().filter(|&&x| x > threshold).count();
    Ok(Normal {
        centroids,
        threshold,
        exceed,
    })
}

/// The nearest centroid's index and distance (index 0 and infinity when there are none).
pub fn nearest(centroids: &[Vec<f64>], v: &[f64]) -> (usize, f64) {
    centroids
        .iter()
        .map(|c| distance(c, v))
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, f64::INFINITY))
}

/// Why a vector is where it is: its nearest centroid (index and distance) and the `top`
/// dimensions that differ from that centroid most, largest first (ties by dimension),
/// with their differences. No centroids: index 0, infinity, nothing moved.
pub fn explain(centroids: &[Vec<f64>], v: &[f64], top: usize) -> (usize, f64, Vec<(usize, f64)>) {
    let (c, d) = nearest(centroids, v);
    let Some(centre) = centroids.get(c) else {
        return (c, d, Vec::new());
    };
    let mut moved: Vec<(usize, f64)> = v.iter().zip(centre).map(|(x, y)| (x - y).abs()).enumerate().collect();
    moved.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    moved.truncate(top);
    (c, d, moved)
}

pub fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

/// Rounded to 1e-6 (see the module docs).
pub fn micro(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
