//! A scalar 3D volume with its voxel-to-patient affine, brought to one canonical frame so that
//! every source (NIfTI of any orientation, DICOM series) slices the same way.
//!
//! Canonical frame: the voxel axes i, j, k run toward the patient's Right, Anterior and
//! Superior (RAS+, NIfTI's world convention; DICOM's LPS is the same space with x and y
//! negated). Slice indices count along these axes: axial 0 is the most inferior slice.
//!
//! Display convention (radiological, as DICOM viewers show slices):
//! - axial: anterior at the top, patient right on the image's left;
//! - coronal: superior at the top, patient right on the image's left;
//! - sagittal: superior at the top, anterior on the image's left.
//!
//! Oblique volumes are assigned to the nearest canonical axes without resampling (as most
//! viewers do for "closest orientation"), so a few degrees of tilt stay in the slices.

use anyhow::{bail, ensure};

/// Voxel (i, j, k) is `data[i + nx * (j + ny * k)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub dims: [usize; 3],
    pub data: Vec<f32>,
    /// Voxel index to RAS+ mm: `world[r] = sum_c affine[r][c] * ijk[c] + affine[r][3]`.
    pub affine: [[f64; 4]; 3],
}

/// The slicing plane.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Plane {
    #[default]
    Axial,
    Sagittal,
    Coronal,
}

impl Plane {
    /// Short tag used in slice names.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Axial => "ax",
            Self::Sagittal => "sag",
            Self::Coronal => "cor",
        }
    }
}

/// One 2D slice in display order (row-major), with its (row, column) spacing in mm.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice2 {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
    pub spacing: (f64, f64),
}

impl Volume {
    pub fn new(dims: [usize; 3], data: Vec<f32>, affine: [[f64; 4]; 3]) -> anyhow::Result<Self> {
        ensure!(
            dims.iter().all(|&d| d > 0),
            "volume has an empty dimension: {dims:?}"
        );
        ensure!(
            data.len() == dims.iter().product::<usize>(),
            "volume data holds {} voxels, dimensions {dims:?} need {}",
            data.len(),
            dims.iter().product::<usize>()
        );
        let m = [0, 1, 2].map(|r| [0, 1, 2].map(|c| affine[r][c]));
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if !(det.is_finite() && det.abs() > 1e-12) {
            bail!("the voxel-to-patient transform is singular (determinant {det})");
        }
        Ok(Self { dims, data, affine })
    }

    fn at(&self, i: usize, j: usize, k: usize) -> f32 {
        self.data[i + self.dims[0] * (j + self.dims[1] * k)]
    }

    /// Voxel size along each voxel axis in mm.
    pub fn spacing(&self) -> [f64; 3] {
        [0, 1, 2].map(|c| {
            (0..3)
                .map(|r| self.affine[r][c] * self.affine[r][c])
                .sum::<f64>()
                .sqrt()
        })
    }

    /// Reorders and flips the voxel axes so that i, j, k run toward Right, Anterior and
    /// Superior. The voxel-to-world mapping is unchanged: only the storage order moves.
    pub fn to_canonical(&self) -> Self {
        // Greedy nearest-axis assignment: the largest direction cosine first, so each voxel
        // axis takes the world axis it is most aligned with.
        let mut axis_of_world = [usize::MAX; 3];
        let mut flip = [false; 3];
        let mut used_voxel = [false; 3];
        for _ in 0..3 {
            let mut best = (0.0, 0, 0);
            for (w, taken) in axis_of_world.iter().enumerate() {
                if *taken != usize::MAX {
                    continue;
                }
                for (v, used) in used_voxel.iter().enumerate() {
                    let a = self.affine[w][v].abs();
                    if !used && a >= best.0 {
                        best = (a, w, v);
                    }
                }
            }
            let (_, w, v) = best;
            axis_of_world[w] = v;
            used_voxel[v] = true;
            flip[w] = self.affine[w][v] < 0.0;
        }
        let dims = axis_of_world.map(|v| self.dims[v]);
        let mut affine = self.affine.map(|row| [0.0, 0.0, 0.0, row[3]]);
        for (w, &v) in axis_of_world.iter().enumerate() {
            let sign = if flip[w] { -1.0 } else { 1.0 };
            for (out, src) in affine.iter_mut().zip(&self.affine) {
                out[w] = sign * src[v];
                if flip[w] {
                    out[3] += src[v] * (self.dims[v] - 1) as f64;
                }
            }
        }
        let mut data = Vec::with_capacity(self.data.len());
        let mut src = [0usize; 3];
        for c in 0..dims[2] {
            for b in 0..dims[1] {
                for a in 0..dims[0] {
                    for (w, n) in [a, b, c].into_iter().enumerate() {
                        let v = axis_of_world[w];
                        src[v] = if flip[w] { self.dims[v] - 1 - n } else { n };
                    }
                    data.push(self.at(src[0], src[1], src[2]));
                }
            }
        }
        Self { dims, data, affine }
    }

    /// Whether two volumes cover the same voxels in the same place (within `tol_mm`).
    pub fn same_grid(&self, other: &Self, tol_mm: f64) -> bool {
        self.dims == other.dims
            && self
                .affine
                .iter()
                .flatten()
                .zip(other.affine.iter().flatten())
                .all(|(a, b)| (a - b).abs() <= tol_mm)
    }

    /// A short description of the grid for error messages.
    pub fn describe(&self) -> String {
        let s = self.spacing();
        let o = [0, 1, 2].map(|r| self.affine[r][3]);
        format!(
            "{}x{}x{} voxels of {:.3}x{:.3}x{:.3} mm, origin ({:.2}, {:.2}, {:.2}) mm RAS, axes {}",
            self.dims[0],
            self.dims[1],
            self.dims[2],
            s[0],
            s[1],
            s[2],
            o[0],
            o[1],
            o[2],
            self.axis_codes()
        )
    }

    /// Orientation code such as "RAS" or "LPI": where each voxel axis points.
    pub fn axis_codes(&self) -> String {
        (0..3)
            .map(|v| {
                let (w, val) = (0..3)
                    .map(|w| (w, self.affine[w][v]))
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                    .unwrap_or((0, 0.0));
                let pos = val >= 0.0;
                match (w, pos) {
                    (0, true) => 'R',
                    (0, false) => 'L',
                    (1, true) => 'A',
                    (1, false) => 'P',
                    (2, true) => 'S',
                    _ => 'I',
                }
            })
            .collect()
    }

    /// Number of slices along the axis a plane cuts (call on a canonical volume).
    pub fn slice_count(&self, plane: Plane) -> usize {
        self.dims[axis(plane)]
    }

    /// Slice `index` (along the plane's canonical axis) in display order. Call on a canonical
    /// volume ([`Self::to_canonical`]).
    pub fn slice(&self, plane: Plane, index: usize) -> Slice2 {
        let [nx, ny, nz] = self.dims;
        let [sx, sy, sz] = self.spacing();
        let (rows, cols, spacing) = match plane {
            Plane::Axial => (ny, nx, (sy, sx)),
            Plane::Coronal => (nz, nx, (sz, sx)),
            Plane::Sagittal => (nz, ny, (sz, sy)),
        };
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                // Rows run from anterior (axial) or superior (others) down; columns from the
                // patient's right (axial, coronal) or anterior (sagittal) across.
                let v = match plane {
                    Plane::Axial => self.at(nx - 1 - c, ny - 1 - r, index),
                    Plane::Coronal => self.at(nx - 1 - c, index, nz - 1 - r),
                    Plane::Sagittal => self.at(index, ny - 1 - c, nz - 1 - r),
                };
                data.push(v);
            }
        }
        Slice2 {
            rows,
            cols,
            data,
            spacing,
        }
    }
}

fn axis(plane: Plane) -> usize {
    match plane {
        Plane::Sagittal => 0,
        Plane::Coronal => 1,
        Plane::Axial => 2,
    }
}

/// How a slice is resampled: images bilinear, labels nearest (no invented classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interp {
    Bilinear,
    Nearest,
}

impl Slice2 {
    /// Resamples to `target` (row, column) spacing in mm over the same field of view. Pixel
    /// centres are laid out from the field's centre, so an image and its labels stay aligned.
    pub fn resample(&self, target: (f64, f64), interp: Interp) -> Self {
        let size = |n: usize, from: f64, to: f64| ((n as f64 * from / to).round() as usize).max(1);
        let rows = size(self.rows, self.spacing.0, target.0);
        let cols = size(self.cols, self.spacing.1, target.1);
        // Source coordinate (in source pixels) of a target pixel centre.
        let src = |t: usize, n_src: usize, n_dst: usize, from: f64, to: f64| {
            let centre_src = (n_src as f64 - 1.0) / 2.0;
            let centre_dst = (n_dst as f64 - 1.0) / 2.0;
            centre_src + (t as f64 - centre_dst) * to / from
        };
        let get = |r: usize, c: usize| self.data[r * self.cols + c];
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            let y = src(r, self.rows, rows, self.spacing.0, target.0);
            for c in 0..cols {
                let x = src(c, self.cols, cols, self.spacing.1, target.1);
                let v = match interp {
                    Interp::Nearest => {
                        let yi = y.round().clamp(0.0, (self.rows - 1) as f64) as usize;
                        let xi = x.round().clamp(0.0, (self.cols - 1) as f64) as usize;
                        get(yi, xi)
                    }
                    Interp::Bilinear => {
                        // Clamp to the edge: outside the field repeats the border pixel.
                        let y = y.clamp(0.0, (self.rows - 1) as f64);
                        let x = x.clamp(0.0, (self.cols - 1) as f64);
                        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
                        let (y1, x1) = ((y0 + 1).min(self.rows - 1), (x0 + 1).min(self.cols - 1));
                        let (fy, fx) = ((y - y0 as f64) as f32, (x - x0 as f64) as f32);
                        let top = get(y0, x0) * (1.0 - fx) + get(y0, x1) * fx;
                        let bottom = get(y1, x0) * (1.0 - fx) + get(y1, x1) * fx;
                        top * (1.0 - fy) + bottom * fy
                    }
                };
                data.push(v);
            }
        }
        Self {
            rows,
            cols,
            data,
            spacing: target,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4x3x2 volume whose voxel value encodes its index.
    fn coded(affine: [[f64; 4]; 3]) -> Volume {
        let dims = [4, 3, 2];
        let data = (0..24).map(|n| n as f32).collect();
        Volume::new(dims, data, affine).unwrap()
    }

    const RAS: [[f64; 4]; 3] = [
        [1.0, 0.0, 0.0, 10.0],
        [0.0, 2.0, 0.0, 20.0],
        [0.0, 0.0, 3.0, 30.0],
    ];

    #[test]
    fn canonical_volume_is_unchanged_and_codes_read_back() {
        let v = coded(RAS);
        assert_eq!(v.to_canonical(), v);
        assert_eq!(v.axis_codes(), "RAS");
        assert_eq!(v.spacing(), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn permuted_and_flipped_storage_gives_the_same_canonical_volume() {
        let v = coded(RAS);
        let [nx, ny, nz] = v.dims;
        // Store as (a, b, c) = (k, nx-1-i, j): world(a,b,c) = world_v(nx-1-b, c, a).
        let dims = [nz, nx, ny];
        let mut data = vec![0.0; 24];
        for c in 0..ny {
            for b in 0..nx {
                for a in 0..nz {
                    data[a + nz * (b + nx * c)] = v.at(nx - 1 - b, c, a);
                }
            }
        }
        let affine = [
            [0.0, -1.0, 0.0, 10.0 + (nx - 1) as f64],
            [0.0, 0.0, 2.0, 20.0],
            [3.0, 0.0, 0.0, 30.0],
        ];
        let w = Volume::new(dims, data, affine).unwrap();
        assert_eq!(w.axis_codes(), "SLA");
        let canon = w.to_canonical();
        assert!(canon.same_grid(&v, 1e-9), "{}", canon.describe());
        assert_eq!(canon.data, v.data);
    }

    #[test]
    fn slices_follow_the_radiological_display_convention() {
        // One bright voxel at the most right, anterior and superior corner.
        let mut v = Volume::new([4, 3, 2], vec![0.0; 24], RAS).unwrap();
        v.data[3 + 4 * (2 + 3)] = 1.0;
        let ax = v.slice(Plane::Axial, 1);
        assert_eq!((ax.rows, ax.cols, ax.spacing), (3, 4, (2.0, 1.0)));
        assert_eq!(ax.data[0], 1.0, "axial: anterior top, right on the left");
        let cor = v.slice(Plane::Coronal, 2);
        assert_eq!((cor.rows, cor.cols, cor.spacing), (2, 4, (3.0, 1.0)));
        assert_eq!(cor.data[0], 1.0, "coronal: superior top, right on the left");
        let sag = v.slice(Plane::Sagittal, 3);
        assert_eq!((sag.rows, sag.cols, sag.spacing), (2, 3, (3.0, 2.0)));
        assert_eq!(
            sag.data[0], 1.0,
            "sagittal: superior top, anterior on the left"
        );
    }

    #[test]
    fn resampling_sets_spacing_and_keeps_labels_discrete() {
        let s = Slice2 {
            rows: 4,
            cols: 6,
            data: (0..24).map(|n| (n % 3) as f32).collect(),
            spacing: (1.0, 0.5),
        };
        let r = s.resample((0.5, 1.0), Interp::Nearest);
        assert_eq!((r.rows, r.cols, r.spacing), (8, 3, (0.5, 1.0)));
        assert!(r.data.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
        let ramp = Slice2 {
            rows: 1,
            cols: 3,
            data: vec![0.0, 10.0, 20.0],
            spacing: (1.0, 1.0),
        };
        let up = ramp.resample((1.0, 0.5), Interp::Bilinear);
        assert_eq!(up.cols, 6);
        // Centres at -0.25, 0.25, 0.75, ... source pixels: linear in between, clamped outside.
        assert_eq!(up.data, vec![0.0, 2.5, 7.5, 12.5, 17.5, 20.0]);
    }

    #[test]
    fn singular_or_mis_sized_volumes_are_refused() {
        let mut flat = RAS;
        flat[2][2] = 0.0;
        assert!(Volume::new([4, 3, 2], vec![0.0; 24], flat).is_err());
        assert!(Volume::new([4, 3, 2], vec![0.0; 23], RAS).is_err());
    }
}
