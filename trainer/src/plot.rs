//! The training curve picture (loss and validation Dice per epoch) written beside log.csv.

use std::path::Path;

use plotters::prelude::*;

/// One row of the training log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_dice: f64,
    pub val_iou: f64,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Images trained on in the epoch (0 in logs written before it was recorded).
    #[serde(default)]
    pub train_images: usize,
}

pub(crate) fn register_font() {
    // The font ships inside the `dejavu` crate, so plots need no system fonts.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Draws loss (left) and validation Dice (right) against epochs.
pub fn plot_curves(rows: &[EpochLog], path: &Path) -> anyhow::Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (900, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let last = rows.last().map_or(1, |r| r.epoch).max(1);
    let max_loss = rows
        .iter()
        .map(|r| r.train_loss)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    draw_series(
        &left,
        "training loss",
        last,
        (0.0, max_loss),
        rows.iter().map(|r| (r.epoch, r.train_loss)),
        RED,
    )?;
    draw_series(
        &right,
        "validation Dice",
        last,
        (0.0, 1.0),
        rows.iter().map(|r| (r.epoch, r.val_dice)),
        BLUE,
    )?;
    root.present()?;
    Ok(())
}

fn draw_series(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    last_epoch: usize,
    (y0, y1): (f64, f64),
    points: impl Iterator<Item = (usize, f64)> + Clone,
    colour: RGBColor,
) -> anyhow::Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0usize..last_epoch, y0..y1)?;
    chart.configure_mesh().x_desc("epoch").draw()?;
    chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
    chart.draw_series(points.map(|p| Circle::new(p, 3, colour.filled())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<EpochLog> = (1..=3)
            .map(|e| EpochLog {
                epoch: e,
                train_loss: 1.0 / e as f64,
                val_dice: 0.3 * e as f64,
                val_iou: 0.2 * e as f64,
                lr: 1e-3,
                seconds: 1.0,
                images_per_second: 10.0,
                train_images: 10,
            })
            .collect();
        let path = dir.path().join("curves.png");
        plot_curves(&rows, &path).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!(img.width(), 900);
    }
}
