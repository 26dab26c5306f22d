//! What JMedSeg published for its zoo (README: pancreas CT, lr 3e-4, 50 epochs, weighted CE),
//! keyed by our registry names, and the rank correlation between its ranking and ours.
//!
//! JMedSeg's Dice averages the background class in: (Dice_bg + Dice_fg) / 2. On pancreas CT
//! the background is nearly all the image and its Dice is close to 1, so its foreground Dice
//! is roughly 2 * Dice - 1; the report shows that estimate beside the published number and
//! says it is one. A model that predicts background everywhere scores 0.4994 there (Dice_bg
//! ~0.999, Dice_fg 0): the four collapsed rows.

/// One published row: our registry name, JMedSeg's label, Dice (background included), mIoU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub name: &'static str,
    pub label: &'static str,
    pub dice_with_background: f64,
    pub miou: f64,
}

impl Published {
    /// The foreground Dice the published number implies if the background Dice were 1.
    pub fn foreground_dice_estimate(&self) -> f64 {
        (2.0 * self.dice_with_background - 1.0).max(0.0)
    }

    /// JMedSeg's collapsed models: background everywhere.
    pub fn collapsed(&self) -> bool {
        self.dice_with_background < 0.5
    }
}

const fn row(name: &'static str, label: &'static str, dice: f64, miou: f64) -> Published {
    Published {
        name,
        label,
        dice_with_background: dice,
        miou,
    }
}

/// JMedSeg's README table, in its order.
pub const PANCREAS: [Published; 29] = [
    row("unet", "UNet", 0.7292, 0.6477),
    row("segnet", "SegNet", 0.6291, 0.5726),
    row("deeplab", "DeepLab", 0.8306, 0.7467),
    row("danet", "DANet", 0.7787, 0.6928),
    row("eanet", "EANet", 0.6753, 0.6055),
    row("hardnet", "HarDNet", 0.7491, 0.6654),
    row("hardnet-alt", "HarDNet_alter", 0.7779, 0.6920),
    row("pspnet", "PSPNet", 0.7772, 0.6914),
    row("ocnet", "OCNet", 0.7789, 0.6930),
    row("ocrnet", "OCRNet", 0.7034, 0.6272),
    row("dlink", "DLinkNet", 0.4995, 0.4989),
    row("attunet", "AttentionUNet", 0.7691, 0.6836),
    row("unetpp", "UNet++", 0.8282, 0.7439),
    row("unet3p", "UNet+++", 0.7892, 0.7030),
    row("denseunet", "DenseUNet", 0.8053, 0.7194),
    row("ternaus", "TernausNet", 0.6752, 0.6055),
    row("csnet", "CSNet", 0.4994, 0.4989),
    row("scseunet", "SCSENet", 0.4994, 0.4989),
    row("u2net", "U2Net", 0.8143, 0.7289),
    row("u2netp", "U2Net-Small", 0.8338, 0.7502),
    row("multires", "MultiResUNet", 0.7230, 0.6427),
    row("r2unet", "R2UNet", 0.8289, 0.7447),
    row("r2attunet", "R2AttentionUNet", 0.8084, 0.7227),
    row("lightnet", "LightNet", 0.8006, 0.7145),
    row("onenet", "OneNet", 0.7754, 0.6896),
    row("cenet", "CENet", 0.7583, 0.6735),
    row("lrfea", "LRF-EANet", 0.6942, 0.6197),
    row("simple", "SimpleUNet", 0.7395, 0.6569),
    row("setr", "SETR", 0.4994, 0.4989),
];

pub fn published(name: &str) -> Option<&'static Published> {
    PANCREAS.iter().find(|p| p.name == name)
}

/// Ranks (1 = highest) with ties sharing their mean rank, as Spearman's rho needs.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = mean_rank;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation of paired values (Pearson's r of their ranks); `None` for
/// fewer than three pairs or when one side is constant.
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let a = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let b = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_keyed_by_distinct_names() {
        let mut names: Vec<_> = PANCREAS.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PANCREAS.len());
        let setr = published("setr").unwrap();
        assert!(setr.collapsed() && setr.foreground_dice_estimate() < 0.001);
        assert!((published("unet").unwrap().foreground_dice_estimate() - 0.4584).abs() < 1e-9);
    }

    #[test]
    fn spearman_of_known_orders() {
        let same = [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0), (4.0, 40.0)];
        assert!((spearman(&same).unwrap() - 1.0).abs() < 1e-12);
        let reversed: Vec<_> = same.iter().map(|&(a, b)| (a, -b)).collect();
        assert!((spearman(&reversed).unwrap() + 1.0).abs() < 1e-12);
        // Ties share their mean rank.
        assert_eq!(ranks(&[0.5, 0.9, 0.5]), vec![2.5, 1.0, 2.5]);
        assert_eq!(spearman(&same[..2]), None);
        assert_eq!(spearman(&[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]), None);
    }
}
