//! The zoo's picture: test Dice on the source domain against GFLOPs (left) and against tract
//! latency (right), one labelled point per architecture, both costs on log axes (they span
//! two orders of magnitude across the zoo).

use std::path::Path;

use plotters::prelude::*;

use super::ZooRow;

/// One point: label, cost, Dice.
type Point<'a> = (&'a str, f64, f64);

pub fn draw(rows: &[ZooRow], source_domain: &str, path: &Path) -> anyhow::Result<()> {
    crate::plot::register_font();
    let dice = |r: &ZooRow| r.score(source_domain).map_or(0.0, |s| s.dice);
    let by_flops: Vec<Point> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.gflops, dice(r)))
        .collect();
    let by_latency: Vec<Point> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.latency_ms, dice(r)))
        .collect();
    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(700);
    let y_label = format!("{source_domain} test Dice");
    panel(&left, "GFLOPs (one image)", &y_label, &by_flops)?;
    panel(&right, "tract latency, ms", &y_label, &by_latency)?;
    root.present()?;
    Ok(())
}

/// A log-x range around the values, padded by a quarter of a decade each side.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.1, 10.0);
    }
    (lo / 10f64.powf(0.25), hi * 10f64.powf(0.25))
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    x_label: &str,
    y_label: &str,
    points: &[Point],
) -> anyhow::Result<()> {
    let (x0, x1) = log_range(points.iter().map(|p| p.1));
    let y0 = points
        .iter()
        .map(|p| p.2)
        .fold(1.0, f64::min)
        .clamp(0.0, 0.9)
        - 0.02;
    let mut chart = ChartBuilder::on(area)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((x0..x1).log_scale(), y0.max(0.0)..1.0)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .draw()?;
    chart.draw_series(points.iter().filter(|p| p.1 > 0.0).map(|&(name, x, y)| {
        EmptyElement::at((x, y))
            + Circle::new((0, 0), 4, BLUE.filled())
            + Text::new(name.to_string(), (6, -14), ("sans-serif", 14))
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::row;
    use super::*;

    #[test]
    fn draws_a_png_with_every_point() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zoo.png");
        let rows = vec![
            row("unet", 3.0, 40.0, &[("xh", 0.93)]),
            row("u2net", 40.0, 400.0, &[("xh", 0.95)]),
            row("csnet", 2.0, 30.0, &[("xh", 0.0)]),
        ];
        draw(&rows, "xh", &path).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (1400, 620));
        assert_eq!(log_range([1.0, 100.0].into_iter()).0, 10f64.powf(-0.25));
    }
}
